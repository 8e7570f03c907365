"""``cxstream up`` with delivery on: the deliver process is supervised, its outcomes land in ``cx.deliveries``."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pipeline.supervisor.runner import Pipeline, child_alive, read_run_file
from pipeline.settings import Settings
from pipeline.status import collect
from tests.deliver.common import SECRET, committed, make_trigger, produce, read_topic, write_config
from tests.deliver.receiver import Receiver
from tests.integration.helpers import BACKENDS, e2e_pipeline, wait_until

pytestmark = pytest.mark.integration


def _refuse_some(n: int, trigger_id: str, attempt: int) -> str:
    # tr-00002: 400 (dead-lettered at once); tr-00004: 500 twice, then 200; every other: 200.
    if trigger_id == "tr-00002":
        return "status:400"
    if trigger_id == "tr-00004" and attempt <= 2:
        return "status:500"
    return "ok"


@pytest.fixture(params=BACKENDS)
def running(request, kafka: str, fresh_settings: Settings, tmp_path: Path):  # noqa: ANN001
    with Receiver(SECRET.encode(), _refuse_some) as rx:
        config = write_config(tmp_path / "hooks.toml", [{"name": "crm", "url": rx.url, "secret": SECRET, "max_attempts": 4}])
        with e2e_pipeline(
            request, kafka, fresh_settings, tmp_path, "wk_deliver",
            delivery_enabled=True, delivery_config=str(config), delivery_backoff_s=0.05, delivery_backoff_max_s=1.0,
            restart_backoff_s=0.2,
        ) as pipeline:  # fmt: skip
            yield pipeline, rx


def test_up_delivers_triggers_stores_each_delivery_once_and_restarts_a_killed_deliver(running) -> None:  # noqa: ANN001
    pipeline, rx = running
    s = pipeline.settings
    assert "deliver" in pipeline.procs
    triggers = [make_trigger(i, tenant=pipeline.tenant) for i in range(6)]
    ends = produce(s, pipeline.bootstrap, triggers)
    want = {p: ends.get(p, -1001) for p in range(2)}
    wait_until(lambda: committed(s, pipeline.bootstrap, 2) == want, 60, "6 triggers delivered and committed")
    rows_sql = (
        "SELECT trigger_id, destination, status, attempts, last_status, tenant, kind, action,"
        " latency_ms >= 0, last_attempt_ms >= first_attempt_ms"
        f" FROM cx.deliveries FINAL WHERE tenant = '{pipeline.tenant}' ORDER BY trigger_id"
    )
    wait_until(lambda: len(pipeline.query(rows_sql)[1]) == 6, 60, "6 rows in cx.deliveries")
    rows = [tuple(r) for r in pipeline.query(rows_sql)[1]]
    t = pipeline.tenant
    assert rows == [
        ("tr-00000", "crm", "delivered", 1, 200, t, "cart_abandoned", "offer", 1, 1),
        ("tr-00001", "crm", "delivered", 1, 200, t, "cart_abandoned", "offer", 1, 1),
        ("tr-00002", "crm", "dead_lettered", 1, 400, t, "cart_abandoned", "offer", 1, 1),
        ("tr-00003", "crm", "delivered", 1, 200, t, "cart_abandoned", "offer", 1, 1),
        ("tr-00004", "crm", "delivered", 3, 200, t, "cart_abandoned", "offer", 1, 1),
        ("tr-00005", "crm", "delivered", 1, 200, t, "cart_abandoned", "offer", 1, 1),
    ]
    _, errors = pipeline.query(f"SELECT last_error FROM cx.deliveries FINAL WHERE trigger_id = 'tr-00002' AND tenant = '{t}'")
    assert errors == [["HTTP 400: refused with 400"]]
    dead = read_topic(s, pipeline.bootstrap, s.topic_delivery_deadletter, idle_s=1.0)
    assert [(d["trigger_id"], d["destination"], d["last_status"]) for d in dead] == [("tr-00002", "crm", 400)]

    # cxstream status sees deliver: alive, nothing left on the triggers topic, the last hour's outcomes.
    info = read_run_file(s)
    assert info["delivery_enabled"] is True
    hooks = collect(s, info, 0.2, pipeline.query).deliveries
    assert (hooks.alive, hooks.error) == (True, "")
    assert hooks.lag == {f"{s.topic_triggers}[0]": 0, f"{s.topic_triggers}[1]": 0}
    assert hooks.last_hour == [("crm", "dead_lettered", 1), ("crm", "delivered", 5)]

    # kill -9 the deliver process: up's supervision starts it again, and it delivers what comes next.
    old = pipeline.procs["deliver"]
    old.kill()
    old.wait(10)
    assert not child_alive(s.data_dir, "deliver")  # what cxstream status shows until up starts it again
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and ("deliver" not in pipeline.procs or pipeline.procs["deliver"] is old):
        pipeline.supervise()
        time.sleep(0.1)
    assert pipeline.procs["deliver"] is not old and pipeline.procs["deliver"].poll() is None
    assert child_alive(s.data_dir, "deliver")
    more = [make_trigger(i, tenant=pipeline.tenant) for i in range(6, 9)]
    ends = produce(s, pipeline.bootstrap, more)
    want = {p: max(want[p], ends.get(p, -1001)) for p in range(2)}
    wait_until(lambda: committed(s, pipeline.bootstrap, 2) == want, 60, "3 more triggers delivered after the restart")
    _, effects = rx.snapshot()
    assert set(effects) == {f"tr-{i:05d}" for i in range(9)} - {"tr-00002"}
    wait_until(lambda: len(pipeline.query(rows_sql)[1]) == 9, 60, "9 rows in cx.deliveries")


@pytest.fixture(params=["chdb"])
def storefront(request, kafka: str, fresh_settings: Settings, tmp_path: Path):  # noqa: ANN001
    with Receiver(SECRET.encode()) as rx:
        config = write_config(tmp_path / "hooks.toml", [
            {"name": "esp", "url": rx.url, "secret": SECRET, "kinds": ["cart_abandoned", "offer_cancelled"]},
        ])  # fmt: skip
        with e2e_pipeline(
            request, kafka, fresh_settings, tmp_path, "wk_hooks", allowed_lateness_ms=5 * 60_000, holdout_pct=0.0,
            delivery_enabled=True, delivery_config=str(config),
        ) as pipeline:  # fmt: skip
            yield pipeline, rx


def test_triggers_the_worker_detects_from_storefront_events_reach_the_webhook(storefront) -> None:  # noqa: ANN001
    import orjson

    from tests.integration.helpers import post_batch
    from tests.integration.journeys import day_d, journey_batches

    pipeline, rx = storefront
    for batch in journey_batches(pipeline.tenant, pipeline.settings.kafka_partitions, day_d()):
        assert post_batch(pipeline.collector_url, "wk_hooks", batch).status_code == 200
    # The scripted journeys give 2 cart_abandoned triggers and 1 offer_cancelled (tests/integration/journeys.py).
    wait_until(lambda: len(rx.snapshot()[1]) == 3, 90, "3 triggers at the webhook")
    requests, effects = rx.snapshot()
    bodies = [orjson.loads(done[0].body) for done in effects.values()]
    assert sorted(b["kind"] for b in bodies) == ["cart_abandoned", "cart_abandoned", "offer_cancelled"]
    assert all(r.signature_ok and r.key == r.trigger_id for r in requests)
    # A trigger leaves as its record is processed; its row in cx.triggers
    # follows with the worker's window, so it may reach the webhook first.
    sql = f"SELECT trigger_id FROM cx.triggers FINAL WHERE tenant = '{pipeline.tenant}'"
    wait_until(lambda: len(pipeline.query(sql)[1]) == 3, 30, "3 triggers stored")
    stored = {r[0] for r in pipeline.query(sql)[1]}
    assert set(effects) == stored
    cancelled = next(b for b in bodies if b["kind"] == "offer_cancelled")
    assert cancelled["ref_trigger_id"] in effects  # the offer it cancels was posted too
    wait_until(
        lambda: len(pipeline.query(f"SELECT trigger_id FROM cx.deliveries FINAL WHERE tenant = '{pipeline.tenant}' AND status = 'delivered'")[1]) == 3,
        60, "3 delivered rows in cx.deliveries",
    )  # fmt: skip
