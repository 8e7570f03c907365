"""Row tuples to ClickHouse Native blocks without a Python call per value.

clickhouse-driver encodes an insert column by column in Python: it copies
each column out of the rows, converts every ``Date`` through a new ``date``
object and checks every ``DateTime``, then writes the values. For the
worker's ``cx.events`` rows that is 6 to 7 us of CPU per row, the largest
part of the insert's cost (docs/performance.md, "Levers measured").
``encode`` writes the same bytes in one pass of C (``sinks/blockcodec.pyx``,
compiled by ``cxstream build-native``).

It takes only what it encodes exactly as the driver does: the column types
in ``KINDS``, values of the Python types the sink's rows hold (``str`` or
``bytes``, ``int``, ``float``, ``datetime.date``, a ``list`` or ``tuple``
of strings). For anything else (a ``None``, a ``datetime``, a number out of
the column's range, a type such as ``Nullable(String)``) it returns ``None`` and the block goes to the driver,
whose conversions and errors stay the reference. Without a compiled copy
(``CX_NATIVE=0``, or not built), or on a big-endian machine, it always
returns ``None``.
"""

from __future__ import annotations

import sys

from pipeline import native

__all__ = ["KINDS", "available", "encode", "kinds_of"]

# ClickHouse type -> the codec's column kind (the enum in blockcodec.pyx).
KINDS: dict[str, int] = {
    "String": 1,
    "UInt8": 2,
    "UInt16": 3,
    "UInt32": 4,
    "UInt64": 5,
    "Int8": 6,
    "Int16": 7,
    "Int32": 8,
    "Int64": 9,
    "Float32": 10,
    "Float64": 11,
    "Date": 12,
    "DateTime": 13,
    "Array(String)": 14,
}

# The codec writes numbers as they lie in memory; the Native format is little-endian.
_codec = native.load("sinks.blockcodec") if sys.byteorder == "little" else None


def available() -> bool:
    """Whether the compiled codec is loaded (else every block goes to the driver)."""
    return _codec is not None


def kinds_of(types: list[str]) -> list[int] | None:
    """Each type's kind; None when one is a type the codec does not write."""
    kinds = []
    for spec in types:
        kind = KINDS.get(spec)
        if kind is None and spec.startswith("DateTime(") and spec.endswith(")"):
            kind = KINDS["DateTime"]  # the zone is read by the server; the values are epoch seconds
        if kind is None:
            return None
        kinds.append(kind)
    return kinds


def encode(names: list[str], types: list[str], rows: list[tuple], *, serialization_flag: bool) -> bytes | None:
    """The Native block of ``rows`` (without the protocol's block info), or None for the driver.

    ``serialization_flag``: a 0 byte after each column's type, which the
    native protocol carries from revision 54454 on (never in the Native
    format of a file or of chdb's input).
    """
    if _codec is None or type(rows) is not list:
        return None
    kinds = kinds_of(types)
    if kinds is None:
        return None
    return _codec.encode(rows, list(names), list(types), kinds, serialization_flag)
