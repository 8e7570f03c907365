"""Any statement an analyst sends to ``/cx/query`` is refused with a reason or answered, and reaches nothing (hypothesis).

The statements are built from the pieces that reach outside the store or
change it (writes, DDL, ``SET``, ``KILL``, ``SYSTEM``, table functions and
functions that read files or call servers, ``INTO OUTFILE``, ``SETTINGS``),
in the shapes that have hidden such pieces from text filters (subqueries,
``WITH``, ``UNION``, ``EXPLAIN``, ``DESCRIBE``, second statements after
``;``, comments, quotes), with arbitrary text around them. Each one runs
through ``run_analyst_query`` on embedded chdb, the default store, with:

* a canary file whose secret text must never come back (rows or error);
* a TCP listener on 127.0.0.1 that must never be connected to;
* a working directory that must stay empty (``INTO OUTFILE``, ``file()``);
* ``cx.events`` and the list of databases and tables that must not change.

The outcome is one of: columns and rows, ``AnalystQueryRefused`` or
``ClickHouseError``, each with a message; any other exception fails.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.analyst_sql import AnalystQueryRefused, QueryLimits, run_analyst_query
from sinks.client import ClickHouse, ClickHouseError, connect
from tests.fixtures.report import tell
from tests.fuzz.conftest import RUN_LENGTHS, fuzz_settings

SECRET = "cx-canary-5f1d2a9e-secret"
LIMITS = QueryLimits(timeout_s=2.0, max_memory_bytes=100_000_000, max_result_rows=1_000)

# Where a statement could reach: {canary} a file holding SECRET, {port} the listener, {cwd} the working directory.
TABLES = [
    "file('{canary}', 'LineAsString')",
    "file('{canary}')",
    "file('{cwd}/*', 'LineAsString')",
    "url('http://127.0.0.1:{port}/x', 'LineAsString')",
    "url('http://127.0.0.1:{port}/x', 'CSV', 'x String')",
    "executable('cat {canary}', 'TSV', 'x String')",
    "remote('127.0.0.1:{port}', system.one)",
    "remoteSecure('127.0.0.1:{port}', system.one)",
    "s3('http://127.0.0.1:{port}/b/k', 'LineAsString')",
    "mysql('127.0.0.1:{port}', 'd', 't', 'u', 'p')",
    "postgresql('127.0.0.1:{port}', 'd', 't', 'u', 'p')",
    "merge('cx', '.*')",
    "view(SELECT * FROM file('{canary}', 'LineAsString'))",
    "generateRandom('x String')",
    "input('x String')",
    "numbers(3)",
    "cx.events",
    "system.one",
    "`cx`.`events`",
]
FUNCTIONS = [
    "file('{canary}')",
    "FILE('{canary}')",
    "`file`('{canary}')",
    "arrayMap(p -> file(p), ['{canary}'])",
    "catboostEvaluate('{canary}', 1)",
    "aiGenerateContent('http://127.0.0.1:{port}/', 'hi')",
    "dictGet('cx.nothing', 'x', 1)",
    "getSetting('readonly')",
    "sleep(0.001)",
    "1",
]
WRITES = [
    "INSERT INTO cx.events (tenant, event_id) VALUES ('shopB', 'pwn')",
    "INSERT INTO FUNCTION file('{cwd}/out.tsv', 'TSV', 'x String') VALUES ('pwn')",
    "INSERT INTO FUNCTION url('http://127.0.0.1:{port}/x', 'CSV', 'x String') VALUES ('pwn')",
    "CREATE TABLE cx.pwn (x UInt8) ENGINE = Memory",
    "CREATE TABLE cx.pwn ENGINE = File(TSV) AS SELECT 1",
    "CREATE DATABASE pwn",
    "CREATE VIEW cx.pwn AS SELECT 1",
    "CREATE DICTIONARY cx.pwn (x String) PRIMARY KEY x SOURCE(FILE(path '{canary}' format 'TSV')) LAYOUT(FLAT()) LIFETIME(0)",
    "CREATE FUNCTION pwn AS x -> x",
    "DROP TABLE cx.events",
    "TRUNCATE TABLE cx.events",
    "ALTER TABLE cx.events DELETE WHERE 1",
    "ALTER TABLE cx.events UPDATE tenant = 'pwn' WHERE 1",
    "ALTER TABLE cx.events ADD COLUMN pwn UInt8",
    "DELETE FROM cx.events WHERE 1",
    "RENAME TABLE cx.events TO cx.gone",
    "EXCHANGE TABLES cx.events AND system.one",
    "DETACH TABLE cx.events",
    "OPTIMIZE TABLE cx.events FINAL",
    "SET readonly = 0",
    "KILL QUERY WHERE 1",
    "SYSTEM DROP DNS CACHE",
    "SYSTEM FLUSH LOGS",
    "BACKUP TABLE cx.events TO File('{cwd}/b')",
    "GRANT ALL ON *.* TO default",
    "CREATE USER pwn",
    "SELECT * FROM cx.events INTO OUTFILE '{cwd}/o.tsv'",
    "SELECT 1 INTO OUTFILE '{cwd}/o.tsv' FORMAT TSV",
    "SELECT * FROM cx.events FORMAT TSV",
    "SELECT 1 SETTINGS readonly = 0",
    "SELECT 1 SETTINGS max_result_rows = 0",
]
# Shapes a statement, table or function hides in.
SHAPES = [
    "{w}",
    "SELECT * FROM {t}",
    "SELECT count() FROM {t}",
    "SELECT {f}",
    "SELECT {f} FROM {t}",
    "SELECT * FROM numbers(1) JOIN {t} ON 1 = 1",
    "SELECT * FROM cx.events WHERE tenant IN (SELECT * FROM {t})",
    "SELECT * FROM (SELECT * FROM {t})",
    "SELECT (SELECT {f})",
    "WITH {f} AS x SELECT x",
    "WITH x AS (SELECT * FROM {t}) SELECT * FROM x",
    "SELECT 1 UNION ALL SELECT * FROM {t}",
    "DESCRIBE TABLE {t}",
    "DESCRIBE (SELECT {f})",
    "EXPLAIN SELECT * FROM {t}",
    "EXPLAIN PIPELINE SELECT {f} FROM {t}",
    "EXPLAIN SYNTAX {w}",
    "EXPLAIN AST {w}",
    "EXPLAIN ESTIMATE SELECT * FROM {t}",
    "SHOW CREATE TABLE cx.events",
    "EXISTS TABLE cx.events",
    "SELECT * FROM {t} SETTINGS readonly = 0",
    "SELECT {f} FORMAT TSV",
    "SELECT 1; {w}",
    "{w}; SELECT 1",
    "SELECT 1 /* ; {w} */",
    "SELECT '; {w}'",
    "SELECT 1 -- ; {w}\n",
    "SELECT \"a'b\" FROM (SELECT 1 AS \"a'b\"); {w}; SELECT 'c\"'",
]
NOISE = st.text(alphabet=st.sampled_from(list(" \n\t;'\"`()/*-#\\,.{}$?:@%0aZé\x00")), max_size=6)


@st.composite
def statements(draw: st.DrawFn) -> str:
    shape = draw(st.sampled_from(SHAPES))
    sql = shape.format(
        w=draw(st.sampled_from(WRITES)), t=draw(st.sampled_from(TABLES)), f=draw(st.sampled_from(FUNCTIONS))
    )
    case = draw(st.sampled_from(["as written", "upper", "lower"]))
    if case == "upper":
        sql = sql.upper()
    elif case == "lower":
        sql = sql.lower()
    return draw(NOISE) + sql + draw(NOISE)


class _Listener:
    """A TCP port on 127.0.0.1 that counts the connections it is offered."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@dataclass
class World:
    ch: ClickHouse
    places: dict[str, str]
    listener: _Listener
    runners: dict[str, Callable[[str], tuple[list[str], list[tuple]]]]


@pytest.fixture(params=["chdb", pytest.param("server", marks=pytest.mark.integration)])
def world(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    """The store with ``cx.events``, the places nothing may reach, and who runs an analyst's statement.

    ``chdb``: the embedded store (``run_analyst_query``, as the worker does).
    ``server``: clickhouse-server, through the worker's read-only path and,
    on the local server, as the ``analyst`` user of ``infra/clickhouse/users.xml``.
    """
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    canary = tmp_path / "canary.txt"
    canary.write_text(f"{SECRET}\n{SECRET},{SECRET}\n")
    listener = _Listener()
    places = {"canary": str(canary), "cwd": str(cwd), "port": str(listener.port)}
    server = request.getfixturevalue("clickhouse_server") if request.param == "server" else None
    ch = connect(server.url if server is not None else f"chdb://{tmp_path / 'chdb'}")
    runners: dict[str, Callable[[str], tuple[list[str], list[tuple]]]] = {
        "worker": lambda sql: run_analyst_query(ch, sql, LIMITS)
    }
    analyst = None
    if server is not None and server.kind == "local":
        analyst = connect(f"clickhouse://analyst:analyst@127.0.0.1:{server.tcp_port}/cx")
        runners["analyst user"] = analyst.query
    try:
        ch.execute("DROP DATABASE IF EXISTS cx")
        ch.execute("CREATE DATABASE cx")
        ch.execute("CREATE TABLE cx.events (tenant String, event_id String) ENGINE = MergeTree ORDER BY event_id")
        ch.insert("cx.events", ["tenant", "event_id"], [("shopA", "e1")])
        yield World(ch, places, listener, runners)
    finally:
        if server is not None:
            ch.execute("DROP DATABASE IF EXISTS cx")
        if analyst is not None:
            analyst.close()
        ch.close()
        listener.close()


def _catalog(ch: ClickHouse) -> list[tuple]:
    return ch.execute(
        "SELECT database, name FROM system.tables WHERE database NOT IN ('system', 'INFORMATION_SCHEMA', 'information_schema')"
        " ORDER BY database, name"
    ) + ch.execute("SELECT name, '' FROM system.databases ORDER BY name")


@pytest.mark.parametrize("run", RUN_LENGTHS)
def test_any_statement_is_refused_or_answered_and_reaches_nothing(
    world: World, run: str, request: pytest.FixtureRequest
) -> None:
    ch, places, listener = world.ch, world.places, world.listener
    cwd = Path(places["cwd"])
    catalog = _catalog(ch)
    outcomes: dict[str, dict[str, int]] = {}  # who ran it -> outcome -> examples
    started = time.monotonic()

    @fuzz_settings(run, bounded_examples=150)
    @given(template=statements())
    def check(template: str) -> None:
        sql = template.replace("{canary}", places["canary"]).replace("{cwd}", places["cwd"]).replace("{port}", places["port"])
        for who, runner in world.runners.items():
            try:
                columns, rows = runner(sql)
            except AnalystQueryRefused as exc:
                said, kind = str(exc), "refused"
            except ClickHouseError as exc:
                said, kind = str(exc), "clickhouse error"
            else:
                said, kind = repr((columns, rows)), "answered"
            counts = outcomes.setdefault(who, {})
            counts[kind] = counts.get(kind, 0) + 1
            assert said, f"{who}: {kind} without a message: {sql!r}"
            assert SECRET not in said, f"{who}: the canary file's text came back ({kind}): {sql!r}"
            assert listener.connections == 0, f"{who}: a connection reached 127.0.0.1:{places['port']}: {sql!r}"
            assert list(cwd.iterdir()) == [], f"{who}: a file was written: {sql!r}"
            assert ch.execute("SELECT tenant, event_id FROM cx.events") == [("shopA", "e1")], (who, sql)
            assert _catalog(ch) == catalog, (who, sql)

    check()
    tell(request.config, f"analyst statements ({request.node.callspec.id}): {sum(outcomes['worker'].values())} examples, "
                         f"{outcomes}, {time.monotonic() - started:.1f} s")
    # The run tried statements that ran, not only refusals. On a server the engine alone refuses
    # (readonly=1 as a query setting, the analyst user's profile): there is no tree check to refuse first.
    expected = {"clickhouse error", "answered"} | ({"refused"} if "chdb" in request.node.callspec.id else set())
    assert set(outcomes["worker"]) == expected, outcomes
