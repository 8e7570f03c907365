"""A ClickHouse server over the native protocol (clickhouse-driver) behind the ``ClickHouse`` API.

clickhouse-driver substitutes ``%(name)s`` parameters on the client with
its own escaping (18.16 has no server-side parameters). A driver
``Client`` is not thread-safe, so calls are serialized with a lock. After a
network error the driver reconnects on the next call, so a caller that
retries (the worker does, with backoff) rides out a server restart.
"""

from __future__ import annotations

import logging
import threading
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from clickhouse_driver import Client, defines
from clickhouse_driver.block import BlockInfo, RowOrientedBlock
from clickhouse_driver.errors import Error as DriverError
from clickhouse_driver.errors import ServerException, TypeMismatchError
from clickhouse_driver.protocol import ClientPacketTypes
from clickhouse_driver.varint import write_varint
from clickhouse_driver.writer import write_binary_str

from sinks import blocks
from sinks.protocol import ClickHouseError, Params, check_identifiers, check_params, parse_version

# The driver logs each failed connection attempt with its stack trace before
# raising; the error it raises reaches the caller as a ClickHouseError with
# the same reason, so its own warnings are noise (and a stack trace on a
# command line that should print one line).
logging.getLogger("clickhouse_driver.connection").setLevel(logging.ERROR)

__all__ = ["ServerClickHouse"]

# OSError/EOFError: the socket broke or the server went away mid-call.
_FAILURES = (DriverError, OSError, EOFError)
# The driver waits 300 s for a silent peer; a worker retrying with backoff
# is better served by failing sooner. The URL's own values win.
_DEFAULT_TIMEOUTS_S = {"connect_timeout": "5", "send_receive_timeout": "60"}
# Sent with every INSERT: into a Distributed table (cluster mode,
# sinks/cluster.py) the insert returns only once each shard stored the
# block, instead of queueing it on this server's disk to send later (the
# default), so the worker commits offsets only for rows the shards have.
# No effect on other tables; known to 18.16 and, as an alias of
# distributed_foreground_insert, to current servers.
_INSERT_SETTINGS = {"insert_distributed_sync": 1}


def _with_default_timeouts(url: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    for name, value in _DEFAULT_TIMEOUTS_S.items():
        query.setdefault(name, value)
    return urlunsplit(parts._replace(query=urlencode(query)))


class _Client(Client):
    """clickhouse-driver's ``Client``, with an insert's rows written by ``sinks.blocks`` where it can.

    ``send_data`` is the driver's step that turns an insert's rows into
    Native blocks on the socket, after the server has sent the columns'
    types. Here the rows become one block in one pass of C; the packet
    around it (the data packet's header, the block info, the compression
    the URL asks for, the empty block that ends the insert) is written by
    the driver's own parts as its ``send_data`` writes them. Rows the codec
    does not take, and the driver's own options that change the encoding
    (numpy, bytes for strings, another text encoding), go to the driver.
    """

    blocks_encoded = 0  # inserts whose block the codec wrote (tests read it)

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003 - the driver's
        # A None in a row is stored as its column's default ('' or 0), as chdb stores a NULL
        # in a column that is not Nullable: one rule on both backends (the URL may say otherwise).
        settings = dict(kwargs.pop("settings", None) or {})
        settings.setdefault("input_format_null_as_default", True)
        super().__init__(*args, settings=settings, **kwargs)

    def send_data(self, sample_block, data, types_check=False, columnar=False):  # noqa: ANN001, ANN201 - the driver's signature
        connection = self.connection
        settings = connection.context.client_settings
        if (
            columnar
            or types_check
            or settings["use_numpy"]
            or settings["strings_as_bytes"]
            or str(settings["strings_encoding"]).lower().replace("_", "-") not in ("utf-8", "utf8")
            or not isinstance(data, list)
            or not 0 < len(data) <= settings["insert_block_size"]
        ):
            return super().send_data(sample_block, data, types_check=types_check, columnar=columnar)
        names = [name for name, _ in sample_block.columns_with_types]
        types = [spec for _, spec in sample_block.columns_with_types]
        revision = connection.server_info.used_revision
        payload = blocks.encode(
            names, types, data, serialization_flag=revision >= defines.DBMS_MIN_REVISION_WITH_CUSTOM_SERIALIZATION
        )
        if payload is None:
            return super().send_data(sample_block, data, types_check=types_check, columnar=columnar)
        # What Connection.send_data and BlockOutputStream.write put around a block's columns.
        write_varint(ClientPacketTypes.DATA, connection.fout)
        if revision >= defines.DBMS_MIN_REVISION_WITH_TEMPORARY_TABLES:
            write_binary_str("", connection.fout)
        block_out = connection.block_out
        if revision >= defines.DBMS_MIN_REVISION_WITH_BLOCK_INFO:
            BlockInfo().write(block_out.fout)
        block_out.fout.write(payload)
        block_out.finalize()
        self.receive_profile_events()
        connection.send_data(RowOrientedBlock())  # the empty block that ends the insert's data
        self.receive_profile_events()
        self.blocks_encoded += 1
        return len(data)


class ServerClickHouse:
    """One native-protocol connection. Use ``connect('clickhouse://user:pw@host:9000/db')``."""

    def __init__(self, client: Client, url: str = "") -> None:
        self._client: Client | None = client
        self._lock = threading.Lock()
        self._url = url  # for the analysts' connection (read_only_query)
        self._reader: "ServerClickHouse | None" = None
        self._reader_lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str) -> "ServerClickHouse":
        """Build a client for ``url`` (query-string options go to the driver); connects lazily."""
        try:
            client = _Client.from_url(_with_default_timeouts(url))
        except Exception as exc:
            raise ClickHouseError(f"bad ClickHouse URL: {exc}") from exc
        return cls(client, url)

    @property
    def url(self) -> str:
        """The URL this connection was made from ("" when it was built around a client)."""
        return self._url

    def _call(self, what: str, sql: str, params, **kwargs):  # noqa: ANN001 - driver's loose types
        with self._lock:
            if self._client is None:
                raise ClickHouseError("connection is closed")
            try:
                return self._client.execute(sql, params, **kwargs)
            except TypeMismatchError as exc:
                # Rows that do not fit the columns: a bug that no retry fixes.
                raise TypeError(f"{what}: {exc}") from exc
            except UnicodeDecodeError as exc:
                # 18.16 cuts a long error message at a byte count, inside a character if it falls
                # there (an analyst's statement quoted back); the driver cannot decode the rest.
                self._client.disconnect()
                raise ClickHouseError(
                    f"{what} failed: the server's answer is not valid UTF-8 (byte {exc.start} of a message it cut short)"
                ) from exc
            except _FAILURES as exc:
                # Drop the socket so the next call starts from a clean connection.
                self._client.disconnect()
                message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
                # Old servers append a native stack trace: noise for the reader.
                message = message.split("Stack trace:")[0].strip()
                # A server's own error carries its code; the driver's network
                # errors (209 SOCKET_TIMEOUT, 210 NETWORK_ERROR, ...) are transient.
                code = exc.code if isinstance(exc, ServerException) else None
                raise ClickHouseError(f"{what} failed: {message}", code) from exc

    def execute(self, sql: str, params: Params | None = None) -> list[tuple]:
        code = [line.strip() for line in sql.splitlines() if line.strip() and not line.lstrip().startswith("--")]
        settings = _INSERT_SETTINGS if code and code[0][:6].upper() == "INSERT" else None
        return [tuple(row) for row in self._call("statement", sql, check_params(params), settings=settings)]

    def query(self, sql: str, params: Params | None = None) -> tuple[list[str], list[tuple]]:
        rows, columns = self._call("query", sql, check_params(params), with_column_types=True)
        return [name for name, _ in columns], [tuple(row) for row in rows]

    def read_only_query(self, sql: str, settings: dict[str, Any]) -> tuple[list[str], list[tuple]]:
        """One analyst query on a connection of its own, with ``settings`` (``readonly=1``) sent with it.

        The analysts' connection is not the one the worker inserts on, so a
        slow query never holds the inserts' lock. The server refuses a
        second statement (its parser), writes no ``INTO OUTFILE`` over TCP,
        and with readonly=1 refuses writes, DDL, ``SET``/``SETTINGS`` and
        (18.16) every table function.
        """
        if self._client is None:
            raise ClickHouseError("connection is closed")
        with self._reader_lock:
            if self._reader is None:
                self._reader = ServerClickHouse.from_url(self._url)
            reader = self._reader
        rows, columns = reader._call("query", sql, None, with_column_types=True, settings=dict(settings))
        return [name for name, _ in columns], [tuple(row) for row in rows]

    def insert(self, table: str, columns: list[str], rows: list[tuple]) -> None:
        """One native INSERT block from the row tuples (the driver's fastest row path).

        Raises ClickHouseError when the server fails or cannot be reached
        (worth retrying), TypeError/ValueError when rows do not fit (a bug).
        """
        if not rows:
            return
        check_identifiers(table, columns)
        if set(map(len, rows)) != {len(columns)}:
            raise ValueError(f"every row must have {len(columns)} values for {table}")
        try:
            self._call(
                f"insert into {table}", f"INSERT INTO {table} ({', '.join(columns)}) VALUES", rows, settings=_INSERT_SETTINGS
            )
        except AttributeError as exc:
            # The driver's String column calls .encode() on each value: a number or another
            # object there is a row that does not fit, as chdb's Arrow says with a TypeError.
            raise TypeError(f"insert into {table}: a value that is not text in a String column ({exc})") from exc

    def server_version(self) -> tuple[int, ...]:
        return parse_version(self.execute("SELECT version()")[0][0])

    def close(self) -> None:
        with self._reader_lock:
            reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()
        with self._lock:
            client, self._client = self._client, None
            if client is not None:
                client.disconnect()

    def __repr__(self) -> str:
        conn = self._client.connection if self._client else None
        if conn is None:
            return "ServerClickHouse(closed)"
        # The host it is connected to, or will try first (the driver rotates alt_hosts to the front).
        host, port = conn.hosts[0]
        return f"ServerClickHouse({host}:{port})"
