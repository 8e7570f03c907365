"""Cluster mode's rendering of the single-node DDL (sinks/cluster.py), and the layout checks of migrate."""

from __future__ import annotations

from pathlib import Path

import pytest

from sinks.client import connect
from sinks.cluster import ClusterDDL, ClusterDDLError
from sinks.migrate import MigrationError, load_migrations, migrate

DDL = ClusterDDL("main")
DISTRIBUTED_EVENTS = (
    "CREATE TABLE cx.events (tenant String, event_id String) "
    "ENGINE = Distributed(main, cx, events_local, cityHash64(tenant, event_id))"
)


def no_lookup(table: str) -> str | None:
    raise AssertionError(f"no lookup expected, asked for {table}")


def test_create_table_becomes_replicated_local_table_and_distributed_table_of_the_same_name() -> None:
    statement = """-- leading comment
CREATE TABLE IF NOT EXISTS cx.tickets
(
    tenant String,
    ticket_id String,
    version UInt32,
    opened_at DateTime('UTC')
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(opened_at)
ORDER BY (tenant, ticket_id)"""
    local, distributed = DDL.render(statement, 3, no_lookup)
    assert local.startswith("CREATE TABLE IF NOT EXISTS cx.tickets_local ON CLUSTER main\n(\n    tenant String,")
    assert "opened_at DateTime('UTC')\n)" in local
    assert local.endswith(
        "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/cx/tickets_local/0003', '{replica}', version)"
        "\nPARTITION BY toYYYYMM(opened_at)\nORDER BY (tenant, ticket_id)"
    )
    assert distributed == (
        "CREATE TABLE IF NOT EXISTS cx.tickets ON CLUSTER main AS cx.tickets_local "
        "ENGINE = Distributed(main, cx, tickets_local, cityHash64(tenant, ticket_id))"
    )


def test_engine_without_arguments_gets_only_path_and_replica() -> None:
    local, _ = DDL.render("CREATE TABLE cx.t (k String) ENGINE = ReplacingMergeTree() ORDER BY k", 12, no_lookup)
    assert local == (
        "CREATE TABLE cx.t_local ON CLUSTER main (k String) "
        "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/cx/t_local/0012', '{replica}') ORDER BY k"
    )


def test_views_and_database_run_on_cluster_and_keep_reading_the_plain_names() -> None:
    assert DDL.render("CREATE DATABASE IF NOT EXISTS cx", 0, no_lookup) == ["CREATE DATABASE IF NOT EXISTS cx ON CLUSTER main"]
    view = "CREATE VIEW IF NOT EXISTS cx.daily AS\nSELECT tenant, count() AS n FROM cx.events FINAL GROUP BY tenant"
    assert DDL.render(view, 1, no_lookup) == [
        "CREATE VIEW IF NOT EXISTS cx.daily ON CLUSTER main AS\nSELECT tenant, count() AS n FROM cx.events FINAL GROUP BY tenant"
    ]


def test_drop_removes_the_distributed_table_then_the_local_one() -> None:
    assert DDL.render("DROP TABLE IF EXISTS cx.offers_daily", 5, no_lookup) == [
        "DROP TABLE IF EXISTS cx.offers_daily ON CLUSTER main",
        "DROP TABLE IF EXISTS cx.offers_daily_local ON CLUSTER main",
    ]


def test_alter_changes_the_local_table_and_recreates_the_distributed_one_with_its_sharding_key() -> None:
    seen = []

    def lookup(table: str) -> str:
        seen.append(table)
        return DISTRIBUTED_EVENTS

    assert DDL.render("ALTER TABLE cx.events ADD COLUMN context String DEFAULT '{}'", 7, lookup) == [
        "ALTER TABLE cx.events_local ON CLUSTER main ADD COLUMN context String DEFAULT '{}'",
        "DROP TABLE IF EXISTS cx.events ON CLUSTER main",
        "CREATE TABLE IF NOT EXISTS cx.events ON CLUSTER main AS cx.events_local "
        "ENGINE = Distributed(main, cx, events_local, cityHash64(tenant, event_id))",
    ]
    assert seen == ["cx.events"]


def test_rename_moves_local_tables_and_gives_each_new_name_a_distributed_table_over_its_rows() -> None:
    shown = {
        "cx.events": DISTRIBUTED_EVENTS,
        # as a current server shows it: quoted names
        "cx.events_0008": "CREATE TABLE cx.events_0008 (x String) "
        "ENGINE = Distributed('main', 'cx', 'events_0008_local', cityHash64(tenant, event_id))",
    }
    rendered = DDL.render("RENAME TABLE cx.events TO cx.events_0007, cx.events_0008 TO cx.events", 8, shown.get)
    assert rendered == [
        "RENAME TABLE cx.events_local TO cx.events_0007_local, cx.events_0008_local TO cx.events_local ON CLUSTER main",
        "DROP TABLE IF EXISTS cx.events ON CLUSTER main",
        "DROP TABLE IF EXISTS cx.events_0007 ON CLUSTER main",
        "DROP TABLE IF EXISTS cx.events_0008 ON CLUSTER main",
        "CREATE TABLE IF NOT EXISTS cx.events_0007 ON CLUSTER main AS cx.events_0007_local "
        "ENGINE = Distributed(main, cx, events_0007_local, cityHash64(tenant, event_id))",
        "CREATE TABLE IF NOT EXISTS cx.events ON CLUSTER main AS cx.events_local "
        "ENGINE = Distributed('main', 'cx', events_local, cityHash64(tenant, event_id))",
    ]


def test_insert_select_runs_once_as_written_after_syncing_the_replicas_it_names() -> None:
    statement = "INSERT INTO cx.events_0008 (tenant) SELECT tenant FROM cx.events WHERE tenant IN (SELECT tenant FROM cx.kpi_daily)"
    tables = {"cx.events_local": "CREATE TABLE ...", "cx.events_0008_local": "CREATE TABLE ..."}
    assert DDL.render(statement, 8, tables.get) == [
        "SYSTEM SYNC REPLICA cx.events_0008_local",
        "SYSTEM SYNC REPLICA cx.events_local",
        statement,
    ]


@pytest.mark.parametrize(
    "statement, reason",
    [
        ("CREATE TABLE cx.buffer (k String) ENGINE = Log", "Log has no replicated form"),
        ("CREATE TABLE cx.t (k String) ENGINE = MergeTree() PARTITION BY k", "no ORDER BY"),
        ("CREATE MATERIALIZED VIEW cx.mv ENGINE = MergeTree() ORDER BY k AS SELECT k FROM cx.t", "materialized"),
        ("CREATE TABLE cx.copy AS cx.events", "cannot render"),
        ("RENAME TABLE cx.a TO other.b", "expected cx.a TO cx.b"),
    ],
)
def test_statement_without_a_cluster_form_is_refused(statement: str, reason: str) -> None:
    with pytest.raises(ClusterDDLError):
        DDL.render(statement, 9, lambda table: DISTRIBUTED_EVENTS)


def test_alter_of_a_table_that_is_not_distributed_is_refused() -> None:
    with pytest.raises(ClusterDDLError, match="not a Distributed table"):
        DDL.render("ALTER TABLE cx.events ADD COLUMN c String", 7, lambda table: None)
    plain = {"cx.events": "CREATE TABLE cx.events (k String) ENGINE = ReplacingMergeTree ORDER BY k"}
    with pytest.raises(ClusterDDLError, match="not a Distributed table"):
        DDL.render("ALTER TABLE cx.events ADD COLUMN c String", 7, plain.get)


def test_alter_run_again_after_stopping_between_drop_and_create_derives_the_key_from_the_local_table() -> None:
    shown = {
        "cx.events_local": "CREATE TABLE cx.events_local (tenant String, event_id String) ENGINE = "
        "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/cx/events_local/0001', '{replica}') "
        "PARTITION BY tuple() ORDER BY (tenant, event_id) SETTINGS index_granularity = 8192"
    }
    assert DDL.render("ALTER TABLE cx.events ADD COLUMN c String", 7, shown.get)[-1] == (
        "CREATE TABLE IF NOT EXISTS cx.events ON CLUSTER main AS cx.events_local "
        "ENGINE = Distributed(main, cx, events_local, cityHash64(tenant, event_id))"
    )


def test_every_shipped_migration_renders_for_a_cluster() -> None:
    for migration in load_migrations():
        if migration.single_server:
            continue  # recorded without running on a cluster (the next test)
        for statement in migration.statements:
            for rendered in DDL.render(statement, migration.version, lambda table: DISTRIBUTED_EVENTS):
                # DDL runs on every server; a copy (and the replica syncs before it) once.
                once = rendered.upper().startswith(("INSERT", "SYSTEM SYNC REPLICA"))
                assert once or " ON CLUSTER main" in rendered, rendered


def test_only_the_id_set_migrations_are_for_one_server_alone() -> None:
    single = [m.name for m in load_migrations() if m.single_server]
    assert single == ["0015_event_id_set", "0016_drop_event_id_set_0015"]


def test_cluster_name_must_be_an_identifier() -> None:
    with pytest.raises(ValueError, match="cluster name"):
        ClusterDDL("main; DROP DATABASE cx")


def test_cluster_mode_on_a_single_node_database_is_refused(tmp_path: Path) -> None:
    ch = connect(f"chdb://{tmp_path / 'chdb'}")
    try:
        migrate(ch)
        with pytest.raises(MigrationError, match="single-node tables"):
            migrate(ch, cluster="main")
    finally:
        ch.close()
