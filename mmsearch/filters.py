"""Structured filters: compiled to parameterised DuckDB SQL (safe with user input), or
evaluated directly on the column arrays when they are simple (`evaluate`).

    {"price": {"lt": 50}, "category": {"in": ["shoes", "bags"]}, "brand": "Nike"}
    -> ('"price" < ? AND "category" IN (?, ?) AND "brand" = ?', [50, "shoes", "bags", "Nike"])

`evaluate` covers equality, ranges, `in`/`nin` and `between` on numeric, string and boolean
columns with values of the same kind, with SQL's NULL semantics; it answers None for
anything else and the caller asks DuckDB (tests compare both on the same filters).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

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


# -- evaluation on column arrays (no SQL) ----------------------------------------------------
#: Operators `evaluate` handles on column arrays; anything else goes to DuckDB.
_ARRAY_OPS = {"eq": "equal", "ne": "not_equal", "lt": "less", "lte": "less_equal",
              "gt": "greater", "gte": "greater_equal"}


def evaluate(clauses: Iterable[tuple[str, Any]], table: pa.Table) -> np.ndarray | None:
    """Row positions (sorted) of `table` matching every (column, condition) clause, computed
    with Arrow kernels on the column arrays; None when a clause needs SQL (an unknown column
    or operator, or a value whose type does not plainly match the column's, where DuckDB's
    casting rules would decide). NULLs follow SQL: a comparison with NULL selects nothing.
    """
    mask: np.ndarray | None = None
    for column, condition in clauses:
        if column not in table.column_names:
            return None
        part = _clause_mask(table.column(column), _normalise(condition))
        if part is None:
            return None
        mask = part if mask is None else mask & part
    if mask is None:
        return np.arange(table.num_rows, dtype=np.int64)
    return np.flatnonzero(mask).astype(np.int64)


def cache_key(clauses: Iterable[tuple[str, Any]]) -> str:
    """A canonical text for a list of clauses: clause order and the order of `in` / `nin`
    values do not matter; value types do (1, 1.0, "1" and True differ)."""
    def value(v: Any) -> Any:
        if isinstance(v, list | tuple | set | frozenset):
            return [value(x) for x in v]
        return [type(v).__name__, repr(v)]

    def condition(c: Any) -> Any:
        c = _normalise(c)
        return sorted([op, sorted(value(v), key=repr) if op in ("in", "nin") else value(v)]
                      for op, v in c.items())
    return json.dumps(sorted(([str(col), condition(c)] for col, c in clauses), key=repr))


def _normalise(condition: Any) -> Mapping[str, Any]:
    if isinstance(condition, Mapping):
        return condition
    if not isinstance(condition, Mapping):
        return {"in": condition} if isinstance(condition, list | tuple | set) else {
            "eq": condition}
    return condition


def _clause_mask(col: pa.ChunkedArray, condition: Mapping[str, Any]) -> np.ndarray | None:
    kind = _column_kind(col.type)
    if kind is None:
        return None
    if pa.types.is_floating(col.type) and pc.any(pc.is_nan(col)).as_py():
        return None  # DuckDB orders NaN above every number; leave that to it
    valid = _to_bool(pc.is_valid(col))
    mask = np.ones(len(col), dtype=bool)
    for op, value in condition.items():
        if op in ("eq", "ne") and value is None:
            mask &= ~valid if op == "eq" else valid
        elif op in _ARRAY_OPS:
            if not _fits(kind, value):
                return None
            mask &= _to_bool(getattr(pc, _ARRAY_OPS[op])(col, _arrow_scalar(value, col.type)))
        elif op in ("in", "nin"):
            try:
                values = list(value)
            except TypeError:
                return None
            if not all(v is None or _fits(kind, v) for v in values):
                return None
            present = [v for v in values if v is not None]
            if op == "nin" and len(present) < len(values):
                mask[:] = False  # x NOT IN (.., NULL) is never true in SQL
                continue
            hit = _is_in(col, present)
            mask &= (hit if op == "in" else ~hit) & valid
        elif op == "between":
            try:
                low, high = value
            except (TypeError, ValueError):
                return None
            if not (_fits(kind, low) and _fits(kind, high)):
                return None
            mask &= _to_bool(pc.and_(pc.greater_equal(col, _arrow_scalar(low, col.type)),
                                     pc.less_equal(col, _arrow_scalar(high, col.type))))
        else:
            return None
    return mask


def _is_in(col: pa.ChunkedArray, values: list[Any]) -> np.ndarray:
    """Membership; numbers compare by value like SQL (1 matches 1.0; 2.5 or a value out of
    an integer column's range matches nothing there)."""
    t = col.type
    if pa.types.is_integer(t):
        values = [int(v) for v in values if float(v).is_integer() and _in_range(int(v), t)]
    elif pa.types.is_floating(t):
        col, t = pc.cast(col, pa.float64()), pa.float64()
        values = [float(v) for v in values]
    if not values:
        return np.zeros(len(col), dtype=bool)
    return _to_bool(pc.is_in(col, value_set=pa.array(values, t)))


def _column_kind(t: pa.DataType) -> str | None:
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        return "number"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    return None  # timestamps, dates, lists, ...: DuckDB's casting rules apply


def _fits(kind: str, value: Any) -> bool:
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "number":
        return (isinstance(value, int | float | np.integer | np.floating)
                and not isinstance(value, bool) and math.isfinite(float(value)))
    return isinstance(value, str)


def _arrow_scalar(value: Any, t: pa.DataType) -> pa.Scalar:
    if pa.types.is_floating(t) or (pa.types.is_integer(t)
                                   and isinstance(value, float | np.floating)):
        return pa.scalar(float(value), pa.float64())  # compared in double precision, as SQL
    if pa.types.is_integer(t):
        v = int(value)
        return pa.scalar(v, t) if _in_range(v, t) else pa.scalar(float(v), pa.float64())
    return pa.scalar(value, t)


def _in_range(v: int, t: pa.DataType) -> bool:
    info = np.iinfo(t.to_pandas_dtype())
    return int(info.min) <= v <= int(info.max)


def _to_bool(result: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A boolean Arrow result as a numpy mask, NULL as False (SQL's WHERE)."""
    return np.asarray(pc.fill_null(result, False).to_numpy(zero_copy_only=False), dtype=bool)
