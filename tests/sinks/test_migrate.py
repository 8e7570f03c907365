"""Versioned DDL: parsing the files, applying each once, refusing edited history."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from sinks.client import ClickHouse, ClickHouseError, connect
import sinks.migrate
from sinks.migrate import (
    DDL_DIR,
    LOCK_TABLE,
    MigrationError,
    MigrationLock,
    _holds_soon,
    catalog_read,
    load_migrations,
    migrate,
    split_statements,
)

VIEWS_AND_TABLES = sorted(
    ["deadletter_daily", "deadletters", "events", "kpi_daily", "schema_migrations", "triggers"]
    + ["friction", "friction_daily"]  # 0002_friction
    + ["support_daily", "support_messages", "support_tickets", "surveys"]  # 0003_support
    + ["customer_scores", "customers", "offers_daily", "recoveries"]  # 0004_offers
    + ["deliveries"]  # 0009_deliveries
    + ["cart_conversions"]  # 0011_cart_conversions
    + ["event_ids"]  # 0013_event_ids
    + ["event_id_set"]  # 0015_event_id_set (one server)
)
# Every file in sinks/ddl, as (version, name): what a fresh schema records.
APPLIED = [(m.version, m.name) for m in load_migrations()]


def test_statements_split_at_semicolons_ending_a_line() -> None:
    text = (
        "-- header comment;\n"
        "CREATE TABLE a (s String DEFAULT 'x;y') ENGINE = Memory;\n"
        "\n"
        "CREATE VIEW b AS\nSELECT 1;   \n"
        "-- trailing comment only\n"
    )
    assert split_statements(text) == [
        "-- header comment;\nCREATE TABLE a (s String DEFAULT 'x;y') ENGINE = Memory",
        "CREATE VIEW b AS\nSELECT 1",
    ]


def test_shipped_migrations_are_numbered_and_use_if_not_exists_or_a_guard() -> None:
    migrations = load_migrations(DDL_DIR)
    assert [m.version for m in migrations] == sorted({m.version for m in migrations})
    assert migrations[0].name == "0001_base"
    for migration in migrations:
        if migration.done_when is not None:
            continue  # re-runs are stopped by its guard (tests/sinks/test_event_ids.py)
        for statement in migration.statements:
            code = "\n".join(line for line in statement.upper().splitlines() if not line.lstrip().startswith("--"))
            assert (
                "IF NOT EXISTS" in code
                or code.lstrip().startswith("DROP") and "IF EXISTS" in code
                or " ADD COLUMN " in code  # 18.16 has no ADD COLUMN IF NOT EXISTS: "already exists" counts as done
            ), statement[:80]


def test_two_files_with_one_version_are_refused(tmp_path: Path) -> None:
    (tmp_path / "0001_a.sql").write_text("SELECT 1;\n")
    (tmp_path / "0001_b.sql").write_text("SELECT 2;\n")
    with pytest.raises(MigrationError, match="version 1"):
        load_migrations(tmp_path)


def test_badly_named_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "views.sql").write_text("SELECT 1;\n")
    with pytest.raises(MigrationError, match="NNNN_name.sql"):
        load_migrations(tmp_path)


def test_migrate_is_idempotent(ch_backend: ClickHouse) -> None:
    # ch_backend already migrated once.
    assert migrate(ch_backend) == []
    assert migrate(ch_backend) == []
    tables = ch_backend.execute("SELECT name FROM system.tables WHERE database = 'cx' ORDER BY name")
    assert [t[0] for t in tables] == VIEWS_AND_TABLES
    assert ch_backend.execute("SELECT version, name FROM cx.schema_migrations FINAL ORDER BY version") == APPLIED


def test_a_new_file_is_applied_once_after_the_old_ones(ch_backend: ClickHouse, tmp_path: Path) -> None:
    for path in DDL_DIR.glob("*.sql"):
        (tmp_path / path.name).write_text(path.read_text())
    (tmp_path / "0099_extra.sql").write_text(
        "-- a later migration\n"
        "CREATE TABLE IF NOT EXISTS cx.extra (k String) ENGINE = ReplacingMergeTree() ORDER BY k;\n"
    )
    assert migrate(ch_backend, tmp_path) == ["0099_extra"]
    assert migrate(ch_backend, tmp_path) == []
    assert ch_backend.execute("EXISTS TABLE cx.extra") == [(1,)]


def test_an_applied_file_that_was_edited_is_refused(ch_backend: ClickHouse, tmp_path: Path) -> None:
    for path in DDL_DIR.glob("*.sql"):
        (tmp_path / path.name).write_text(path.read_text() + "\n-- edited later\n")
    with pytest.raises(MigrationError, match="0001_base.sql changed"):
        migrate(ch_backend, tmp_path)


@pytest.mark.integration
def test_two_workers_migrating_one_server_at_once_both_succeed(clickhouse_server) -> None:  # noqa: ANN001
    first, second = connect(clickhouse_server.url), connect(clickhouse_server.url)
    try:
        first.execute("DROP DATABASE IF EXISTS cx")
        with ThreadPoolExecutor(max_workers=2) as pool:
            results = list(pool.map(migrate, [first, second]))
        # one took the migration lock and applied every file; the other waited and found nothing left
        names = [name for _, name in APPLIED]
        assert sorted(results, key=len) == [[], names], results
        assert first.execute(f"EXISTS TABLE {LOCK_TABLE}") == [(0,)]
        assert first.execute("SELECT version, name FROM cx.schema_migrations FINAL ORDER BY version") == APPLIED
        tables = first.execute("SELECT name FROM system.tables WHERE database = 'cx' ORDER BY name")
        assert [t[0] for t in tables] == VIEWS_AND_TABLES
    finally:
        first.close()
        second.close()


class _CatalogInFlux:
    """A connection whose catalog reads fail ``failures`` times with ``error`` first, as 18.16's do mid-rename."""

    def __init__(self, failures: int, error: str = "statement failed: DB::Exception: Table cx.event_ids_0013 doesn't exist..") -> None:
        self.failures, self.error, self.calls = failures, error, 0

    def execute(self, query: str) -> list[tuple]:
        self.calls += 1
        if self.calls <= self.failures:
            raise ClickHouseError(self.error)
        return [(1,)]


def test_a_catalog_read_that_met_a_renamed_table_is_asked_again() -> None:
    ch = _CatalogInFlux(failures=2)
    assert catalog_read(ch, "SELECT count() FROM system.tables WHERE name = 'event_ids'") == [(1,)]  # type: ignore[arg-type]
    assert ch.calls == 3


def test_a_catalog_read_fails_at_once_on_any_other_error() -> None:
    ch = _CatalogInFlux(failures=1, error="Code: 516. Authentication failed")
    with pytest.raises(ClickHouseError, match="Authentication failed"):
        catalog_read(ch, "SELECT 1")  # type: ignore[arg-type]
    assert ch.calls == 1


def test_a_catalog_read_gives_up_after_its_attempts() -> None:
    ch = _CatalogInFlux(failures=5)
    with pytest.raises(ClickHouseError, match="doesn't exist"):
        catalog_read(ch, "SELECT 1", attempts=3)  # type: ignore[arg-type]
    assert ch.calls == 3


@pytest.mark.integration
def test_catalog_reads_hold_while_another_connection_renames_and_drops_tables(clickhouse_server) -> None:  # noqa: ANN001
    # Seen in the concurrent-migration test above: a guard query failed with
    # "Table cx.event_ids_0013 doesn't exist" while the other worker renamed it.
    churner, reader = connect(clickhouse_server.url), connect(clickhouse_server.url)
    plain_errors, reads = 0, 0
    # 18.16 shows the race within a few seconds on an idle machine; under the suite's load it can take
    # longer, so the reader goes on (at most 60 s) until it has seen it there.
    started = time.monotonic()
    race_expected = clickhouse_server.kind == "local"
    done = threading.Event()
    try:
        churner.execute("CREATE DATABASE IF NOT EXISTS cx_churn")

        def churn() -> None:
            while not done.is_set():
                churner.execute("CREATE TABLE IF NOT EXISTS cx_churn.t_new (x UInt64) ENGINE = MergeTree ORDER BY x")
                churner.execute("RENAME TABLE cx_churn.t_new TO cx_churn.t_old")
                churner.execute("DROP TABLE cx_churn.t_old")

        thread = threading.Thread(target=churn)
        thread.start()
        query = "SELECT count() FROM system.tables WHERE database = 'cx_churn' AND name = 'never'"
        try:
            while (elapsed := time.monotonic() - started) < 5.0 or (race_expected and not plain_errors and elapsed < 60.0):
                try:
                    reader.execute(query)
                except ClickHouseError as exc:
                    assert "doesn't exist" in str(exc)
                    plain_errors += 1
                assert catalog_read(reader, query) == [(0,)]
                reads += 1
        finally:
            done.set()
            thread.join()
    finally:
        churner.execute("DROP DATABASE IF EXISTS cx_churn")
        churner.close()
        reader.close()
    assert reads > 100
    if clickhouse_server.kind == "local":  # Debian's 18.16: the race is real there, so the retry was exercised
        assert plain_errors > 0


class _GuardLater:
    """A guard query that holds from its ``holds_from``-th asking on (another worker finishing the swap)."""

    def __init__(self, holds_from: int) -> None:
        self.holds_from, self.calls = holds_from, 0

    def execute(self, query: str) -> list[tuple]:
        self.calls += 1
        return [(1 if self.calls >= self.holds_from else 0,)]


def test_after_a_failed_statement_the_guard_is_asked_again_until_the_other_worker_finishes() -> None:
    ch = _GuardLater(holds_from=3)
    assert _holds_soon(ch, "SELECT 1", wait_s=2.0)  # type: ignore[arg-type]
    assert ch.calls == 3


def test_a_guard_that_never_holds_fails_the_migration_after_its_wait() -> None:
    ch = _GuardLater(holds_from=10**9)
    started = time.monotonic()
    assert not _holds_soon(ch, "SELECT 1", wait_s=0.2)  # type: ignore[arg-type]
    assert 0.2 <= time.monotonic() - started < 1.0
    assert ch.calls >= 2


def _migrating_in_a_thread(url: str) -> tuple[threading.Thread, dict]:
    out: dict = {}

    def run() -> None:
        ch = connect(url)
        try:
            out["applied"] = migrate(ch)
        except Exception as exc:  # noqa: BLE001 - handed to the test
            out["error"] = exc
        finally:
            ch.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def _empty_cx(url: str) -> ClickHouse:
    ch = connect(url)
    ch.execute("DROP DATABASE IF EXISTS cx")
    ch.execute("CREATE DATABASE cx")
    return ch


@pytest.mark.integration
def test_a_worker_applies_nothing_while_another_holds_the_migration_lock(clickhouse_server) -> None:  # noqa: ANN001
    # Two workers copying and renaming cx.events at once deadlock ClickHouse 18.16 for good
    # (INSERT ... SELECT against RENAME): the second must not run a statement until the first is done.
    holder_ch = _empty_cx(clickhouse_server.url)
    try:
        lock = MigrationLock(holder_ch, beat_s=0.1)
        lock.acquire()
        thread, out = _migrating_in_a_thread(clickhouse_server.url)
        time.sleep(2.0)
        assert thread.is_alive()
        assert holder_ch.execute("EXISTS TABLE cx.events") == [(0,)]
        assert holder_ch.execute("SELECT count() FROM cx.schema_migrations") == [(0,)]
        lock.release()
        thread.join(120)
        assert not thread.is_alive()
        assert out.get("applied") == [name for _, name in APPLIED], out
        assert holder_ch.execute(f"EXISTS TABLE {LOCK_TABLE}") == [(0,)]
    finally:
        holder_ch.close()


@pytest.mark.integration
def test_a_lock_whose_holder_stopped_beating_is_taken_over(
    clickhouse_server, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture  # noqa: ANN001
) -> None:
    # A worker killed while it held the lock: its table stays, its heartbeat rows stop.
    ch = _empty_cx(clickhouse_server.url)
    try:
        ch.execute(f"CREATE TABLE {LOCK_TABLE} (holder String, beat UInt64) ENGINE = Memory")
        ch.insert(LOCK_TABLE, ["holder", "beat"], [("host:4242:dead", 0)])
        monkeypatch.setattr(sinks.migrate, "LOCK_STALE_S", 1.0)
        caplog.set_level(logging.INFO, logger="sinks.migrate")
        started = time.monotonic()
        assert migrate(ch) == [name for _, name in APPLIED]
        assert time.monotonic() - started >= 1.0
        assert "took over the migration lock of host:4242:dead: no heartbeat for 1 s" in caplog.text
        assert ch.execute("SELECT count() FROM system.tables WHERE database = 'cx' AND name LIKE 'migration_lock%'") == [(0,)]
    finally:
        ch.close()


@pytest.mark.integration
def test_a_lock_whose_holder_beats_is_waited_for_past_the_stale_time(
    clickhouse_server, monkeypatch: pytest.MonkeyPatch  # noqa: ANN001
) -> None:
    # A long copy keeps the lock: its heartbeat comes from a connection of its own.
    holder_ch = _empty_cx(clickhouse_server.url)
    try:
        monkeypatch.setattr(sinks.migrate, "LOCK_STALE_S", 0.6)
        lock = MigrationLock(holder_ch, beat_s=0.1)
        lock.acquire()
        thread, out = _migrating_in_a_thread(clickhouse_server.url)
        time.sleep(3.0)  # five times the stale time
        assert thread.is_alive(), out
        assert holder_ch.execute("SELECT any(holder), count() >= 20 FROM cx.migration_lock") == [(lock.holder, 1)]
        lock.release()
        thread.join(120)
        assert out.get("applied") == [name for _, name in APPLIED], out
    finally:
        holder_ch.close()


@pytest.mark.integration
def test_an_up_to_date_database_is_not_held_up_by_a_left_lock(clickhouse_server, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    # Every restart of every worker migrates: with nothing to apply it takes no lock and waits for none.
    ch = _empty_cx(clickhouse_server.url)
    try:
        assert migrate(ch) == [name for _, name in APPLIED]
        ch.execute(f"CREATE TABLE {LOCK_TABLE} (holder String, beat UInt64) ENGINE = Memory")
        monkeypatch.setattr(sinks.migrate, "LOCK_STALE_S", 3600.0)
        thread, out = _migrating_in_a_thread(clickhouse_server.url)
        thread.join(30)
        assert not thread.is_alive()
        assert out.get("applied") == [], out
    finally:
        ch.execute(f"DROP TABLE IF EXISTS {LOCK_TABLE}")
        ch.close()


def test_the_embedded_store_migrates_without_a_lock(tmp_path: Path) -> None:
    ch = connect(f"chdb://{tmp_path / 'chdb'}")
    try:
        ch.execute("CREATE DATABASE cx")
        ch.execute(f"CREATE TABLE {LOCK_TABLE} (holder String, beat UInt64) ENGINE = Memory")  # never looked at
        assert migrate(ch) == [name for _, name in APPLIED]
    finally:
        ch.close()


class _LockRace:
    """A server where the lock exists at the first CREATE and is being dropped when it is read."""

    def __init__(self) -> None:
        self.statements: list[str] = []
        self.inserted: list[tuple] = []

    def execute(self, query: str) -> list[tuple]:
        self.statements.append(query.split(" (")[0])
        creates = sum(s.startswith("CREATE TABLE") for s in self.statements)
        if query.startswith("CREATE TABLE") and creates == 1:
            raise ClickHouseError("statement failed: Code: 57, e.displayText() = DB::Exception: Table cx.migration_lock already exists.")
        if query.startswith("SELECT any(holder)"):
            raise ClickHouseError("statement failed: Code: 218, e.displayText() = DB::Exception: Table is dropped")
        return []

    def insert(self, table: str, columns: list[str], rows: list[tuple]) -> None:
        self.inserted += rows


def test_a_lock_being_dropped_while_it_is_read_is_created_again() -> None:
    ch = _LockRace()
    lock = MigrationLock(ch, beat_s=60)  # type: ignore[arg-type]
    lock.acquire()
    lock._stop.set()
    assert ch.statements == [f"CREATE TABLE {LOCK_TABLE}", "SELECT any(holder), count() FROM cx.migration_lock", f"CREATE TABLE {LOCK_TABLE}"]
    assert ch.inserted == [(lock.holder, 0)]
