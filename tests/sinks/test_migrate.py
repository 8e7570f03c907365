"""Versioned DDL: parsing the files, applying each once, refusing edited history."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from sinks.client import ClickHouse, ClickHouseError, connect
from sinks.migrate import DDL_DIR, MigrationError, _holds_soon, catalog_read, load_migrations, migrate, split_statements

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
        # each saw an empty schema or the other's work; neither failed
        names = [name for _, name in APPLIED]
        # each applied the files the other had not recorded yet when it looked: a suffix, maybe all or none
        assert all(r == names[len(names) - len(r) :] for r in results), results
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
    stop = time.monotonic() + 5.0
    try:
        churner.execute("CREATE DATABASE IF NOT EXISTS cx_churn")

        def churn() -> None:
            while time.monotonic() < stop:
                churner.execute("CREATE TABLE IF NOT EXISTS cx_churn.t_new (x UInt64) ENGINE = MergeTree ORDER BY x")
                churner.execute("RENAME TABLE cx_churn.t_new TO cx_churn.t_old")
                churner.execute("DROP TABLE cx_churn.t_old")

        thread = threading.Thread(target=churn)
        thread.start()
        query = "SELECT count() FROM system.tables WHERE database = 'cx_churn' AND name = 'never'"
        while time.monotonic() < stop:
            try:
                reader.execute(query)
            except ClickHouseError as exc:
                assert "doesn't exist" in str(exc)
                plain_errors += 1
            assert catalog_read(reader, query) == [(0,)]
            reads += 1
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
