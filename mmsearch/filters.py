"""Structured filters compiled to parameterised DuckDB SQL (safe with user input).

    {"price": {"lt": 50}, "category": {"in": ["shoes", "bags"]}, "brand": "Nike"}
    -> ('"price" < ? AND "category" IN (?, ?) AND "brand" = ?', [50, "shoes", "bags", "Nike"])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mmsearch.errors import UsageError

_COMPARE = {"eq": "=", "ne": "!=", "lt": "<", "lte": "<=", "gt": ">", "gte": ">="}


def quote_identifier(name: str) -> str:
    """Quote a column name for SQL; any character is allowed, none can escape."""
    if not isinstance(name, str) or not name:
        raise UsageError(f"bad filter column {name!r}")
    return '"' + name.replace('"', '""') + '"'


def compile_filters(filters: Mapping[str, Any]) -> tuple[str, list[Any]]:
    """Compile a filters mapping into (SQL condition, parameters); values never enter SQL."""
    clauses: list[str] = []
    params: list[Any] = []
    for column, condition in filters.items():
        col = quote_identifier(column)
        if not isinstance(condition, Mapping):
            condition = {"in": condition} if isinstance(condition, list | tuple | set) else {
                "eq": condition}
        for op, value in condition.items():
            if op in _COMPARE:
                if value is None and op in ("eq", "ne"):
                    clauses.append(f"{col} IS {'NOT ' if op == 'ne' else ''}NULL")
                else:
                    clauses.append(f"{col} {_COMPARE[op]} ?")
                    params.append(value)
            elif op in ("in", "nin"):
                values = list(value)
                if not values:
                    clauses.append("FALSE" if op == "in" else "TRUE")
                    continue
                marks = ", ".join("?" * len(values))
                clauses.append(f"{col} {'NOT IN' if op == 'nin' else 'IN'} ({marks})")
                params.extend(values)
            elif op == "between":
                low, high = value
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
