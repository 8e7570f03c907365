"""Analysts' SQL runs read-only, alone and within limits, as ClickHouse decides (``pipeline.analyst_sql``).

The tree checks run on ``EXPLAIN AST`` text written by hand (the shapes
chdb 26.9 prints); the rest runs real statements on embedded chdb, and, where
a ClickHouse server can run, on it with the ``analyst`` user of
``infra/clickhouse/users.xml``.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from pipeline.analyst_sql import AnalystQueryRefused, QueryLimits, ast_refusal, run_analyst_query
from sinks.client import ClickHouse, ClickHouseError, connect

LIMITS = QueryLimits(timeout_s=2.0, max_memory_bytes=100_000_000, max_result_rows=1_000)

SELECT_FROM_TABLE = """SelectWithUnionQuery (children 1)
 ExpressionList (children 1)
  SelectQuery (children 2)
   ExpressionList (children 1)
    Asterisk
   TablesInSelectQuery (children 1)
    TablesInSelectQueryElement (children 1)
     TableExpression (children 1)
      TableIdentifier cx.events
"""


def test_a_select_from_a_table_is_allowed() -> None:
    assert ast_refusal(SELECT_FROM_TABLE) is None


def test_into_outfile_a_literal_child_of_the_statement_is_refused() -> None:
    tree = """SelectWithUnionQuery (children 2)
 ExpressionList (children 1)
  SelectQuery (children 1)
   ExpressionList (children 1)
    Literal 'x'
 Literal 'x.tsv'
"""
    assert ast_refusal(tree) == "INTO OUTFILE is not allowed: the answer comes back to the caller"


def test_a_format_clause_is_refused() -> None:
    tree = """SelectWithUnionQuery (children 2)
 ExpressionList (children 1)
  SelectQuery (children 1)
   ExpressionList (children 1)
    Literal UInt64_1
 Identifier JSON
"""
    assert ast_refusal(tree) == "FORMAT is chosen by the query endpoint: leave it out"


def test_exists_names_its_table_with_identifiers_and_is_allowed() -> None:
    assert ast_refusal("ExistsTableQuery cx events (children 2)\n Identifier cx\n Identifier events\n") is None


def test_a_table_function_in_a_nested_subquery_is_refused() -> None:
    tree = """SelectWithUnionQuery (children 1)
 ExpressionList (children 1)
  SelectQuery (children 2)
   ExpressionList (children 1)
    Function count (children 1)
     ExpressionList
   Function in (children 1)
    ExpressionList (children 2)
     Identifier x
     Subquery (children 1)
      SelectWithUnionQuery (children 1)
       ExpressionList (children 1)
        SelectQuery (children 2)
         ExpressionList (children 1)
          Asterisk
         TablesInSelectQuery (children 1)
          TablesInSelectQueryElement (children 1)
           TableExpression (children 1)
            Function url (alias u) (children 1)
             ExpressionList (children 2)
              Literal 'http://127.0.0.1:1/'
              Literal 'CSV'
"""
    assert ast_refusal(tree).startswith("table function url() is not allowed")


def test_numbers_is_a_table_function_analysts_may_use() -> None:
    tree = SELECT_FROM_TABLE.replace("TableIdentifier cx.events", "Function numbers (children 1)\n       ExpressionList")
    assert ast_refusal(tree) is None


def test_the_file_function_outside_from_is_refused() -> None:
    tree = """SelectWithUnionQuery (children 1)
 ExpressionList (children 1)
  SelectQuery (children 1)
   ExpressionList (children 1)
    Function file (children 1)
     ExpressionList (children 1)
      Literal '/etc/passwd'
"""
    assert ast_refusal(tree) == "function file() is not allowed: it reads files or calls other services"


@pytest.mark.parametrize(
    ("tree", "got"),
    [
        ("KillQueryQuery Literal_UInt64_1 ASYNC (children 1)\n Literal UInt64_1\n", "KillQueryQuery"),
        ("InsertQuery   (children 2)\n Identifier cx\n Identifier events\n", "InsertQuery"),
        ("DropQuery cx events (children 2)\n Identifier cx\n Identifier events\n", "DropQuery"),
        ("Set\n", "Set"),
        ("BackupQuery (children 1)\n Function File (children 1)\n", "BackupQuery"),
    ],
)
def test_statements_other_than_reading_ones_are_refused_naming_the_statement(tree: str, got: str) -> None:
    assert ast_refusal(tree) == f"only reading statements (SELECT, SHOW, DESCRIBE, EXISTS, EXPLAIN) run here, got {got}"


# -- embedded chdb -------------------------------------------------------------


@pytest.fixture
def chdb_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ClickHouse]:
    """A chdb store with ``cx.events`` holding one row of shopA; the working directory is ``tmp_path/cwd``."""
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")  # where a relative INTO OUTFILE would land
    ch = connect(f"chdb://{tmp_path / 'chdb'}")
    try:
        ch.execute("CREATE DATABASE cx")
        ch.execute("CREATE TABLE cx.events (tenant String, event_id String) ENGINE = MergeTree ORDER BY event_id")
        ch.insert("cx.events", ["tenant", "event_id"], [("shopA", "e1")])
        yield ch
    finally:
        ch.close()


def _store_unchanged(ch: ClickHouse, cwd: Path) -> None:
    assert ch.execute("SHOW TABLES FROM cx") == [("events",)]
    assert ch.execute("SELECT tenant, event_id FROM cx.events") == [("shopA", "e1")]
    assert list(cwd.iterdir()) == []


# Each probe that made the old regex filter run something, and what ClickHouse says now.
PROBES = [
    ("""SELECT 1 AS "a'b"; CREATE TABLE cx.pwn1 (x UInt8) ENGINE=Memory; SELECT 'c\"""", "Multi-statements are not allowed"),
    ("""SELECT 1 AS "a'b"; DROP TABLE cx.events; SELECT 'c\"""", "Multi-statements are not allowed"),
    ("WITH 1 AS x INSERT INTO cx.events (tenant,event_id) VALUES ('shopB','pwn')", "got InsertQuery"),
    ("SELECT * FROM file('/etc/passwd','LineAsString')", "table function file() is not allowed"),
    ("SELECT file('/etc/passwd')", "function file() is not allowed"),
    ("DESCRIBE file('/etc/hostname', 'CSV')", "table function file() is not allowed"),
    ("SELECT 'x' INTO OUTFILE 'x.tsv' FORMAT TSV", "INTO OUTFILE is not allowed"),
    ("SELECT * FROM url('http://127.0.0.1:9/health', 'LineAsString')", "table function url() is not allowed"),
    ("SELECT * FROM executable('id', 'TSV', 'x String')", "table function executable() is not allowed"),
    ("SELECT 1 SETTINGS readonly=0", "Cannot modify 'readonly' setting in readonly mode"),
    ("SELECT sleepEachRow(1) FROM numbers(18) SETTINGS max_block_size=1", "Cannot modify 'max_block_size' setting"),
    ("KILL QUERY WHERE 1", "got KillQueryQuery"),
    ("SELECT aiGenerate('hi')", "function aiGenerate() is not allowed"),
]


@pytest.mark.parametrize(("sql", "why"), PROBES, ids=[p[1] for p in PROBES])
def test_each_probe_is_refused_and_changes_nothing(chdb_store: ClickHouse, sql: str, why: str) -> None:
    with pytest.raises((AnalystQueryRefused, ClickHouseError), match=why.replace("(", r"\(").replace(")", r"\)")):
        run_analyst_query(chdb_store, sql, LIMITS)
    _store_unchanged(chdb_store, Path.cwd())


def test_reading_statements_are_answered(chdb_store: ClickHouse) -> None:
    assert run_analyst_query(chdb_store, "SELECT tenant, count() AS n FROM cx.events GROUP BY tenant", LIMITS) == (
        ["tenant", "n"],
        [("shopA", 1)],
    )
    assert run_analyst_query(chdb_store, "SHOW TABLES FROM cx", LIMITS) == (["name"], [("events",)])
    assert run_analyst_query(chdb_store, "EXISTS TABLE cx.events;", LIMITS) == (["result"], [(1,)])
    assert run_analyst_query(chdb_store, "-- a comment\nSELECT sum(number) FROM numbers(4)", LIMITS)[1] == [(6,)]


def test_after_a_refused_multi_statement_the_next_query_answers_itself(chdb_store: ClickHouse) -> None:
    with pytest.raises(ClickHouseError):
        run_analyst_query(chdb_store, "SELECT 'y'; SELECT 'z'", LIMITS)
    assert run_analyst_query(chdb_store, "SELECT 41 + 1 AS n", LIMITS) == (["n"], [(42,)])


def test_an_error_after_part_of_the_output_does_not_leak_into_the_next_answer(chdb_store: ClickHouse) -> None:
    # chdb keeps a failed query's partial output on its connection and hands
    # it to that connection's next query: each analyst query has its own.
    big = QueryLimits(timeout_s=5.0, max_memory_bytes=500_000_000, max_result_rows=10_000_000)
    with pytest.raises(ClickHouseError, match="throwIf"):
        run_analyst_query(chdb_store, "SELECT number, throwIf(number = 200000) FROM numbers(1000000)", big)
    assert run_analyst_query(chdb_store, "SELECT 'next' AS s", LIMITS) == (["s"], [("next",)])
    assert chdb_store.query("SELECT 'writer' AS s") == (["s"], [("writer",)])


def test_a_query_past_the_time_limit_stops_at_the_limit(chdb_store: ClickHouse) -> None:
    start = time.monotonic()
    with pytest.raises(ClickHouseError, match="TIMEOUT_EXCEEDED"):
        run_analyst_query(chdb_store, "SELECT sleepEachRow(0.25) FROM numbers(12)", QueryLimits(timeout_s=1.0))
    assert time.monotonic() - start < 1.8


def test_memory_and_result_rows_are_limited(chdb_store: ClickHouse) -> None:
    with pytest.raises(ClickHouseError, match="MEMORY_LIMIT_EXCEEDED"):
        run_analyst_query(chdb_store, "SELECT groupArray(number) FROM numbers(100000000)", LIMITS)
    with pytest.raises(ClickHouseError, match="TOO_MANY_ROWS_OR_BYTES"):
        run_analyst_query(chdb_store, "SELECT number FROM numbers(5000)", LIMITS)


def test_inserts_go_on_while_a_slow_analyst_query_runs(chdb_store: ClickHouse) -> None:
    slow = QueryLimits(timeout_s=5.0)
    outcome: list[BaseException | None] = []

    def analyst() -> None:  # 10 rows x 0.25 s: 2.5 s
        try:
            run_analyst_query(chdb_store, "SELECT sleepEachRow(0.25) FROM numbers(10)", slow)
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - the thread's result
            outcome.append(exc)

    thread = threading.Thread(target=analyst)
    thread.start()
    time.sleep(0.5)
    latencies = []
    for i in range(5):
        start = time.monotonic()
        chdb_store.insert("cx.events", ["tenant", "event_id"], [("shopA", f"during-{i}")])
        latencies.append(time.monotonic() - start)
        time.sleep(0.2)
    still_running = thread.is_alive()
    thread.join(10)
    assert still_running, "the analyst query ended before the inserts: the test proves nothing"
    assert max(latencies) < 0.5, latencies
    assert outcome == [None]
    assert chdb_store.execute("SELECT count() FROM cx.events") == [(6,)]


# -- a ClickHouse server (18.16 here) -----------------------------------------


@pytest.fixture
def server_store(request: pytest.FixtureRequest) -> Iterator[tuple[ClickHouse, str]]:
    """(the writer's connection, the analyst user's URL) on a server with ``cx.events``."""
    server = request.getfixturevalue("clickhouse_server")
    if server.kind != "local":
        pytest.skip("the analyst user comes from infra/clickhouse/users.xml, which only the local server reads")
    ch = connect(server.url)
    ch.execute("DROP DATABASE IF EXISTS cx")
    ch.execute("CREATE DATABASE cx")
    ch.execute("CREATE TABLE cx.events (tenant String, event_id String) ENGINE = MergeTree ORDER BY event_id")
    ch.insert("cx.events", ["tenant", "event_id"], [("shopA", "e1")])
    try:
        yield ch, f"clickhouse://analyst:analyst@127.0.0.1:{server.tcp_port}/cx"
    finally:
        ch.execute("DROP DATABASE IF EXISTS cx")
        ch.close()


SERVER_PROBES = [
    ("""SELECT 1 AS "a'b"; CREATE TABLE cx.pwn1 (x UInt8) ENGINE=Memory; SELECT 'c\"""", "Multi-statements are not allowed"),
    ("WITH 1 AS x INSERT INTO cx.events (tenant,event_id) VALUES ('shopB','pwn')", "Syntax error"),
    ("INSERT INTO cx.events (tenant,event_id) VALUES ('shopB','pwn')", "readonly mode"),
    ("SELECT * FROM file('/etc/passwd','TSV','line String')", "Table functions are forbidden in readonly mode"),
    ("SELECT * FROM url('http://127.0.0.1:9/', 'TSV', 'x String')", "Table functions are forbidden in readonly mode"),
    ("SELECT 1 SETTINGS readonly=0", "Cannot execute SET query in readonly mode"),
    ("CREATE TABLE cx.pwn (x UInt8) ENGINE=Memory", "readonly mode"),
]


@pytest.mark.integration
@pytest.mark.parametrize(("sql", "why"), SERVER_PROBES, ids=[p[1] for p in SERVER_PROBES])
def test_the_analyst_user_and_the_workers_read_only_path_refuse_each_probe(
    server_store: tuple[ClickHouse, str], sql: str, why: str
) -> None:
    writer, analyst_url = server_store
    analyst = connect(analyst_url)
    try:
        with pytest.raises(ClickHouseError, match=why):
            analyst.query(sql)
        with pytest.raises(ClickHouseError, match=why):
            run_analyst_query(writer, sql, LIMITS)
    finally:
        analyst.close()
    assert writer.execute("SHOW TABLES FROM cx") == [("events",)]
    assert writer.execute("SELECT tenant, event_id FROM cx.events") == [("shopA", "e1")]


@pytest.mark.integration
def test_an_error_message_cut_inside_a_character_is_an_error_and_the_next_query_answers(
    server_store: tuple[ClickHouse, str]
) -> None:
    # Found by tests/fuzz/test_fuzz_analyst_sql.py: 18.16 quotes the statement in its syntax error
    # and cuts the message at a byte count, here inside the two bytes of "é".
    writer, _ = server_store
    sql = f"0SELECT * FROM numbers(1) JOIN view(SELECT * FROM file('/tmp/{'p' * 56}/canary.txt', 'LineAsString')) ON 1 = 1000é"
    with pytest.raises(ClickHouseError, match="not valid UTF-8"):
        run_analyst_query(writer, sql, LIMITS)
    assert run_analyst_query(writer, "SELECT 'é' AS s", LIMITS) == (["s"], [("é",)])


@pytest.mark.integration
def test_the_analyst_user_reads_cx_only_within_its_profile_limits(server_store: tuple[ClickHouse, str]) -> None:
    writer, analyst_url = server_store
    analyst = connect(analyst_url)
    try:
        assert analyst.query("SELECT tenant, event_id FROM cx.events") == (["tenant", "event_id"], [("shopA", "e1")])
        with pytest.raises(ClickHouseError, match="Access denied to database default"):
            analyst.query("SELECT * FROM default.anything")
        with pytest.raises(ClickHouseError, match="Limit for result exceeded"):
            analyst.query("SELECT number FROM system.numbers LIMIT 200000")
        # INTO OUTFILE is a client-side clause: the server sends the rows back and writes nothing.
        assert analyst.query("SELECT 'x' INTO OUTFILE 'x.tsv' FORMAT TSV")[1] == [("x",)]
    finally:
        analyst.close()


@pytest.mark.integration
def test_the_analyst_user_cannot_kill_the_writers_queries(server_store: tuple[ClickHouse, str]) -> None:
    writer, analyst_url = server_store
    analyst = connect(analyst_url)
    done: list[object] = []
    thread = threading.Thread(target=lambda: done.append(writer.execute("SELECT sleep(2)")))
    thread.start()
    try:
        time.sleep(0.5)
        with pytest.raises(ClickHouseError, match="Readonly user analyst attempts to kill query created by default"):
            analyst.execute("KILL QUERY WHERE 1 SYNC")
    finally:
        thread.join(10)
        analyst.close()
    assert done == [[(0,)]]


@pytest.mark.integration
def test_on_a_server_inserts_go_on_while_a_slow_analyst_query_runs(server_store: tuple[ClickHouse, str]) -> None:
    writer, _ = server_store
    outcome: list[object] = []
    thread = threading.Thread(
        target=lambda: outcome.append(run_analyst_query(writer, "SELECT sleep(2)", QueryLimits(timeout_s=3.0)))
    )
    thread.start()
    time.sleep(0.5)
    latencies = []
    for i in range(4):
        start = time.monotonic()
        writer.insert("cx.events", ["tenant", "event_id"], [("shopA", f"during-{i}")])
        latencies.append(time.monotonic() - start)
        time.sleep(0.2)
    still_running = thread.is_alive()
    thread.join(10)
    assert still_running, "the analyst query ended before the inserts: the test proves nothing"
    assert max(latencies) < 0.5, latencies
    assert outcome == [(["sleep(2)"], [(0,)])]
