"""What both ClickHouse backends share: the ``ClickHouse`` protocol, its error, and the checks of parameters and names.

``sinks.client.connect`` picks a backend (``sinks.backend_chdb``, ``sinks.backend_server``);
the backends import this module, never ``sinks.client``.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timezone
from typing import Any, Mapping, Protocol, runtime_checkable

__all__ = [
    "ClickHouse",
    "ClickHouseError",
    "PERMANENT_CODES",
    "error_code",
    "Params",
    "check_identifiers",
    "check_params",
    "parse_version",
]

Params = Mapping[str, Any]


# ClickHouse error codes that mean "this data will never be accepted": the
# rows are wrong for their columns, so a retry cannot help. Every other code
# (and an error without one: a refused connection, a timeout, a server going
# away, too many parts, a memory limit, a table not yet created) is treated
# as transient and retried. Names from ClickHouse's ErrorCodes.
PERMANENT_CODES = frozenset({
    6,  # CANNOT_PARSE_TEXT
    26,  # CANNOT_PARSE_QUOTED_STRING
    27,  # CANNOT_PARSE_INPUT_ASSERTION_FAILED
    38,  # CANNOT_PARSE_DATE
    41,  # CANNOT_PARSE_DATETIME
    43,  # ILLEGAL_TYPE_OF_ARGUMENT
    53,  # TYPE_MISMATCH
    69,  # ARGUMENT_OUT_OF_BOUND
    70,  # CANNOT_CONVERT_TYPE
    72,  # CANNOT_PARSE_NUMBER
    117,  # INCORRECT_DATA
    131,  # TOO_LARGE_STRING_SIZE
    321,  # VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
    349,  # CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN
    469,  # VIOLATED_CONSTRAINT
    1001,  # STD_EXCEPTION (chdb: a value Arrow/ClickHouse cannot convert)
})  # fmt: skip


class ClickHouseError(RuntimeError):
    """A statement failed or ClickHouse could not be reached; the message says which.

    ``code`` is ClickHouse's error code when the failure came from the
    engine (None for a connection that could not be made or broke);
    ``permanent`` says a retry of the same rows cannot succeed.
    """

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code

    @property
    def permanent(self) -> bool:
        return self.code in PERMANENT_CODES


_CODE = re.compile(r"\bCode: (\d+)")


def error_code(message: str) -> int | None:
    """The ClickHouse error code in an exception's text (``Code: 53. DB::Exception: ...``), if any."""
    match = _CODE.search(message)
    return int(match.group(1)) if match else None


@runtime_checkable
class ClickHouse(Protocol):
    """A connection; safe to share between threads (calls are serialized)."""

    def execute(self, sql: str, params: Params | None = None) -> list[tuple]:
        """Run one statement; the result rows (empty for DDL). Raises ClickHouseError."""

    def query(self, sql: str, params: Params | None = None) -> tuple[list[str], list[tuple]]:
        """Run one SELECT; its column names and rows. Raises ClickHouseError."""

    def insert(self, table: str, columns: list[str], rows: list[tuple]) -> None:
        """Insert row tuples (values in ``columns`` order) as one block. Raises ClickHouseError."""

    def server_version(self) -> tuple[int, ...]:
        """The engine's version, e.g. ``(18, 16, 1)``."""

    def close(self) -> None:
        """Release the connection (for chdb: the data directory). Idempotent."""


def check_params(params: Params | None) -> dict[str, Any] | None:
    """Validate parameters for portability; aware datetimes become naive UTC.

    Raises TypeError for values only one backend would accept (``None``,
    ``bool``, collections), so a query that works on chdb works on a server.
    """
    if params is None:
        return None
    checked: dict[str, Any] = {}
    for name, value in params.items():
        if not name.isidentifier():
            raise TypeError(f"parameter name {name!r} is not an identifier")
        if isinstance(value, bool) or not isinstance(value, (str, int, float, date)):
            raise TypeError(
                f"parameter {name!r}: {type(value).__name__} is not portable; use str, int, float, date, datetime"
            )
        if isinstance(value, datetime) and value.tzinfo is not None:
            value = value.astimezone(timezone.utc).replace(tzinfo=None)
        checked[name] = value
    return checked


_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
_COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_identifiers(table: str, columns: list[str]) -> None:
    """Raise ValueError unless ``table`` (``db.name``) and ``columns`` are plain identifiers.

    Insert statements are built from these names (never from values), so
    they must not be able to carry SQL.
    """
    if not _TABLE.match(table):
        raise ValueError(f"not a table name: {table!r}")
    bad = [c for c in columns if not _COLUMN.match(c)]
    if bad or not columns:
        raise ValueError(f"not column names: {bad or columns!r}")


def parse_version(text: str) -> tuple[int, ...]:
    """``'18.16.1'`` -> ``(18, 16, 1)``; non-numeric parts end the tuple."""
    out: list[int] = []
    for part in text.strip().split("."):
        if not part.isdigit():
            break
        out.append(int(part))
    return tuple(out)
