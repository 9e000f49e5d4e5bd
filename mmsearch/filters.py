"""Structured filters compiled to parameterised DuckDB SQL (safe with user input).

    {"price": {"lt": 50}, "category": {"in": ["shoes", "bags"]}, "brand": "Nike"}
    -> ('"price" < ? AND "category" IN (?, ?) AND "brand" = ?', [50, "shoes", "bags", "Nike"])
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from mmsearch.errors import UsageError
from mmsearch.limits import Limits, check, current, over

_COMPARE = {"eq": "=", "ne": "!=", "lt": "<", "lte": "<=", "gt": ">", "gte": ">="}


def quote_identifier(name: str) -> str:
    """Quote a column name for SQL; any character is allowed, none can escape."""
    if not isinstance(name, str) or not name:
        raise UsageError(f"bad filter column {name!r}")
    return '"' + name.replace('"', '""') + '"'


def compile_filters(filters: Mapping[str, Any],
                    limits: Limits | None = None) -> tuple[str, list[Any]]:
    """Compile a filters mapping into (SQL condition, parameters); values never enter SQL.

    Malformed operators and values raise UsageError; sizes over `mmsearch.limits`
    (conditions, `in` list length, nesting) raise LimitError.
    """
    limits = limits or current()
    if not isinstance(filters, Mapping):
        raise UsageError("filters must be an object: {column: value or {operator: value}}")
    _check_depth(filters, limits)
    clauses: list[str] = []
    params: list[Any] = []
    count = 0
    for column, condition in filters.items():
        col = quote_identifier(column)
        if not isinstance(condition, Mapping):
            condition = {"in": condition} if isinstance(condition, list | tuple | set) else {
                "eq": condition}
        if not condition:
            raise UsageError(f"filter on {column!r} has no operator")
        for op, value in condition.items():
            count += 1
            check("max_filter_conditions", count, "filter conditions", limits)
            if op in _COMPARE:
                if value is None and op in ("eq", "ne"):
                    clauses.append(f"{col} IS {'NOT ' if op == 'ne' else ''}NULL")
                else:
                    clauses.append(f"{col} {_COMPARE[op]} ?")
                    params.append(_scalar(column, op, value))
            elif op in ("in", "nin"):
                if not isinstance(value, list | tuple | set):
                    raise UsageError(f"filter {column!r}: `{op}` needs a list of values, not "
                                     f"{_kind(value)}")
                check("max_in_values", len(value), f"values in the `{op}` list of "
                      f"{column!r}", limits)
                values = [_scalar(column, op, v) for v in value]
                if not values:
                    clauses.append("FALSE" if op == "in" else "TRUE")
                    continue
                marks = ", ".join("?" * len(values))
                clauses.append(f"{col} {'NOT IN' if op == 'nin' else 'IN'} ({marks})")
                params.extend(values)
            elif op == "between":
                if not isinstance(value, list | tuple) or len(value) != 2:
                    raise UsageError(f"filter {column!r}: `between` needs [low, high], not "
                                     f"{_kind(value)}")
                low, high = (_scalar(column, op, v) for v in value)
                clauses.append(f"{col} BETWEEN ? AND ?")
                params.extend([low, high])
            else:
                raise UsageError(f"unknown filter operator {op!r} for {column!r}; use one of "
                                 f"{', '.join([*_COMPARE, 'in', 'nin', 'between'])}")
    return " AND ".join(clauses) or "TRUE", params


def condition(where: str | None, filters: Mapping[str, Any] | None
              ) -> tuple[str | None, list[Any]]:
    """One SQL condition (None: no condition) and its parameters from a trusted `where`
    string and injection-safe structured `filters`."""
    clauses, params = [], []
    if where:
        clauses.append(f"({where})")
    if filters:
        sql, values = compile_filters(filters)
        clauses.append(f"({sql})")
        params.extend(values)
    return (" AND ".join(clauses) if clauses else None), params


#: Integers DuckDB binds as parameters (BIGINT); larger ones are out of range.
_INT_RANGE = (-(2**63), 2**63 - 1)


def _scalar(column: str, op: str, value: Any) -> Any:
    """A filter value: a string, a finite number, a bool or null (UsageError otherwise)."""
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, int):
        if not _INT_RANGE[0] <= value <= _INT_RANGE[1]:
            raise UsageError(f"filter {column!r} {op}: {value} is out of range (64-bit "
                             "integers)")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise UsageError(f"filter {column!r} {op}: {value} is not a finite number")
        return value
    raise UsageError(f"filter {column!r} {op}: values must be strings, numbers, booleans or "
                     f"null, not {_kind(value)}")


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _check_depth(filters: Any, limits: Limits) -> None:
    """Refuse filters nested deeper than `max_filter_depth` (iteratively: no recursion)."""
    stack = [(filters, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, list | tuple) and len(node) > limits.max_in_values:
            raise over("max_in_values", len(node), limits.max_in_values,
                       "values in a filter list")
        if depth > limits.max_filter_depth:
            raise over("max_filter_depth", depth, limits.max_filter_depth,
                       "nesting of the filter")
        children = node.values() if isinstance(node, Mapping) else node \
            if isinstance(node, list | tuple) else ()
        stack.extend((c, depth + 1) for c in children if isinstance(c, Mapping | list | tuple))
