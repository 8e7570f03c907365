"""Shared by the fault-injection runs: a reproducible day of traffic, sending it, and the exact final check."""

from __future__ import annotations

import base64
import http.client
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import orjson
import requests

from pipeline.wire.partitioner import ids_per_partition
from pipeline.demo.ledger import Expected
from pipeline.demo.storefront import generate
from pipeline.settings import Settings
from pipeline.supervisor.runner import Pipeline
from tests.chaos.reference import Reference, reference_run
from tests.integration.helpers import scalar, wait_until

__all__ = ["Day", "cross_device_customers", "day_of_traffic", "post", "worker_stats", "settle_and_check"]

DAY_MS = 86_400_000


@dataclass(frozen=True)
class Day:
    messages: list[dict]  # the storefront's day, then one page view per partition at the present time
    expected: Expected
    reference: Reference
    extra_carts: int = 0  # carts and orders of the cross-device customers (not in the storefront's ledger)
    extra_orders: int = 0


def _clock_pages(tenant: str, partitions: int, now_ms: int) -> list[dict]:
    """One page view per partition at the present time: moves every partition's event time to now."""
    ts = datetime.fromtimestamp(now_ms / 1000, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return [
        {"type": "page", "anonymousId": a, "properties": {"path": "/"}, "timestamp": ts, "messageId": a}
        for a in ids_per_partition(tenant, "clock", partitions)
    ]


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def cross_device_customers(start_ms: int, customers: int = 12) -> list[dict]:
    """Customers with a phone, a laptop and the shop's backend, within the day starting at ``start_ms``.

    Customer ``i`` starts at ``start_ms + (i + 1)`` hours: identifies on the
    phone (consent) and adds to a cart, then 5 minutes later on the laptop
    (consent withdrawn there for every fourth customer) and adds to another.
    Every third customer's backend sends an order two hours later (it
    cancels the live offer); for the next one, an order naming the phone's
    cart ten minutes in (the cart was bought). In time order.
    """
    hour, minute = 3_600_000, 60_000
    out: list[tuple[int, dict]] = []

    def at(t_ms: int, body: dict) -> None:
        out.append((t_ms, {**body, "timestamp": _iso(t_ms), "messageId": f"xd-{len(out)}-{t_ms}"}))

    for i in range(customers):
        b = start_ms + (i + 1) * hour
        user, phone, laptop = f"xd-cust-{i}", f"xd-{i}-phone", f"xd-{i}-laptop"
        for anon, t, consent in ((phone, b, True), (laptop, b + 5 * minute, i % 4 != 1)):
            at(t, {"type": "identify", "userId": user, "anonymousId": anon, "traits": {"consent_marketing": consent}})
            props = {"cart_id": f"{anon}-cart", "product_id": "p1", "price": 30.0 + i, "quantity": 1}
            at(t + minute, {"type": "track", "event": "Product Added", "userId": user, "anonymousId": anon,
                            "properties": props})  # fmt: skip
        if i % 3 == 0:
            at(b + 2 * hour, {"type": "track", "event": "Order Completed", "userId": user,
                              "properties": {"order_id": f"xd-o-{i}", "total": 30.0 + i}})  # fmt: skip
        elif i % 3 == 1:
            at(b + 10 * minute, {"type": "track", "event": "Order Completed", "userId": user,
                                 "properties": {"order_id": f"xd-o-{i}", "total": 30.0 + i, "cart_id": f"{phone}-cart"}})  # fmt: skip
    return [m for _, m in sorted(out, key=lambda pair: pair[0])]


def _interleave(day: list[dict], extra: list[dict]) -> list[dict]:
    """``extra`` placed among ``day`` (both in time order) by timestamp: each as if sent when it happened."""
    out, i = [], 0
    for m in extra:
        while i < len(day) and day[i].get("timestamp", "") <= m["timestamp"]:
            out.append(day[i])
            i += 1
        out.append(m)
    return out + day[i:]


def chaos_settings(fresh_settings: Settings, kafka: str, clickhouse_url: str, **overrides: object) -> Settings:
    """The fault-injection runs' settings: real broker and ClickHouse server, short sessions, small windows."""
    tenant = f"shop-{fresh_settings.worker_group}"
    return fresh_settings.model_copy(
        update={
            "kafka_bootstrap": kafka,
            "clickhouse_url": clickhouse_url,
            "collector_port": 0,
            "worker_web_port": 0,
            "write_keys": f"wk_chaos={tenant}",
            "worker_session_timeout_s": 3.0,
            "batch_max_records": 200,
            "sink_max_interval_ms": 200,
            **overrides,
        }
    )


def day_of_traffic(
    pipeline: Pipeline, seed: int, visitors: int, extra: list[dict] | None = None, cross_device: int = 0
) -> Day:
    """The UTC day before yesterday of the demo shop (the same on every run), and what must come of it.

    ``cross_device``: that many ``cross_device_customers`` among the day's traffic.
    """
    now_ms = int(time.time() * 1000)
    start_ms = (now_ms // DAY_MS - 2) * DAY_MS
    traffic = generate(seed, visitors=visitors, start_ms=start_ms, span_ms=DAY_MS)
    messages = _interleave(traffic.messages, cross_device_customers(start_ms, cross_device)) + (extra or [])
    messages += _clock_pages(pipeline.tenant, pipeline.settings.kafka_partitions, now_ms)
    ref = reference_run(messages, pipeline.tenant, pipeline.settings, now_ms)
    orders = sum(1 for i in range(cross_device) if i % 3 != 2)
    return Day(messages, traffic.expected, ref, extra_carts=2 * cross_device, extra_orders=orders)


def post(pipeline: Pipeline, messages: list[dict], write_key: str = "wk_chaos") -> None:
    """POST ``messages`` as one batch; retries while the collector answers 503, like the SDKs."""
    auth = base64.b64encode(f"{write_key}:".encode()).decode()
    for _ in range(60):
        resp = requests.post(
            f"{pipeline.collector_url}/v1/batch",
            data=orjson.dumps({"batch": messages}),
            headers={"Authorization": f"Basic {auth}", "Content-Type": "application/json"},
            timeout=30,
        )
        if resp.status_code == 200:
            return
        time.sleep(0.5)
    raise AssertionError(f"collector kept answering {resp.status_code}: {resp.text}")


def worker_stats(pipeline: Pipeline, port: int | None = None) -> dict:
    """The worker's /cx/stats; first restarts a worker that exited to replay an unfinished batch.

    A worker that exits while it answers (exit 75) is started again and asked again, twice at most.
    """
    url = f"http://127.0.0.1:{port or pipeline.worker_port}/cx/stats"
    for _ in range(2):
        pipeline.restart_exited_workers()
        try:
            return requests.get(url, headers=pipeline.worker_headers, timeout=10).json()
        except requests.ConnectionError:
            time.sleep(0.5)
    pipeline.restart_exited_workers()
    return requests.get(url, headers=pipeline.worker_headers, timeout=10).json()


def wait_caught_up(pipeline: Pipeline, what: str, ports: dict[str, int], timeout_s: float = 120) -> None:
    """Wait until the workers committed every record, restarting a worker that exited to replay.

    On a timeout the error shows what each partition and worker was doing:
    committed and end offsets, each worker's exit code and stats, and the
    end of its log.
    """
    def caught_up() -> bool:
        pipeline.restart_exited_workers()
        return pipeline.lag() == 0

    try:
        wait_until(caught_up, timeout_s=timeout_s, what=what)
    except AssertionError as exc:
        lines = [str(exc), f"offsets (committed, end): {pipeline.offsets()}", f"restarts: {pipeline.restarts}"]
        for name, port in ports.items():
            proc = pipeline.procs.get(name)
            lines.append(f"{name}: exit code {None if proc is None else proc.poll()}")
            try:
                lines.append(f"{name} stats: {requests.get(f'http://127.0.0.1:{port}/cx/stats', headers=pipeline.worker_headers, timeout=5).json()}")
            except requests.RequestException as err:
                lines.append(f"{name} stats: unavailable ({err})")
            log = pipeline.log_path(name)
            if log.exists():
                lines.append(f"{name} log, last lines:\n" + "\n".join(log.read_text(errors="replace").splitlines()[-40:]))
        raise AssertionError("\n".join(lines)) from None


def _stats_or_why(pipeline: Pipeline) -> object:
    try:
        return worker_stats(pipeline)
    except Exception as exc:  # noqa: BLE001 - a failure message: say why there are none
        return f"unavailable ({type(exc).__name__}: {exc})"


def _log_tail(path: Path, lines: int = 60) -> str:
    """The last lines of a process's log, for a failure message (what the workers were doing)."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"({path.name} unreadable: {exc})"
    return "\n".join(text.splitlines()[-lines:])


def settle_and_check(
    pipeline: Pipeline, day: Day, what: str, timeout_s: float = 240, extra_deadletters: int = 0
) -> dict:
    """Wait for the pipeline to store the day, then assert every number equals the crash-free reference.

    Returns the figures (for the run's printed summary).
    """
    t = f"tenant = '{pipeline.tenant}'"
    ref, exp = day.reference, day.expected
    abandoned = len(ref.trigger_ids.get("cart_abandoned", ()))
    want = (ref.events, ref.deadletters + extra_deadletters, abandoned)
    # Every trigger, not only the abandonments: one the customer stage releases after the last
    # abandonment (an order later in event time cancelling an offer) is written a window later.
    triggers = sum(map(len, ref.trigger_ids.values()))

    def settled() -> bool:
        found = counts()
        return found is not None and found[:3] == want and found[3] >= triggers

    def counts() -> tuple[int, int, int, int] | None:
        pipeline.restart_exited_workers()
        try:
            return (
                scalar(pipeline, f"SELECT count() FROM cx.events FINAL WHERE {t}"),
                scalar(pipeline, f"SELECT count() FROM cx.deadletters FINAL WHERE {t}"),
                scalar(pipeline, f"SELECT count() FROM cx.triggers FINAL WHERE {t} AND kind = 'cart_abandoned'"),
                scalar(pipeline, f"SELECT count() FROM cx.triggers FINAL WHERE {t}"),
            )
        except (OSError, http.client.HTTPException):
            # The worker exited while answering (exit 75 to replay a window): it is started
            # again by the next call, which asks again.
            return None

    try:
        wait_until(
            settled, timeout_s=timeout_s, what=f"(events, dead letters, abandonments) {want} and {triggers} triggers {what}"
        )
    except AssertionError as exc:
        worker = pipeline.procs.get("worker")
        alive = worker is not None and worker.poll() is None
        expected_ids = ref.trigger_ids.get("cart_abandoned", set())
        rows = pipeline.query(
            "SELECT trigger_id, cart_key, event_time_ms FROM cx.triggers FINAL "
            f"WHERE {t} AND kind = 'cart_abandoned' ORDER BY cart_key, event_time_ms"
        )[1]
        odd = [r for r in rows if r[0] not in expected_ids]
        logs = sorted(pipeline.log_path("worker").parent.glob("worker*.log"))
        raise AssertionError(
            f"{exc}; found {counts()}, worker alive: {alive}, lag: {pipeline.lag()}; "
            f"offsets (committed, end): {pipeline.offsets()}; worker stats: {_stats_or_why(pipeline)}; "
            f"abandonments not in the reference: {odd}; all: {rows}"
            + "".join(f"\n{path.name}, last lines:\n{_log_tail(path)}" for path in logs)
        ) from None
    stored = scalar(pipeline, f"SELECT count() FROM cx.events FINAL WHERE {t}")
    distinct = scalar(pipeline, f"SELECT uniqExact(event_id) FROM cx.events FINAL WHERE {t}")
    got: dict[str, set[str]] = {}
    for kind, trigger_id in pipeline.query(f"SELECT kind, trigger_id FROM cx.triggers FINAL WHERE {t}")[1]:
        got.setdefault(kind, set()).add(trigger_id)
    _, acted = pipeline.query(f"SELECT trigger_id, action FROM cx.triggers FINAL WHERE {t}")
    actions = dict((r[0], r[1]) for r in acted)
    wrong_actions = {i: (a, actions.get(i)) for i, a in ref.actions.items() if actions.get(i) != a}
    missing = {k: v - got.get(k, set()) for k, v in ref.trigger_ids.items() if v - got.get(k, set())}
    extra = {k: v - ref.trigger_ids.get(k, set()) for k, v in got.items() if v - ref.trigger_ids.get(k, set())}
    _, kpi = pipeline.query(f"SELECT sum(carts), sum(orders) FROM cx.kpi_daily WHERE {t}")
    figures = {
        "messages": len(day.messages),
        "events_expected": ref.events,
        "stored": stored,
        "lost": ref.events - distinct,
        "duplicated": stored - distinct,
        "triggers_expected": sum(map(len, ref.trigger_ids.values())),
        "triggers_found": sum(len(v & ref.trigger_ids.get(k, set())) for k, v in got.items()),
        "restarts": pipeline.restarts,
    }
    assert (stored, distinct) == (ref.events, ref.events), figures
    if missing or extra:
        ids = [i for v in (*missing.values(), *extra.values()) for i in v]
        rows = pipeline.query(
            "SELECT kind, trigger_id, cart_key, session_id, event_time_ms, action FROM cx.triggers FINAL "
            f"WHERE {t} AND trigger_id IN ({', '.join(repr(i) for i in ids)})"
        )[1]
        raise AssertionError(f"{figures}; missing {missing}; extra {extra}: {rows}")
    assert not wrong_actions, f"triggers whose action differs from the crash-free run (expected, found): {wrong_actions}"
    assert [int(v) for v in kpi[0]] == [exp.carts + day.extra_carts, exp.orders + day.extra_orders]
    return figures
