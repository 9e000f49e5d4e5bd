"""A store's schema: each column's Arrow type, fixed by the first write or declared.

Every commit passes its rows through `conform` before a byte is written: values that fit
are cast to the store's types; a column the store has not seen is added (nullable); an
integer column given fractional numbers is widened to float64. Anything else (a string in
a number column, a dict in a scalar column, a core column of the wrong type) raises
`SchemaError` naming the column, the expected and the given type, and nothing is written.

The schema lives in the manifest (`schema`: the Arrow schema, IPC-serialised and base64
encoded, plus a readable `columns` map), each change in `schema_changes`.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa

from mmsearch.errors import SchemaError, UsageError
from mmsearch.store.schema import FILE_SCHEMA

#: Columns only the engine writes (compared case-insensitively: SQL names are).
INTERNAL = frozenset({"key", "mtime_ns", "_row", "row_hash"})
#: Columns with a meaning to the engine: their types are fixed whatever the first write says.
CORE = pa.schema([f for f in FILE_SCHEMA if f.name not in INTERNAL]
                 + [pa.field("text", pa.string()), pa.field("row_hash", pa.string())])

SchemaLike = pa.Schema | Mapping[str, pa.DataType | str]


def check_names(names: Iterable[str], reserved: Iterable[str] = INTERNAL) -> None:
    """Refuse user column names that are reserved or that differ only in letter case."""
    names = list(names)
    taken = {r.lower() for r in reserved}
    bad = sorted(n for n in names if not isinstance(n, str) or n.lower() in taken)
    if bad:
        raise UsageError(f"column names reserved by mmsearch: {', '.join(map(str, bad))} "
                         "(rename them)")
    seen: dict[str, str] = {}
    for n in names:
        other = seen.setdefault(n.lower(), n)
        if other != n:
            raise UsageError(f"columns {other!r} and {n!r} differ only in letter case "
                             "(SQL filters could not tell them apart); rename one")


def as_schema(declared: SchemaLike | None) -> pa.Schema | None:
    """A declared schema (Arrow schema, or {column: type or type name}) as an Arrow schema."""
    if declared is None or isinstance(declared, pa.Schema):
        return declared
    fields = []
    for name, typ in declared.items():
        if isinstance(typ, str):
            try:
                typ = pa.type_for_alias(typ)
            except ValueError:
                raise UsageError(f"schema: unknown type {typ!r} for column {name!r} (use an "
                                 "Arrow type or a name such as int64, double, string, bool, "
                                 "timestamp[us])") from None
        if not isinstance(typ, pa.DataType):
            raise UsageError(f"schema: column {name!r} needs an Arrow type, not {typ!r}")
        fields.append(pa.field(str(name), typ))
    check_names([f.name for f in fields if f.name not in CORE.names])
    return pa.schema(fields)


def encode(schema: pa.Schema) -> dict[str, Any]:
    """The manifest form of a schema."""
    return {"arrow": base64.b64encode(schema.serialize().to_pybytes()).decode(),
            "columns": {f.name: str(f.type) for f in schema}}


def decode(data: Mapping[str, Any] | None) -> pa.Schema | None:
    """The schema stored in a manifest (None for stores written before schemas)."""
    if not data:
        return None
    try:
        return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(data["arrow"])))
    except (KeyError, TypeError, ValueError, pa.ArrowException) as e:
        raise SchemaError(f"the store's schema in its manifest is unreadable ({e})") from None


def expected_type(name: str, schema: pa.Schema | None,
                  declared: pa.Schema | None) -> pa.DataType | None:
    for s in (schema, declared, CORE):
        if s is not None and name in s.names:
            return s.field(name).type
    return None


def check_declared(declared: pa.Schema | None, schema: pa.Schema | None) -> None:
    """A declaration must agree with the store's schema and with the core columns."""
    if declared is None:
        return
    for f in declared:
        for other, what in ((schema, "this store holds"), (CORE, "mmsearch fixes")):
            if other is not None and f.name in other.names \
                    and other.field(f.name).type != f.type:
                raise SchemaError(f"column {f.name!r}: {what} {other.field(f.name).type}, "
                                  f"the declared schema says {f.type}")


def conform(table: pa.Table, schema: pa.Schema | None, declared: pa.Schema | None = None,
            ) -> tuple[pa.Table, pa.Schema, list[dict[str, Any]]]:
    """Cast a commit's rows to the store's types.

    Returns (rows cast, the store's new schema, the changes made: new columns and
    widenings). Raises SchemaError, before anything is written, when a column does not fit.
    """
    fields = {f.name: f for f in (schema or pa.schema([]))}
    if schema is None and declared is not None:
        fields.update({f.name: f for f in declared})
    changes: list[dict[str, Any]] = []
    columns = []
    for name, column in zip(table.column_names, table.columns, strict=True):
        want = expected_type(name, schema, declared)
        given = column.type
        if want is None or (pa.types.is_null(want) and name not in CORE.names):
            clash = [n for n in fields if n.lower() == name.lower() and n != name]
            if clash:
                raise SchemaError(f"column {name!r}: this store has {clash[0]!r}, which SQL "
                                  "filters cannot tell apart; use that name")
            fields[name] = pa.field(name, given)
            if want is None or not pa.types.is_null(given):
                changes.append(_change(name, want, given))
            columns.append(column)
            continue
        column, widened = _fit(name, column, want)
        if widened is not None:
            fields[name] = pa.field(name, widened)
            changes.append(_change(name, want, widened))
        elif name not in fields:
            fields[name] = pa.field(name, want)
            changes.append(_change(name, None, want))
        columns.append(column)
    out = pa.table(columns, names=table.column_names)
    order = list(schema.names) if schema is not None else []
    order += [n for n in fields if n not in order]
    return out, pa.schema([fields[n] for n in order]), changes


def _change(name: str, old: pa.DataType | None, new: pa.DataType) -> dict[str, Any]:
    return {"column": name, "from": None if old is None else str(old), "to": str(new),
            "at": time.time()}


def _fit(name: str, column: pa.ChunkedArray, want: pa.DataType
         ) -> tuple[pa.ChunkedArray, pa.DataType | None]:
    """(column cast to `want`, None) or (column, the widened type); SchemaError if neither."""
    given = column.type
    if given == want:
        return column, None
    t = pa.types
    core = name in CORE.names
    if t.is_null(given):
        return column.cast(want), None
    if t.is_integer(want) and t.is_floating(given) and not core:
        return column.cast(pa.float64()), pa.float64()  # int -> float: safe widening
    if t.is_floating(want) and t.is_floating(given) and given.bit_width > want.bit_width \
            and not core:
        return column, given
    same_kind = ((t.is_integer(want) and t.is_integer(given))
                 or (t.is_floating(want) and (t.is_floating(given) or t.is_integer(given)))
                 or (_is_text(want) and _is_text(given))
                 or (t.is_timestamp(want) and t.is_timestamp(given) and want.tz == given.tz)
                 or (t.is_nested(want) and t.is_nested(given)
                     and type(want) is type(given)))
    if same_kind:
        try:
            safe = not (t.is_timestamp(want) or t.is_floating(want))
            return column.cast(want, safe=safe), None
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as e:
            raise SchemaError(f"column {name!r}: expected {want}, given {given} whose values "
                              f"do not fit ({str(e).splitlines()[0]}); nothing was written"
                              ) from None
    raise SchemaError(f"column {name!r}: expected {want}, given {given}; nothing was written")


def _is_text(typ: pa.DataType) -> bool:
    return pa.types.is_string(typ) or pa.types.is_large_string(typ)
