"""Embedded ClickHouse (chdb-core) behind the ``ClickHouse`` API.

chdb runs the ClickHouse engine inside this process on a data directory.
Two limits shape this class: a directory can be open in one process only,
and one process can open one directory only (until it is closed). Calls
are serialized with a lock because a streaming insert must not interleave
with queries on the same connection, and the worker calls from an executor
thread while a query endpoint may call from another.
"""

from __future__ import annotations

import re
import threading
from datetime import date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import orjson
import pyarrow as pa
from chdb.session import Session

from sinks import blocks
from sinks.chtypes import arrow_type, decoder, split_type, to_epoch_s
from sinks.protocol import ClickHouseError, Params, check_identifiers, check_params, error_code, parse_version

__all__ = ["ChdbClickHouse", "ReadOnlySession", "arrow_stream", "bind_params", "insert_payload"]

_RESULT_FORMAT = "JSONCompactEachRowWithNamesAndTypes"
_PLACEHOLDER = re.compile(r"%\((\w+)\)s|%%")
# Statements after which cached column types may be stale.
_READ_ONLY = re.compile(r"^\s*(SELECT|WITH|SHOW|DESCRIBE|DESC|EXISTS|EXPLAIN)\b", re.IGNORECASE)
_SETTING_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\0": "\\0"})


def _escape(text: str) -> str:
    # chdb parses parameter values in ClickHouse's escaped (TSV) text form:
    # without this a tab or newline is rejected and "\N" or "a\tb" change.
    return text.translate(_ESCAPES)


def _typed(value: Any) -> tuple[str, str]:
    """ClickHouse type and escaped text of one checked parameter value."""
    if isinstance(value, str):
        return "String", _escape(value)
    if isinstance(value, int):
        return ("Int64" if -(2**63) <= value < 2**63 else "UInt64"), str(value)
    if isinstance(value, float):
        return "Float64", repr(value)
    if isinstance(value, datetime):
        return "DateTime('UTC')", value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return "Date", value.isoformat()
    raise TypeError(f"unsupported parameter type {type(value).__name__}")


def bind_params(sql: str, params: Params | None) -> tuple[str, dict[str, str]]:
    """Rewrite ``%(name)s`` placeholders as typed ``{name:Type}`` chdb parameters.

    Without params the SQL is left as is (like clickhouse-driver); with
    params, ``%%`` is a literal ``%``. Raises KeyError for a placeholder that
    has no value.
    """
    checked = check_params(params)
    if checked is None:
        return sql, {}
    bound: dict[str, str] = {}

    def replace(match: re.Match) -> str:
        name = match.group(1)
        if name is None:
            return "%"
        ch_type, text = _typed(checked[name])
        bound[name] = text
        return "{%s:%s}" % (name, ch_type)

    return _PLACEHOLDER.sub(replace, sql), bound


def _decode_result(raw: bytes) -> tuple[list[str], list[tuple]]:
    lines = raw.splitlines()
    if len(lines) < 2:
        return [], []
    names = orjson.loads(lines[0])
    decoders = [decoder(t) for t in orjson.loads(lines[1])]
    rows = []
    for line in lines[2:]:
        if line:
            rows.append(tuple(f(v) for f, v in zip(decoders, orjson.loads(line))))
    return names, rows


def _arrow_column(values: tuple, ch_type: str) -> pa.Array:
    target = arrow_type(ch_type)
    try:
        return pa.array(values, type=target)
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        # DateTime cells may be datetimes instead of epoch seconds.
        if split_type(ch_type)[0] != "DateTime":
            raise
        return pa.array([to_epoch_s(v) for v in values], type=target)


def arrow_stream(columns: list[str], types: dict[str, str], rows: list[tuple]) -> bytes:
    """The rows as one Arrow IPC stream, each column of its ClickHouse type in ``types``.

    Raises TypeError/ValueError (Arrow's) for rows that do not fit the types.
    """
    arrays = [_arrow_column(values, types[name]) for name, values in zip(columns, zip(*rows))]
    sink = pa.BufferOutputStream()
    batch = pa.Table.from_arrays(arrays, names=columns)
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_table(batch)
    return sink.getvalue().to_pybytes()


def insert_payload(columns: list[str], types: dict[str, str], rows: list[tuple]) -> tuple[str, bytes]:
    """(input format, data) of an insert: a Native block from the compiled codec (``sinks.blocks``:
    the values a server insert through clickhouse-driver stores), else an Arrow stream.

    Raises TypeError/ValueError (Arrow's) for rows that do not fit the types.
    """
    data = blocks.encode(columns, [types[name] for name in columns], rows, serialization_flag=False)
    if data is not None:
        return "Native", data
    return "ArrowStream", arrow_stream(columns, types, rows)


def _setting_literal(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise TypeError(f"unsupported setting value {value!r}")
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return repr(value)


class ReadOnlySession:
    """A chdb connection of its own on the store, for one analyst query (``ChdbClickHouse.read_only_session``).

    It shares nothing with the writer's connection but the engine: no lock,
    no session settings, no leftover output. Its settings are set in order
    (``readonly=1`` last, which then forbids changing any, in ``SET`` or in a
    query's ``SETTINGS``).
    """

    def __init__(self, conn_str: str, settings: dict[str, Any]) -> None:
        self._session: Session | None = Session(conn_str)
        try:
            for name, value in settings.items():
                if not _SETTING_NAME.match(name):
                    raise ValueError(f"not a setting name: {name!r}")
                self._session.query(f"SET {name} = {_setting_literal(value)}")
        except BaseException:
            self.close()
            raise

    def _raw(self, sql: str, fmt: str, params: dict[str, str] | None = None) -> bytes:
        if self._session is None:
            raise ClickHouseError("connection is closed")
        try:
            return self._session.query(sql, fmt, params=params).bytes()
        except Exception as exc:
            raise ClickHouseError(str(exc).strip()) from exc

    def explain_ast(self, sql: str) -> str:
        """ClickHouse's tree of ``sql``; ClickHouseError unless it parses as exactly one statement.

        The parse that counts statements is ``formatQuerySingleLine`` on the
        text passed as a bound parameter, so no part of it can run; only then
        is ``EXPLAIN AST`` (a parse, nothing runs) prefixed to it.
        """
        self._raw("SELECT formatQuerySingleLine({q:String})", "TabSeparatedRaw", {"q": _escape(sql)})
        return self._raw(f"EXPLAIN AST {sql}", "TabSeparatedRaw").decode()

    def query(self, sql: str) -> tuple[list[str], list[tuple]]:
        return _decode_result(self._raw(sql, _RESULT_FORMAT))

    def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            session.close()


class ChdbClickHouse:
    """A chdb session on one data directory, in UTC. Use ``connect('chdb:///path')``."""

    blocks_encoded = 0  # inserts sent as a Native block from the codec (tests read it)

    def __init__(self, path: Path) -> None:
        if not path.is_absolute() or "?" in str(path):
            raise ClickHouseError(f"chdb path must be absolute and contain no '?': {path}")
        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._types: dict[str, dict[str, str]] = {}
        try:
            # session_timezone pins now(), toDate() and text DateTime output to
            # UTC whatever the TZ of this process.
            self._session: Session | None = Session(f"{path}?session_timezone=UTC")
        except Exception as exc:
            raise ClickHouseError(
                f"cannot open chdb directory {path}: {exc}. A chdb directory can be open in one process "
                "only, and a process can open one directory only: is a worker running on it "
                "(then use `cxstream query`, which goes through the worker)?"
            ) from exc

    @classmethod
    def from_url(cls, url: str) -> "ChdbClickHouse":
        """``chdb:///abs/path`` -> an open connection on that directory."""
        parts = urlsplit(url)
        if parts.netloc or not parts.path:
            raise ClickHouseError(f"expected chdb:///absolute/path, got {url!r}")
        return cls(Path(unquote(parts.path)))

    def _run(self, sql: str, params: Params | None) -> tuple[list[str], list[tuple]]:
        if self._session is None:
            raise ClickHouseError("connection is closed")
        bound_sql, bound = bind_params(sql, params)
        try:
            result = self._session.query(bound_sql, _RESULT_FORMAT, params=bound or None)
        except Exception as exc:
            raise ClickHouseError(str(exc).strip(), error_code(str(exc))) from exc
        if not _READ_ONLY.match(sql):
            self._types.clear()
        return _decode_result(result.bytes())

    def execute(self, sql: str, params: Params | None = None) -> list[tuple]:
        with self._lock:
            return self._run(sql, params)[1]

    def query(self, sql: str, params: Params | None = None) -> tuple[list[str], list[tuple]]:
        with self._lock:
            return self._run(sql, params)

    def read_only_session(self, settings: dict[str, Any]) -> ReadOnlySession:
        """A fresh connection on this store with ``settings`` (``readonly=1`` last) for one analyst query.

        It does not take this connection's lock: an analyst query runs while
        the worker inserts (chdb runs different connections' queries at the
        same time). Close it after the query.
        """
        if self._session is None:
            raise ClickHouseError("connection is closed")
        try:
            return ReadOnlySession(f"{self.path}?session_timezone=UTC", settings)
        except Exception as exc:
            raise ClickHouseError(f"cannot open a read-only connection: {str(exc).strip()}") from exc

    def _column_types(self, table: str) -> dict[str, str]:
        types = self._types.get(table)
        if types is None:
            types = {row[0]: row[1] for row in self._run(f"DESCRIBE TABLE {table}", None)[1]}
            self._types[table] = types
        return types

    def insert(self, table: str, columns: list[str], rows: list[tuple]) -> None:
        """Send the rows as one Native block (``sinks.blocks``), or one Arrow stream without the codec.

        Raises ClickHouseError when chdb fails (worth retrying),
        TypeError/ValueError when rows do not fit the columns (a bug).
        """
        if not rows:
            return
        check_identifiers(table, columns)
        if set(map(len, rows)) != {len(columns)}:
            raise ValueError(f"every row must have {len(columns)} values for {table}")
        with self._lock:
            if self._session is None:
                raise ClickHouseError("connection is closed")
            types = self._column_types(table)
            missing = [name for name in columns if name not in types]
            if missing:
                raise ClickHouseError(f"{table} has no columns {missing} (is the schema migrated?)")
            # Arrow raises TypeError/ValueError here for rows that do not fit: a bug, not retried.
            fmt, data = insert_payload(columns, types, rows)
            if fmt == "Native":
                self.blocks_encoded += 1
            try:
                with self._session.send_insert(f"INSERT INTO {table} ({', '.join(columns)})", fmt) as ins:
                    ins.append(data)
                    ins.finish()
            except Exception as exc:
                self._types.pop(table, None)
                raise ClickHouseError(f"insert into {table} failed: {str(exc).strip()}", error_code(str(exc))) from exc

    def server_version(self) -> tuple[int, ...]:
        return parse_version(self.execute("SELECT version()")[0][0])

    def close(self) -> None:
        with self._lock:
            session, self._session = self._session, None
            if session is not None:
                session.close()

    def __repr__(self) -> str:
        return f"ChdbClickHouse({str(self.path)!r})"
