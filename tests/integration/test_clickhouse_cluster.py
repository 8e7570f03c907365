"""Cluster mode against a real cluster: ZooKeeper and two clickhouse-server 18.16 replicas of one shard.

The migrations run ON CLUSTER through replica 1 and every table and view
exists on both replicas. A running pipeline writes through replica 1 (with
replica 2 as the driver's alternative host) while replica 1, then replica
2, is stopped and started again mid-stream; at the end each replica, read
on its own, holds exactly the reference numbers.
"""

from __future__ import annotations

import shutil
from contextlib import closing
from datetime import date
import time
from pathlib import Path

import pytest

from infra.clickhouse_cluster import ClickHouseCluster, zookeeper_command
from infra.clickhouse_server import server_command
from pipeline.analyst_sql import QueryLimits, run_analyst_query
from pipeline.supervisor.runner import Pipeline
from pipeline.settings import Settings
from sinks.client import ClickHouse, connect
from sinks.cluster import ClusterDDL
from sinks.migrate import DDL_DIR, MigrationError, migrate
from sinks.sink import stored_fingerprints
from tests.chaos.common import day_of_traffic, post, wait_caught_up
from tests.integration.helpers import wait_until

pytestmark = pytest.mark.integration

CLUSTER = "cx_cluster"
SHARDED = "cx_shards"
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
        # A worker started without the cluster setting stops before creating anything.
        with pytest.raises(MigrationError, match="CX_CLICKHOUSE_CLUSTER"):
            migrate(second, ddl)
        # A worker (re)starting with nothing to apply does not wait for a replica that is down.
        clickhouse_cluster.replica(1).stop()
        try:
            restarted = time.monotonic()
            assert migrate(first, ddl, cluster=CLUSTER) == []
            restart_s = time.monotonic() - restarted
        finally:
            clickhouse_cluster.replica(1).start()
        assert restart_s < 10, restart_s

        for ch in (first, second):
            objects = _objects(ch)
            for table in (*TABLES, "probe"):
                assert objects[table] == "Distributed", table
                assert objects[f"{table}_local"].startswith("Replicated"), table
            for view in (*VIEWS, "probe_total"):
                assert objects[view] == "View", view
            for gone in ("probe_old", "probe_old_local", "probe_v2", "probe_v2_local"):
                assert gone not in objects
            # The id set is for one server (-- cx:single-server): recorded, never created on a cluster.
            assert not [name for name in objects if name.startswith("event_id_set")]
            recorded = ch.execute("SELECT name FROM cx.schema_migrations FINAL WHERE version IN (15, 16) ORDER BY version")
            assert recorded == [("0015_event_id_set",), ("0016_drop_event_id_set_0015",)]
            ch.execute("SYSTEM SYNC REPLICA cx.probe_local")
            assert ch.execute("SELECT tenant, n, ver, note FROM cx.probe_total") == [("t", 3, 2, "x")]
            assert ch.execute("SELECT count() FROM cx.probe_local") == [(2,)]
        engine = first.execute("SHOW CREATE TABLE cx.events_local")[0][0]
        # cx.events is 0008's copy renamed into place (ReplacingMergeTree(ver)); its ZooKeeper path keeps
        # the name it was created under.
        assert "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/cx/events_0008_local/0008', '{replica}', ver)" in engine
        assert first.execute("SHOW CREATE TABLE cx.probe_local")[0][0].count("/cx/probe_v2_local/0098") == 1
        print(
            f"\ncluster migrations: {len(applied)} applied ON CLUSTER in {took:.1f} s; "
            f"up to date with replica 2 down in {restart_s:.2f} s"
        )
    finally:
        first.close()
        second.close()


def _send(pipeline: Pipeline, messages: list[dict]) -> None:
    for i in range(0, len(messages), 50):
        post(pipeline, messages[i : i + 50])


def _replica_numbers(ch: ClickHouse, tenant: str) -> dict:
    """What one replica holds for ``tenant``, read from its own copies (the ``_local`` tables) and its views."""
    t = {"t": tenant}
    triggers: dict[str, set[str]] = {}
    for kind, trigger_id in ch.query("SELECT kind, trigger_id FROM cx.triggers_local FINAL WHERE tenant = %(t)s", t)[1]:
        triggers.setdefault(kind, set()).add(trigger_id)
    return {
        "events": ch.query("SELECT count(), uniqExact(event_id) FROM cx.events_local FINAL WHERE tenant = %(t)s", t)[1][0],
        "rows": ch.query("SELECT count() FROM cx.events_local WHERE tenant = %(t)s", t)[1][0][0],
        "deadletters": ch.query("SELECT count() FROM cx.deadletters_local FINAL WHERE tenant = %(t)s", t)[1][0][0],
        "triggers": triggers,
        # The views read the Distributed tables; on a replica of the one shard they read its own copy.
        "kpi_daily": ch.query("SELECT * FROM cx.kpi_daily WHERE tenant = %(t)s ORDER BY day", t)[1],
    }


def _local_events(server, tenant: str) -> int:
    with closing(connect(server.url)) as ch:
        return ch.query("SELECT count() FROM cx.events_local FINAL WHERE tenant = %(t)s", {"t": tenant})[1][0][0]


def test_pipeline_with_each_replica_stopped_in_turn_mid_stream_is_exact_on_both_replicas(
    clickhouse_cluster, kafka: str, fresh_settings: Settings
) -> None:
    first, second = clickhouse_cluster.replicas
    tenant = f"shop-{fresh_settings.worker_group}"
    settings = fresh_settings.model_copy(
        update={
            "kafka_bootstrap": kafka,
            # Replica 1, and replica 2 as the driver's alternative while replica 1 is away.
            "clickhouse_url": f"{first.url}?alt_hosts=127.0.0.1:{second.tcp_port}",
            "clickhouse_cluster": CLUSTER,
            "collector_port": 0,
            "worker_web_port": 0,
            "write_keys": f"wk_chaos={tenant}",
            "worker_session_timeout_s": 3.0,
            "batch_max_records": 200,
            "sink_max_interval_ms": 200,
        }
    )
    started = time.monotonic()
    with Pipeline(settings) as pipeline:
        pipeline.tenant = tenant
        day = day_of_traffic(pipeline, seed=53, visitors=60)
        # In order, in quarters (the reference run sees them in this order).
        q = len(day.messages) // 4
        parts = [day.messages[:q], day.messages[q : 2 * q], day.messages[2 * q : 3 * q], day.messages[3 * q :]]
        stored_on: list[int] = []
        outages: list[float] = []
        _send(pipeline, parts[0])
        wait_caught_up(pipeline, "part 1 stored", {"worker": pipeline.worker_port})
        # Replica 1 (the URL's host) away: the worker reconnects to replica 2
        # and writes it; then replica 2 away while replica 1, back, catches up
        # and takes the writes again. Each replica misses writes once.
        for part, down, up in ((parts[1], first, second), (parts[2], second, first)):
            # What the replica going away holds; whatever the other one holds beyond that at
            # the end of the outage was written there while it was away.
            before = _local_events(down, tenant)
            down.stop()
            stopped = time.monotonic()
            try:
                _send(pipeline, part)
                # Offsets are committed only for stored rows: this part is on the replica that is up.
                wait_caught_up(pipeline, f"a part stored with {down.root.name} down", {"worker": pipeline.worker_port})
                stored_on.append(_local_events(up, tenant) - before)
            finally:
                down.start()
            outages.append(time.monotonic() - stopped)
            # A rolling restart waits for the returning replica to fetch what it missed before the
            # next one goes away: until then the missed rows are on the other replica only, and the
            # next outage would find them nowhere to compare against.
            wait_until(
                lambda: _local_events(down, tenant) == _local_events(up, tenant),
                timeout_s=60,
                what=f"{down.root.name} caught up with {up.root.name}",
            )
        _send(pipeline, parts[3])
        wait_caught_up(pipeline, "part 4 stored", {"worker": pipeline.worker_port})
        restarts = pipeline.restarts

    ref, exp = day.reference, day.expected
    want_events = (ref.events, ref.events)
    replicas = [connect(url) for url in clickhouse_cluster.urls]
    try:
        caught_up = time.monotonic()
        for ch in replicas:
            wait_until(
                lambda: tuple(_replica_numbers(ch, tenant)["events"]) == want_events,
                timeout_s=60,
                what=f"{ref.events} events on {ch!r}",
            )
        catch_up_s = time.monotonic() - caught_up
        numbers = [_replica_numbers(ch, tenant) for ch in replicas]
    finally:
        for ch in replicas:
            ch.close()

    # Both outages saw writes go to the other replica.
    assert min(stored_on) > 0, stored_on
    for got in numbers:
        assert tuple(got["events"]) == want_events
        assert got["deadletters"] == ref.deadletters
        assert got["triggers"] == ref.trigger_ids
        kpi = got["kpi_daily"]  # tenant, day, sessions, carts, orders, ...
        assert [int(sum(row[3] for row in kpi)), int(sum(row[4] for row in kpi))] == [exp.carts, exp.orders]
    assert numbers[0]["kpi_daily"] == numbers[1]["kpi_daily"]
    print(
        f"\ncluster 1 shard x 2 replicas: {len(day.messages)} messages, {ref.events} events, "
        f"{sum(map(len, ref.trigger_ids.values()))} triggers, kpi_daily {exp.carts} carts {exp.orders} orders "
        f"exact on both replicas; replica 1 down {outages[0]:.1f} s "
        f"({stored_on[0]} events written to replica 2 meanwhile), then replica 2 down {outages[1]:.1f} s "
        f"({stored_on[1]} to replica 1); both complete {catch_up_s:.1f} s after the pipeline caught up; "
        f"stored rows before merges {numbers[0]['rows']} / {numbers[1]['rows']}; worker restarts {restarts}; "
        f"run {time.monotonic() - started:.0f} s"
    )


def test_replicated_dedup_rules_hold_through_either_replica(clickhouse_cluster) -> None:
    """The rules docs/clickhouse.md states: identical blocks dropped, other repeats collapsed by FINAL, A-B-A keeps B."""
    layout = ClusterDDL(CLUSTER)
    first, second = (connect(url) for url in clickhouse_cluster.urls)
    d = date(2024, 5, 1)
    try:
        for sql in [
            *layout.render("CREATE DATABASE IF NOT EXISTS cx", 0, lambda t: None),
            *layout.render(
                "CREATE TABLE IF NOT EXISTS cx.dedup_probe (k String, v String, day Date) "
                "ENGINE = ReplacingMergeTree() PARTITION BY toYYYYMM(day) ORDER BY k",
                1,
                lambda t: None,
            ),
        ]:
            first.execute(sql)
        columns = ["k", "v", "day"]

        def both(sql: str) -> list[list[tuple]]:
            out = []
            for ch in (first, second):
                ch.execute("SYSTEM SYNC REPLICA cx.dedup_probe_local")
                out.append(ch.execute(sql))
            return out

        first.insert("cx.dedup_probe", columns, [("a", "1", d), ("b", "1", d)])
        second.insert("cx.dedup_probe", columns, [("a", "1", d), ("b", "1", d)])  # a retried batch: identical block
        assert both("SELECT count() FROM cx.dedup_probe_local") == [[(2,)], [(2,)]]

        second.insert("cx.dedup_probe", columns, [("b", "1", d), ("c", "1", d)])  # a replay batched differently
        assert both("SELECT count() FROM cx.dedup_probe_local") == [[(4,)], [(4,)]]
        assert both("SELECT k FROM cx.dedup_probe FINAL ORDER BY k") == [[("a",), ("b",), ("c",)]] * 2

        for value in ("A", "B", "A"):  # the third block is identical to the first: dropped
            first.insert("cx.dedup_probe", columns, [("x", value, d)])
        assert both("SELECT v FROM cx.dedup_probe FINAL WHERE k = 'x'") == [[("B",)], [("B",)]]
    finally:
        first.execute("DROP TABLE IF EXISTS cx.dedup_probe ON CLUSTER cx_cluster")
        first.execute("DROP TABLE IF EXISTS cx.dedup_probe_local ON CLUSTER cx_cluster")
        first.close()
        second.close()


@pytest.fixture
def two_shards():
    """ZooKeeper and two clickhouse-servers, each a shard of its own (no replicas), for one test."""
    try:
        server_command()
        zookeeper_command()
    except FileNotFoundError as exc:
        pytest.skip(f"no local ClickHouse cluster can run here: {exc}")
    with ClickHouseCluster(SHARDED, replicas=1, shards=2) as cluster:
        yield cluster


def test_id_lookup_on_two_shards_reads_each_shard_by_its_index(two_shards) -> None:  # noqa: ANN001
    """18.16 scans a shard's every row for GLOBAL IN: the cluster lookup sends the ids as a list, in chunks."""
    ch = connect(two_shards.urls[0])
    # A scan of a whole shard (about 50,000 rows) fails the query; the granules of 1,200 ids do not reach it.
    limited = connect(f"{two_shards.urls[0]}?max_rows_to_read=40000&read_overflow_mode=throw")
    try:
        migrate(ch, cluster=SHARDED)
        stored = [("shop-a", f"id-{i:06d}", i, 1) for i in range(100_000)]
        ch.insert("cx.event_ids", ["tenant", "event_id", "payload_hash", "ver"], stored)
        for url in two_shards.urls:
            with closing(connect(url)) as shard:
                shard.execute("OPTIMIZE TABLE cx.event_ids_local FINAL")
                assert 40_000 < shard.execute("SELECT count() FROM cx.event_ids_local")[0][0] < 60_000
        # neighbours in the key order: a few granules of each shard
        asked = [f"id-{i:06d}" for i in range(1_000)] + [f"id-{i:06d}-absent" for i in range(200)]
        found = stored_fingerprints(limited, {"shop-a": asked}, cluster=True)  # 1,200 ids: two queries
        assert found == {("shop-a", f"id-{i:06d}"): i for i in range(1_000)}
        with pytest.raises(Exception, match="[Ll]imit for rows"):
            limited.execute("SELECT count() FROM cx.event_ids WHERE payload_hash > 7")  # the limit does bite
    finally:
        ch.close()
        limited.close()


def test_pipeline_on_two_shards_is_exact_and_a_replay_through_the_other_shard_changes_nothing(
    two_shards, kafka: str, fresh_settings: Settings
) -> None:
    tenant = f"shop-{fresh_settings.worker_group}"
    settings = fresh_settings.model_copy(
        update={
            "kafka_bootstrap": kafka,
            "clickhouse_url": two_shards.urls[0],
            "clickhouse_cluster": SHARDED,
            "collector_port": 0,
            "worker_web_port": 0,
            "write_keys": f"wk_chaos={tenant}",
            "batch_max_records": 200,
            "sink_max_interval_ms": 200,
        }
    )
    with Pipeline(settings) as pipeline:
        pipeline.tenant = tenant
        day = day_of_traffic(pipeline, seed=59, visitors=60)
        _send(pipeline, day.messages)
        wait_caught_up(pipeline, "the day stored", {"worker": pipeline.worker_port})

    ref, exp = day.reference, day.expected
    t = {"t": tenant}
    servers = [connect(url) for url in two_shards.urls]
    try:
        per_shard = [ch.query("SELECT count() FROM cx.events_local FINAL WHERE tenant = %(t)s", t)[1][0][0] for ch in servers]
        # A replay of every stored event, written through the other shard's server in other batches.
        # Background merges would collapse the copies at a moment of their choosing and
        # make the raw row count below a race: they stay off until the numbers are read.
        for ch in servers:
            ch.execute("SYSTEM STOP MERGES cx.events_local")
        columns, rows = servers[0].query("SELECT * FROM cx.events WHERE tenant = %(t)s", t)
        for i in range(0, len(rows), 97):
            servers[1].insert("cx.events", columns, list(reversed(rows[i : i + 97])))
        numbers = []
        for ch in servers:
            triggers: dict[str, set[str]] = {}
            for kind, trigger_id in ch.query("SELECT kind, trigger_id FROM cx.triggers FINAL WHERE tenant = %(t)s", t)[1]:
                triggers.setdefault(kind, set()).add(trigger_id)
            numbers.append({
                "events": ch.query("SELECT count(), uniqExact(event_id) FROM cx.events FINAL WHERE tenant = %(t)s", t)[1][0],
                "rows": ch.query("SELECT count() FROM cx.events WHERE tenant = %(t)s", t)[1][0][0],
                "triggers": triggers,
                "kpi_daily": ch.query("SELECT * FROM cx.kpi_daily WHERE tenant = %(t)s ORDER BY day", t)[1],
                "customers": ch.query("SELECT * FROM cx.customers WHERE tenant = %(t)s ORDER BY customer_id", t)[1],
            })
        # The analyst path (cxstream query against a server): user analyst, readonly=1, limits.
        analyst = connect(two_shards.urls[1].replace("default:@", "analyst:analyst@").replace("/default", "/cx"))
        try:
            _, analyst_kpi = run_analyst_query(
                analyst, f"SELECT * FROM cx.kpi_daily WHERE tenant = '{tenant}' ORDER BY day", QueryLimits.from_settings(settings)
            )
        finally:
            analyst.close()
    finally:
        for ch in servers:
            ch.close()

    assert analyst_kpi == numbers[1]["kpi_daily"]
    assert sum(per_shard) == ref.events and min(per_shard) > 0, per_shard  # the rows are spread over both shards
    for got in numbers:
        assert tuple(got["events"]) == (ref.events, ref.events)
        assert got["rows"] == 2 * ref.events  # the replay was stored, and FINAL collapses it on the id's shard
        assert got["triggers"] == ref.trigger_ids
        kpi = got["kpi_daily"]  # tenant, day, sessions, carts, orders, ...
        assert [int(sum(row[3] for row in kpi)), int(sum(row[4] for row in kpi))] == [exp.carts, exp.orders]
    assert numbers[0]["kpi_daily"] == numbers[1]["kpi_daily"]
    assert numbers[0]["customers"] == numbers[1]["customers"]
    print(
        f"\ncluster 2 shards x 1 replica: {ref.events} events split {per_shard[0]} / {per_shard[1]}, replayed through "
        f"the other server: {numbers[0]['rows']} rows stored, {numbers[0]['events'][0]} counted; "
        f"{sum(map(len, ref.trigger_ids.values()))} triggers and kpi_daily ({exp.carts} carts, {exp.orders} orders) "
        "exact, the same from both servers"
    )
