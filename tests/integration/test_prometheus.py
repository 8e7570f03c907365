"""A real Prometheus (Debian's 2.42) scrapes a running pipeline; its query API gives the traffic's exact numbers.

The traffic: the scripted journeys of ``tests/integration/journeys.py`` (20
messages: 19 accepted, 1 ``missing_property``; 2 ``cart_abandoned`` and 1
``offer_cancelled`` trigger), one batch of 5 bad messages (3 of an unknown
type, 2 tracks with no user or anonymous id), one body that is not JSON, and
one record on the events topic that the collector did not write. Prometheus
scrapes the collector's metrics port and the worker's web port (with the
token file) every second and loads ``deploy/prometheus/alerts.yml``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
import requests
from confluent_kafka import Producer

from pipeline.supervisor.ports import free_port, stop_process, wait_for_port
from pipeline.supervisor.runner import Pipeline
from pipeline.settings import Settings
from tests.integration.helpers import embedded_settings, post_batch, scalar, wait_until
from tests.integration.journeys import day_d, journey_batches

pytestmark = pytest.mark.integration

ALERTS = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "alerts.yml"
ALERT_NAMES = {
    "CxstreamWorkerDown", "CxstreamCollectorDown", "CxstreamLagGrowing", "CxstreamDeadLettersSpike",
    "CxstreamClickHouseInsertErrors", "CxstreamNoEvents", "CxstreamRestarting",
}  # fmt: skip


def prometheus_missing() -> str | None:
    if shutil.which("prometheus") is None:
        return "prometheus is not installed (infra/setup.sh --clickhouse-server installs Debian's package)"
    return None


def write_config(path: Path, running: Pipeline) -> None:
    collector = running.collector_metrics_url.removeprefix("http://")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ALERTS)],
        "scrape_configs": [
            {"job_name": "cxstream-collector", "static_configs": [{"targets": [collector]}]},
            {
                "job_name": "cxstream-worker",
                "authorization": {"type": "Bearer", "credentials_file": str(running.settings.data_dir / "worker.token")},
                "static_configs": [{"targets": [f"{running.worker_host}:{running.worker_port}"]}],
            },
        ],
    }
    path.write_text(json.dumps(config))  # JSON is YAML


class Prom:
    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"

    def query(self, expr: str) -> dict[tuple, float]:
        """Instant query -> {sorted label items (without __name__): value}."""
        answer = requests.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10).json()
        assert answer["status"] == "success", answer
        return {
            tuple(sorted((k, v) for k, v in r["metric"].items() if k != "__name__")): float(r["value"][1])
            for r in answer["data"]["result"]
        }

    def by(self, expr: str, label: str) -> dict[str, float]:
        return {dict(labels)[label]: v for labels, v in self.query(expr).items()}


@pytest.fixture
def prometheus_bin() -> str:
    missing = prometheus_missing()
    if missing:
        pytest.skip(reason=missing)
    return "prometheus"


def test_prometheus_scrapes_the_exact_counts_of_a_known_traffic(
    prometheus_bin: str, kafka: str, fresh_settings: Settings, tmp_path: Path
) -> None:
    tenant = f"shop-{fresh_settings.worker_group}"
    settings = embedded_settings(
        fresh_settings, kafka, tmp_path, "wk_prom", allowed_lateness_ms=5 * 60_000, holdout_pct=0.0, log_format="json"
    )
    assert settings.kafka_partitions == 2  # two tick pages in the journeys
    with Pipeline(settings) as running:
        day = day_d()
        for batch in journey_batches(tenant, settings.kafka_partitions, day):
            assert post_batch(running.collector_url, "wk_prom", batch).status_code == 200
        bad = [{"type": "bogus", "anonymousId": f"x-{i}", "messageId": f"bad-{i}"} for i in range(3)]
        bad += [{"type": "track", "event": "Ping", "messageId": f"noid-{i}"} for i in range(2)]
        assert post_batch(running.collector_url, "wk_prom", bad).status_code == 200
        not_json = requests.post(f"{running.collector_url}/v1/batch", data=b"{oops", auth=("wk_prom", ""), timeout=10)
        assert not_json.status_code == 400
        producer = Producer({"bootstrap.servers": running.bootstrap})
        producer.produce(settings.topic_events, b"\xff not an EventBatch", partition=0)
        assert producer.flush(10) == 0

        wait_until(lambda: scalar(running, f"SELECT count() FROM cx.triggers FINAL WHERE tenant = '{tenant}'") == 3,
                   what="3 triggers stored")
        assert running.wait_drained(90)
        stored_sql = "SELECT reason, source, count() FROM cx.deadletters FINAL GROUP BY reason, source ORDER BY reason, source"
        wait_until(lambda: sum(r[2] for r in running.query(stored_sql)[1]) == 8, what="8 dead letters stored")
        assert [tuple(r) for r in running.query(stored_sql)[1]] == [
            ("bad_json", "collector", 1), ("bad_json", "worker", 1), ("missing_property", "collector", 1),
            ("schema_violation", "collector", 2), ("unknown_type", "collector", 3),
        ]  # fmt: skip

        port = free_port()
        config = tmp_path / "prometheus.yml"
        write_config(config, running)
        with open(tmp_path / "prometheus.log", "wb") as log:
            prom_proc = subprocess.Popen(
                [
                    prometheus_bin, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn",
                ],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            wait_for_port(port, "127.0.0.1", 60, alive=lambda: prom_proc.poll() is None)
            prom = Prom(port)
            # The port listens before the TSDB is open; the API answers once /-/ready does.
            wait_until(lambda: requests.get(f"{prom.url}/-/ready", timeout=5).status_code == 200, timeout_s=60,
                       what="Prometheus ready")
            wait_until(lambda: prom.by("up", "job") == {"cxstream-collector": 1.0, "cxstream-worker": 1.0},
                       timeout_s=60, what="both targets scraped and up")
            expected_triggers = {"cart_abandoned": 2.0, "offer_cancelled": 1.0}
            wait_until(lambda: prom.by("sum by (kind) (cxstream_triggers_total)", "kind") == expected_triggers,
                       timeout_s=30, what="the triggers in Prometheus")

            # Collector: messages by call type and outcome, for the run's tenant.
            accepted = prom.query(f'cxstream_collector_events_total{{tenant="{tenant}"}}')
            assert {(dict(k)["type"], dict(k)["status"]): v for k, v in accepted.items()} == {
                ("track", "accepted"): 12.0,  # 3 + 9, the two resent Product Added among them
                ("page", "accepted"): 5.0,  # anon-a, anon-d twice, two tick pages
                ("identify", "accepted"): 2.0,
                ("track", "dead_letter"): 3.0,  # anon-e's Product Added without price, 2 without any id
                ("other", "dead_letter"): 3.0,  # type "bogus"
            }
            assert prom.by(f'cxstream_collector_requests_total{{tenant="{tenant}"}}', "status") == {"200": 3.0, "400": 1.0}
            assert prom.by("sum by (reason) (cxstream_collector_deadletters_total)", "reason") == {
                "missing_property": 1.0, "unknown_type": 3.0, "schema_violation": 2.0, "bad_json": 1.0,
            }  # fmt: skip

            # Worker: events processed, dead letters stored by reason and source, triggers by kind and action.
            assert prom.by("sum by (type) (cxstream_worker_events_total)", "type") == {
                "track": 12.0, "page": 5.0, "identify": 2.0,
            }  # fmt: skip
            stored = prom.query("sum by (reason, source) (cxstream_worker_deadletters_total)")
            assert {(dict(k)["reason"], dict(k)["source"]): v for k, v in stored.items()} == {
                ("missing_property", "collector"): 1.0,
                ("unknown_type", "collector"): 3.0,
                ("schema_violation", "collector"): 2.0,
                ("bad_json", "collector"): 1.0,  # the body that is not JSON
                ("bad_json", "worker"): 1.0,  # the foreign record on the events topic
            }
            actions = prom.query("sum by (kind, action) (cxstream_triggers_total)")
            assert {(dict(k)["kind"], dict(k)["action"]): v for k, v in actions.items()} == {
                ("cart_abandoned", "none"): 1.0,  # A: anonymous
                ("cart_abandoned", "offer"): 1.0,  # C: consented customer, holdout 0
                ("offer_cancelled", "none"): 1.0,
            }
            assert prom.query("sum(cxstream_trigger_latency_seconds_count)") == {(): 3.0}
            records = prom.by("sum by (topic) (cxstream_worker_records_total)", "topic")
            assert records[settings.topic_deadletter] == 8.0  # one record per dead letter
            assert records[settings.topic_events] == running.records_produced()  # every record on the topic, once
            lag = prom.query("cxstream_consumer_lag")
            assert len(lag) == 8 and set(lag.values()) == {0.0}  # 2 partitions each: events, customers, dead letters, deliveries
            assert prom.query("cxstream_assigned_partitions") == {
                (("instance", f"{running.worker_host}:{running.worker_port}"), ("job", "cxstream-worker")): 2.0
            }
            assert prom.query('sum(cxstream_clickhouse_insert_errors_total)') == {}  # no series: no error
            assert prom.query("sum(cxstream_clickhouse_insert_seconds_count)")[()] >= 2  # events and dead letters
            assert prom.query("sum by (component) (cxstream_supervisor_restarts)") == {
                (("component", "collector"),): 0.0, (("component", "worker"),): 0.0,
            }  # fmt: skip

            # Worker state and flow. Visitor states: A, B, C, D, tick-0 and tick-1 (E's only message was a dead letter).
            worker = (("instance", f"{running.worker_host}:{running.worker_port}"), ("job", "cxstream-worker"))
            assert prom.query("cxstream_visitor_states") == {worker: 6.0}
            assert 6 * 100 < prom.query("cxstream_visitor_state_bytes")[worker] < 6 * 2000  # about 0.5 KB a state
            # Customer states: u-b and u-c, the two visitors who identified (docs/identity.md).
            assert prom.query("cxstream_customer_states") == {worker: 2.0}
            assert 2 * 50 < prom.query("cxstream_customer_state_bytes")[worker] < 2 * 2000
            # The watermark of both partitions: the ticks @240 (14:00 of day D) minus the 5-minute lateness.
            watermark = dt.datetime(day.year, day.month, day.day, 13, 55, tzinfo=dt.timezone.utc).timestamp()
            delays = prom.by("cxstream_watermark_delay_seconds", "partition")
            assert sorted(delays) == ["0", "1"]
            assert all(abs(d - (time.time() - watermark)) < 60 for d in delays.values()), delays
            records_taken = prom.by("sum by (topic) (cxstream_batch_records_sum)", "topic")
            assert records_taken == {settings.topic_events: running.records_produced(), settings.topic_deadletter: 8.0}
            groups = prom.by("sum by (topic) (cxstream_batch_records_count)", "topic")
            assert prom.by("sum by (topic) (cxstream_batch_seconds_count)", "topic") == groups
            assert all(n >= 1 for n in groups.values()), groups
            produced = prom.query("sum by (client, outcome) (cxstream_kafka_produce_seconds_count)")
            produced = {(dict(k)["client"], dict(k)["outcome"]): v for k, v in produced.items()}
            assert produced[("collector", "ok")] == 4.0  # the two journey requests, the bad batch, the body that is not JSON
            assert produced[("triggers", "ok")] >= 1 and produced[("changelog", "ok")] >= 1
            assert not any(outcome == "failed" for _, outcome in produced)
            assert prom.query("cxstream_processor_rebuilds_total") == {worker: 0.0}

            # The alert rules loaded and evaluate without error.
            def rules_evaluated() -> bool:
                groups = requests.get(f"{prom.url}/api/v1/rules", timeout=10).json()["data"]["groups"]
                rules = [r for g in groups for r in g["rules"]]
                return {r["name"] for r in rules} == ALERT_NAMES and all(r["health"] == "ok" for r in rules)

            wait_until(rules_evaluated, timeout_s=30, what="the alert rules evaluated with health ok")
            firing = {a["labels"]["alertname"] for a in requests.get(f"{prom.url}/api/v1/alerts", timeout=10).json()["data"]["alerts"]}
            assert "CxstreamWorkerDown" not in firing and "CxstreamCollectorDown" not in firing
        finally:
            stop_process(prom_proc, 20)

        # cxstream status: the same run, on one screen.
        env = {k: v for k, v in os.environ.items() if not k.startswith("CX_")}
        env.update({"CX_DATA_DIR": str(settings.data_dir), "CX_CLICKHOUSE_URL": settings.clickhouse_url, "COLUMNS": "200"})
        status = subprocess.run(
            [sys.executable, "-m", "pipeline.cli", "status", "--interval", "0.5"], env=env, capture_output=True, text=True,
            timeout=60,
        )  # fmt: skip
        assert status.returncode == 0, status.stdout + status.stderr
        screen = status.stdout
        for row in (
            r"collector\s+│ yes\s+│ yes\s+│ 0\s+│ all checks pass",
            r"worker\s+│ yes\s+│ yes\s+│ 0\s+│ all checks pass",
            r"unknown_type\s+│ 3 ",
            r"schema_violation\s+│ 2 ",
            r"bad_json\s+│ 2 ",
            r"missing_property\s+│ 1 ",
            r"cart_abandoned\s+│ 2\s+│ 2 ",
            r"offer_cancelled\s+│ 1\s+│ 1 ",
            rf"{re.escape(settings.topic_events)}\[0\]\s+│ 0 ",
        ):
            assert re.search(row, screen), f"{row!r} not in\n{screen}"

        # JSON logs: the worker's line for the foreign record names its topic, partition and offset.
        lines = [orjson.loads(line) for line in running.log_path("worker").read_text().splitlines() if line.strip()]
        [foreign] = [line for line in lines if "is not an EventBatch" in line["message"]]
        assert (foreign["level"], foreign["component"], foreign["topic"], foreign["partition"]) == (
            "error", "worker", settings.topic_events, 0,
        )  # fmt: skip
        assert isinstance(foreign["offset"], int) and foreign["ts"].endswith("+00:00")
        collector_lines = [orjson.loads(line) for line in running.log_path("collector").read_text().splitlines() if line.strip()]
        assert any(line["message"].startswith("collector listening on") for line in collector_lines)
        assert {line["component"] for line in collector_lines} == {"collector"}
