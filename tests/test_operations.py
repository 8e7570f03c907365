"""JSON log lines, the worker's readiness checks, the alert rules file (promtool)."""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
from pathlib import Path

import orjson
import pytest

from pipeline.runtime.faust_adapter import create_app
from pipeline.logs import configure, context
from pipeline.settings import Settings
from pipeline.runtime.worker import Worker
from sinks.client import ClickHouseError

ALERTS = Path(__file__).resolve().parents[1] / "deploy" / "prometheus" / "alerts.yml"


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_log_line_has_time_level_component_message_and_the_record_context(
    capsys: pytest.CaptureFixture, restore_logging: None
) -> None:
    configure("json", "worker")
    log = logging.getLogger("cxstream.worker")
    log.error("t.events[1]@42 is not an EventBatch (%s)", "bad_json",
              extra=context(tenant="shop-a", topic="t.events", partition=1, offset=42))
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("a batch did not complete")
    log.debug("not shown: below INFO")
    lines = [orjson.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert len(lines) == 2
    first = lines[0]
    assert {k: v for k, v in first.items() if k != "ts"} == {
        "level": "error",
        "component": "worker",
        "logger": "cxstream.worker",
        "message": "t.events[1]@42 is not an EventBatch (bad_json)",
        "tenant": "shop-a",
        "topic": "t.events",
        "partition": 1,
        "offset": 42,
    }
    assert first["ts"].endswith("+00:00") and "T" in first["ts"]
    assert lines[1]["message"] == "a batch did not complete"
    assert lines[1]["exc"].startswith("Traceback") and "ValueError: boom" in lines[1]["exc"]
    assert "tenant" not in lines[1]  # no context given: no field


def test_text_log_format_stays_plain_lines(capsys: pytest.CaptureFixture, restore_logging: None) -> None:
    configure("text", "collector")
    logging.getLogger("cxstream.collector").warning("answering 503", extra=context(tenant="shop-a"))
    [line] = capsys.readouterr().err.splitlines()
    assert line.endswith("WARNING cxstream.collector: answering 503")


class _Writer:
    def __init__(self, answers: bool) -> None:
        self.answers = answers

    def broker_answers(self) -> bool:
        return self.answers


@pytest.fixture
def worker(tmp_path: Path) -> Worker:
    settings = Settings(_env_file=None, data_dir=tmp_path, write_keys="wk=shop-a", ready_max_lag=100)
    w = Worker(create_app(settings, "127.0.0.1:1"), settings, ch=None)  # type: ignore[arg-type] - no insert here
    w.trigger_writer = _Writer(True)  # type: ignore[assignment]
    return w


def ready(w: Worker) -> tuple[bool, dict]:
    return asyncio.run(w.ready())


def test_worker_is_not_ready_before_the_group_assigned_it_partitions(worker: Worker) -> None:
    ok, detail = ready(worker)
    assert not ok
    assert detail["checks"] == {"broker": True, "store": True, "assigned": False, "caught_up": True}


def test_worker_is_ready_when_assigned_and_every_partition_within_the_lag_bound(worker: Worker) -> None:
    worker.assigned = True
    worker.lag = {("cx.events", 0): 100, ("cx.events", 1): 0, ("cx.deadletter", 0): 3}
    ok, detail = ready(worker)
    assert ok
    assert detail["lag"] == {"cx.deadletter[0]": 3, "cx.events[0]": 100, "cx.events[1]": 0}


def test_a_partition_past_the_lag_bound_makes_the_worker_not_ready(worker: Worker) -> None:
    worker.assigned = True
    worker.lag = {("cx.events", 0): 101, ("cx.events", 1): 0}
    ok, detail = ready(worker)
    assert not ok and detail["checks"]["caught_up"] is False and detail["max_lag"] == 100


def test_a_partition_whose_end_is_unknown_is_not_caught_up(worker: Worker) -> None:
    worker.assigned = True
    worker.lag_unknown = {("cx.events", 1)}
    ok, detail = ready(worker)
    assert not ok and detail["lag_unknown"] == ["cx.events[1]"]


def test_an_unreachable_broker_makes_the_worker_not_ready(worker: Worker) -> None:
    worker.assigned = True
    worker.trigger_writer = _Writer(False)  # type: ignore[assignment]
    ok, detail = ready(worker)
    assert not ok and detail["checks"]["broker"] is False


def test_a_transient_insert_error_makes_the_worker_not_ready_until_an_insert_succeeds(worker: Worker) -> None:
    worker.assigned = True
    worker._observe_insert("cx.events", 10, 0.5, ClickHouseError("Connection refused", code=210), False)
    ok, detail = ready(worker)
    assert not ok and detail["checks"]["store"] is False and "Connection refused" in detail["store_error"]
    worker._observe_insert("cx.events", 10, 0.01, None, False)
    assert ready(worker)[0]


def test_a_permanent_insert_error_leaves_the_store_ready(worker: Worker) -> None:
    # A row refused for good is dead-lettered; the store itself is writable.
    worker.assigned = True
    worker._observe_insert("cx.events", 1, 0.01, ClickHouseError("Cannot parse", code=27), True)
    assert ready(worker)[0]


def test_alert_rules_pass_promtool() -> None:
    if shutil.which("promtool") is None:
        pytest.skip(reason="promtool is not installed (Debian's prometheus package; infra/setup.sh --clickhouse-server)")
    checked = subprocess.run(["promtool", "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 7 rules found" in checked.stdout


def test_status_screen_rates_latency_and_lag_come_from_two_scrapes() -> None:
    from rich.console import Console

    from pipeline.status import Scrape, Snapshot, parse_metrics, render_status

    first_c = parse_metrics('cxstream_collector_events_total{tenant="a",type="track",status="accepted"} 100\n'
                            'cxstream_collector_events_total{tenant="a",type="track",status="dead_letter"} 7\n')
    second_c = parse_metrics('cxstream_collector_events_total{tenant="a",type="track",status="accepted"} 140\n'
                             'cxstream_collector_events_total{tenant="a",type="track",status="dead_letter"} 9\n'
                             'cxstream_supervisor_restarts{component="collector"} 2\n')
    worker_text = (
        'cxstream_worker_events_total{tenant="a",type="track"} %d\n'
        'cxstream_consumer_lag{topic="cx.events",partition="0"} 12\n'
        'cxstream_consumer_lag{topic="cx.deadletter",partition="0"} 0\n'
        'cxstream_watermark_delay_seconds{partition="0"} 1.5\n'
        'cxstream_triggers_total{tenant="a",kind="cart_abandoned",action="offer"} 4\n'
        'cxstream_clickhouse_insert_seconds_bucket{table="cx.events",le="0.01"} 90\n'
        'cxstream_clickhouse_insert_seconds_bucket{table="cx.events",le="0.05"} 99\n'
        'cxstream_clickhouse_insert_seconds_bucket{table="cx.events",le="+Inf"} 100\n'
        'cxstream_clickhouse_insert_seconds_count{table="cx.events"} 100\n'
        'cxstream_clickhouse_insert_seconds_sum{table="cx.events"} 0.8\n'
    )
    collector = Scrape("collector", "http://c", alive=True, ready=True, ready_detail={"checks": {"broker": True}},
                       first=first_c, second=second_c)
    worker = Scrape("worker", "http://w", alive=True, ready=False,
                    ready_detail={"checks": {"broker": True, "store": False}},
                    first=parse_metrics(worker_text % 50), second=parse_metrics(worker_text % 70))
    snap = Snapshot(collector, worker, 2.0, [("too_old", 5)], [("cart_abandoned", 3)])
    console = Console(width=200, record=True)
    console.print(render_status(snap))
    screen = console.export_text()
    assert "│ events/s in (collector, accepted)                │ 20.0" in screen  # (140 - 100) / 2 s
    assert "│ events/s out (worker, processed)                 │ 10.0" in screen  # (70 - 50) / 2 s
    assert "ClickHouse insert, mean since start              │ 8.0 ms" in screen  # 0.8 s / 100
    assert "ClickHouse insert, p95 at most                   │ 50 ms" in screen  # 99 of 100 within 0.05 s
    assert "│ collector │ yes   │ yes   │ 2        │ all checks pass │" in screen
    assert "│ worker    │ yes   │ no    │ 0        │ failing: store  │" in screen
    assert "│ cx.events[0]     │ 12            │ 1.5 s           │" in screen
    assert "│ too_old                         │ 5     │" in screen
    assert "│ cart_abandoned │ 3                 │ 4                  │" in screen


def test_status_of_two_collector_processes_is_their_sum_and_ready_only_when_both_are() -> None:
    from pipeline.status import Scrape, combine, parse_metrics, total

    def process(url: str, accepted: tuple[int, int], ready: bool) -> Scrape:
        text = ('cxstream_collector_events_total{tenant="a",type="track",status="accepted"} %d\n'
                'cxstream_supervisor_restarts{component="collector"} 1\n')
        return Scrape("collector", url, alive=True, ready=ready, ready_detail={"checks": {"broker": ready, "events_topic": True}},
                      first=parse_metrics(text % accepted[0]), second=parse_metrics(text % accepted[1]))  # fmt: skip

    both = combine("collector", [process("http://c:9108", (10, 30), True), process("http://c:9109", (5, 7), True)])
    assert both.name == "collector (2 processes)" and both.ready
    assert total(both.second, "cxstream_collector_events_total", status="accepted") - total(
        both.first, "cxstream_collector_events_total", status="accepted"
    ) == 22  # (30 - 10) + (7 - 5)
    assert total(both.second, "cxstream_supervisor_restarts") == 1  # up's count, passed to each process, once
    one_down = combine("collector", [process("http://c:9108", (10, 30), True), process("http://c:9109", (5, 7), False)])
    assert not one_down.ready and one_down.ready_detail == {"checks": {"broker": False, "events_topic": True}}
    unreachable = process("http://c:9109", (5, 7), True)
    unreachable.error, unreachable.alive, unreachable.second = "ConnectionError: refused", False, {}
    partial = combine("collector", [process("http://c:9108", (10, 30), True), unreachable])
    assert (partial.alive, partial.first, partial.second) == (False, {}, {})  # no rate from half the processes
    assert partial.error == "process 1: ConnectionError: refused"


def test_status_shows_deliver_alive_its_lag_and_the_last_hours_outcomes() -> None:
    from rich.console import Console

    from pipeline.status import Deliveries, Scrape, Snapshot, render_status

    up = dict(alive=True, ready=True, ready_detail={"checks": {}}, first={}, second={})
    hooks = Deliveries(alive=False, lag={"cx.triggers[0]": 3, "cx.triggers[1]": 0},
                       last_hour=[("crm", "dead_lettered", 2), ("crm", "delivered", 40)])  # fmt: skip
    snap = Snapshot(Scrape("collector", "http://c", **up), Scrape("worker", "http://w", **up), 2.0, [], [], deliveries=hooks)
    console = Console(width=200, record=True)
    console.print(render_status(snap))
    screen = console.export_text()
    assert "│ process alive                     │ no    │" in screen
    assert "│ not yet delivered: cx.triggers[0] │ 3     │" in screen
    assert "│ last hour: crm dead_lettered      │ 2     │" in screen
    assert "│ last hour: crm delivered          │ 40    │" in screen
    without = Snapshot(Scrape("collector", "http://c", **up), Scrape("worker", "http://w", **up), 2.0, [], [])
    console = Console(width=200, record=True)
    console.print(render_status(without))
    assert "Webhook deliveries" not in console.export_text()  # up runs no deliver: no section
