"""ClickHouse type names to Python: Arrow types for chdb inserts, decoders for chdb results.

chdb returns results as text formats; ``decoder(type)`` turns a value of
``JSONCompactEachRowWithNamesAndTypes`` output into the Python value
clickhouse-driver would return for the same type, so callers see the same
rows from both backends (``DateTime('UTC')`` as an aware datetime, plain
``DateTime`` as a naive one, ``Date`` as a date, arrays as lists).
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any, Callable
from zoneinfo import ZoneInfo

import pyarrow as pa

__all__ = ["arrow_type", "decoder", "split_type", "to_epoch_s"]

Decoder = Callable[[Any], Any]

_ARROW_SCALARS = {
    "String": pa.string(),
    "UUID": pa.string(),
    "Int8": pa.int8(),
    "Int16": pa.int16(),
    "Int32": pa.int32(),
    "Int64": pa.int64(),
    "UInt8": pa.uint8(),
    "UInt16": pa.uint16(),
    "UInt32": pa.uint32(),
    "UInt64": pa.uint64(),
    "Float32": pa.float32(),
    "Float64": pa.float64(),
    "Bool": pa.bool_(),
    "Date": pa.date32(),
    "Date32": pa.date32(),
    # DateTime travels as epoch seconds; ClickHouse converts UInt32 to DateTime on insert.
    "DateTime": pa.uint32(),
}


def split_type(type_name: str) -> tuple[str, list[str]]:
    """``'Array(Tuple(String, UInt8))'`` -> ``('Array', ['Tuple(String, UInt8)'])``."""
    type_name = type_name.strip()
    open_at = type_name.find("(")
    if open_at < 0 or not type_name.endswith(")"):
        return type_name, []
    args, depth, quoted, start = [], 0, False, open_at + 1
    for i in range(open_at + 1, len(type_name) - 1):
        c = type_name[i]
        if c == "'" and type_name[i - 1] != "\\":
            quoted = not quoted
        elif not quoted and c == "(":
            depth += 1
        elif not quoted and c == ")":
            depth -= 1
        elif not quoted and c == "," and depth == 0:
            args.append(type_name[start:i].strip())
            start = i + 1
    args.append(type_name[start:-1].strip())
    return type_name[:open_at], args


def arrow_type(type_name: str) -> pa.DataType:
    """The Arrow type to send for a column of ClickHouse type ``type_name``."""
    base, args = split_type(type_name)
    if base in ("Nullable", "LowCardinality"):
        return arrow_type(args[0])
    if base == "Array":
        return pa.list_(arrow_type(args[0]))
    if base == "FixedString" or base.startswith("Enum"):
        return pa.string()
    if base == "DateTime":
        return _ARROW_SCALARS["DateTime"]
    if base in _ARROW_SCALARS and not args:
        return _ARROW_SCALARS[base]
    raise TypeError(f"chdb inserts do not support column type {type_name}")


def to_epoch_s(value: int | datetime) -> int:
    """Epoch seconds for a DateTime cell: ints pass, naive datetimes mean UTC."""
    if isinstance(value, int):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return int(value.timestamp())


def _nullable(inner: Decoder) -> Decoder:
    return lambda v: None if v is None else inner(v)


def _datetime(tz_name: str | None) -> Decoder:
    tz = ZoneInfo(tz_name) if tz_name else None

    def decode(v: str) -> datetime:
        parsed = datetime.fromisoformat(v)
        return parsed.replace(tzinfo=tz) if tz else parsed

    return decode


def _unnamed(element: str) -> str:
    """``'a String'`` (a named tuple element) -> ``'String'``; unnamed types pass."""
    head, sep, rest = element.partition(" ")
    return rest if sep and "(" not in head else element


def decoder(type_name: str) -> Decoder:
    """A function from a JSON-decoded cell of ``type_name`` to its Python value."""
    base, args = split_type(type_name)
    if base == "Nullable":
        return _nullable(decoder(args[0]))
    if base == "LowCardinality":
        return decoder(args[0])
    if base == "Array":
        item = decoder(args[0])
        return lambda v: [item(x) for x in v]
    if base == "Tuple":
        items = [decoder(_unnamed(a)) for a in args]
        return lambda v: tuple(f(x) for f, x in zip(items, v))
    if base.startswith(("Int", "UInt")):
        return int
    if base.startswith("Float"):
        return _nullable(float)
    if base.startswith("Decimal"):
        return lambda v: Decimal(str(v))
    if base in ("Date", "Date32"):
        return date.fromisoformat
    if base in ("DateTime", "DateTime64"):
        tz_arg = args[-1] if args and args[-1].startswith("'") else None
        return _datetime(tz_arg.strip("'") if tz_arg else None)
    if base == "Bool":
        return bool
    return lambda v: v
