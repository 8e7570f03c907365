"""One API for both ways to reach ClickHouse: ``connect(url) -> ClickHouse``.

* ``chdb:///abs/path``: embedded chdb in this process, data in that directory.
* ``clickhouse://user:password@host:9000/db`` (or ``clickhouses://`` for TLS):
  a server over the native protocol (clickhouse-driver).

Query parameters are written ``%(name)s`` on both backends and are never
pasted into SQL by the caller: the server backend lets clickhouse-driver
escape them, chdb binds them as typed ``{name:Type}`` parameters. Only
scalars are portable: ``str``, ``int``, ``float``, ``date``, ``datetime``
(naive datetimes mean UTC). A literal ``%`` in SQL that has parameters is
written ``%%``, as with the driver.
"""

from __future__ import annotations

from sinks.protocol import (
    PERMANENT_CODES,
    ClickHouse,
    ClickHouseError,
    Params,
    check_identifiers,
    check_params,
    error_code,
    parse_version,
)

__all__ = [
    "ClickHouse",
    "ClickHouseError",
    "PERMANENT_CODES",
    "error_code",
    "Params",
    "check_identifiers",
    "check_params",
    "connect",
    "connection_of_its_own",
    "parse_version",
]


def connect(url: str) -> ClickHouse:
    """Open the backend ``url`` names; raise ClickHouseError if it cannot be opened."""
    if url.startswith("chdb://"):
        from sinks.backend_chdb import ChdbClickHouse

        return ChdbClickHouse.from_url(url)
    if url.startswith(("clickhouse://", "clickhouses://")):
        from sinks.backend_server import ServerClickHouse

        return ServerClickHouse.from_url(url)
    raise ClickHouseError(f"unsupported ClickHouse URL {url!r}: expected chdb:///path or clickhouse://host:port/db")


def connection_of_its_own(ch: ClickHouse) -> ClickHouse:
    """A second connection to ``ch``'s server, for reads that must not wait behind ``ch``'s inserts.

    A connection runs one call at a time: the worker's id lookup on the
    connection that writes a window's rows waited for those inserts (up to
    hundreds of milliseconds on a loaded server) with every record behind it.
    The embedded store is one session in this process: it is returned as it
    is. Close the result when it is not ``ch``.
    """
    from sinks.backend_server import ServerClickHouse

    if isinstance(ch, ServerClickHouse) and ch.url:
        return ServerClickHouse.from_url(ch.url)
    return ch
