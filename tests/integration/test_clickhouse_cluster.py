"""Cluster mode against a real cluster: ZooKeeper and two clickhouse-server 18.16 replicas of one shard.

The migrations run ON CLUSTER through replica 1 and every table and view
exists on both; then a running pipeline writes through replica 1 (with
replica 2 as the driver's alternative host) while replica 1 is stopped and
started again mid-stream, and at the end each replica, read on its own,
holds exactly the reference numbers.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from pipeline.runner import Pipeline
from pipeline.settings import Settings
from sinks.client import ClickHouse, connect
from sinks.migrate import DDL_DIR, migrate
from tests.chaos.common import day_of_traffic, post, wait_caught_up
from tests.integration.helpers import wait_until

pytestmark = pytest.mark.integration

CLUSTER = "cx_cluster"
TABLES = (
    "schema_migrations", "events", "triggers", "deadletters", "friction", "support_tickets",
    "support_messages", "surveys", "recoveries", "customer_scores",
)  # fmt: skip
VIEWS = ("kpi_daily", "deadletter_daily", "friction_daily", "support_daily", "offers_daily", "customers")

# A later migration of the kind the project writes: a table, rows, a column
# added, the table re-created with another engine and renamed into place,
# a view over it; the next one drops the old table.
PROBE_SWAP = """
CREATE TABLE IF NOT EXISTS cx.probe
(
    tenant String,
    probe_id String,
    day Date,
    n UInt32
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(day)
ORDER BY (tenant, probe_id);

INSERT INTO cx.probe (tenant, probe_id, day, n)
SELECT 't', 'a', toDate('2024-01-01'), toUInt32(1)
UNION ALL
SELECT 't', 'b', toDate('2024-01-01'), toUInt32(2);

ALTER TABLE cx.probe ADD COLUMN note String DEFAULT 'x';

CREATE TABLE IF NOT EXISTS cx.probe_v2
(
    tenant String,
    probe_id String,
    day Date,
    n UInt32,
    note String,
    ver UInt64
)
ENGINE = ReplacingMergeTree(ver)
PARTITION BY tuple()
ORDER BY (tenant, probe_id);

INSERT INTO cx.probe_v2 (tenant, probe_id, day, n, note, ver) SELECT tenant, probe_id, day, n, note, toUInt64(n) FROM cx.probe;

RENAME TABLE cx.probe TO cx.probe_old, cx.probe_v2 TO cx.probe;

-- A comment before a statement is kept out of the way.
CREATE VIEW IF NOT EXISTS cx.probe_total AS
SELECT tenant, sum(n) AS n, max(ver) AS ver, any(note) AS note FROM cx.probe FINAL GROUP BY tenant;
"""
PROBE_DROP = "DROP TABLE IF EXISTS cx.probe_old;\n"


def _objects(ch: ClickHouse) -> dict[str, str]:
    return dict(ch.execute("SELECT name, engine FROM system.tables WHERE database = 'cx'"))


def test_migrations_on_cluster_create_every_table_and_view_on_both_replicas(clickhouse_cluster, tmp_path: Path) -> None:
    ddl = tmp_path / "ddl"
    shutil.copytree(DDL_DIR, ddl)
    (ddl / "0098_probe_swap.sql").write_text(PROBE_SWAP)
    (ddl / "0099_probe_drop.sql").write_text(PROBE_DROP)
    first, second = (connect(url) for url in clickhouse_cluster.urls)
    try:
        started = time.monotonic()
        applied = migrate(first, ddl, cluster=CLUSTER)
        took = time.monotonic() - started
        assert applied[-2:] == ["0098_probe_swap", "0099_probe_drop"]
        # Through the other replica: nothing left to apply (its versions table is synced first).
        assert migrate(second, ddl, cluster=CLUSTER) == []

        for ch in (first, second):
            objects = _objects(ch)
            for table in (*TABLES, "probe"):
                assert objects[table] == "Distributed", table
                assert objects[f"{table}_local"].startswith("Replicated"), table
            for view in (*VIEWS, "probe_total"):
                assert objects[view] == "View", view
            for gone in ("probe_old", "probe_old_local", "probe_v2", "probe_v2_local"):
                assert gone not in objects
            ch.execute("SYSTEM SYNC REPLICA cx.probe_local")
            assert ch.execute("SELECT tenant, n, ver, note FROM cx.probe_total") == [("t", 3, 2, "x")]
            assert ch.execute("SELECT count() FROM cx.probe_local") == [(2,)]
        engine = first.execute("SHOW CREATE TABLE cx.events_local")[0][0]
        assert "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/cx/events_local/0001', '{replica}')" in engine
        assert first.execute("SHOW CREATE TABLE cx.probe_local")[0][0].count("/cx/probe_v2_local/0098") == 1
        print(f"\ncluster migrations: {len(applied)} applied ON CLUSTER in {took:.1f} s")
    finally:
        first.close()
        second.close()
