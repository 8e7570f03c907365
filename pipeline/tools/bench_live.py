"""``cxstream bench``, sections 4 and 5: live trigger latency through the collector, and the collector's rate.

See ``pipeline.tools.bench`` for the whole run and what each figure means.
"""

from __future__ import annotations

import base64
import http.client
import threading
import time
import zlib
from urllib.parse import urlsplit
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
import requests
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from pipeline.supervisor.ports import free_port, stop_process, wait_for_port
from pipeline.tools.bench_common import (
    DAY_MS,
    FRICTION_KIND,
    LIVE_ABANDON_AFTER_MS,
    REQUEST_MESSAGES,
    WRITE_KEY,
    BenchError,
    BenchOptions,
    child_env,
    cpu_seconds,
    iso_ms,
    make_traffic,
    spawn,
    wall_ms,
    worker_json,
)
from pipeline.settings import Settings
from pipeline.wire.topics import ensure_topics, kafka_config
from pipeline.wire.triggers import decode_trigger
from sinks.client import connect
from sinks.migrate import migrate

if TYPE_CHECKING:
    from pipeline.supervisor.runner import Pipeline

__all__ = ["CUSTOMER_STAGES", "STAGES", "TriggerListener", "customer_stages", "run_collector", "run_live", "send_live", "trigger_latency", "trigger_stages"]


class TriggerListener:
    """Reads ``cx.triggers`` in a thread and records (arrival wall ms, trigger)."""

    def __init__(self, settings: Settings, bootstrap: str) -> None:
        self.settings = settings
        self.consumer = Consumer(
            {
                **kafka_config(settings, bootstrap),
                "group.id": f"{settings.worker_group}-bench-triggers",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 10,
            }
        )
        # Assigned, not subscribed: no group join to wait for (or to time out on leaving).
        topic = settings.topic_triggers
        parts = self.consumer.list_topics(topic, timeout=10).topics[topic].partitions
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        self.seen: list[tuple[int, dict]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            msg = self.consumer.poll(0.05)
            if msg is None or msg.error():
                continue
            self.seen.append((wall_ms(), decode_trigger(msg.value(), self.settings.trigger_format)))

    def __enter__(self) -> "TriggerListener":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.consumer.close()


def _percentiles(values: list[int], tail: float = 0.99) -> dict:
    """count, p50, the ``tail`` percentile (p99 or p90) and max of ``values``, in ms."""
    if not values:
        return {"count": 0}
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(len(ordered) * q))]  # noqa: E731
    return {"count": len(ordered), "p50_ms": pick(0.50), f"p{round(tail * 100)}_ms": pick(tail), "max_ms": ordered[-1]}


CUSTOMER_DECIDED = "cart_abandoned_customer"


def trigger_latency(seen: list[tuple[int, dict]]) -> dict:
    """Per trigger kind: wall time from its ``event_time`` to its arrival on the topic.

    For ``cart_abandoned`` event_time is the cart's deadline; for the
    friction and support kinds it is the event that made the condition
    true, received at that same wall time in live mode.
    ``cart_abandoned_customer`` is the part of ``cart_abandoned`` decided
    by the customer stage (identified customers).
    """
    by_kind: dict[str, list[int]] = {}
    for arrived_ms, trigger in seen:
        latency = arrived_ms - trigger["event_time"]
        by_kind.setdefault(trigger["kind"], []).append(latency)
        if trigger["kind"] == "cart_abandoned" and trigger.get("customer_id"):
            # Decided by the customer stage (docs/identity.md): the second hop and its merge.
            by_kind.setdefault(CUSTOMER_DECIDED, []).append(latency)
    out = {kind: _percentiles(values) for kind, values in sorted(by_kind.items())}
    if FRICTION_KIND not in out:
        out[FRICTION_KIND] = {"count": 0, "note": "no checkout_friction trigger in this run"}
    return out


# The parts of a record-fired trigger's latency, in order; they add up to event -> trigger.
STAGES = (
    ("client_to_collector", "the client's timestamp to the collector's receipt"),
    ("collector_to_kafka", "receipt to the Kafka record's timestamp (the collector's produce)"),
    ("kafka_to_worker", "the record's timestamp to the worker taking its group (broker, fetch, Faust, groups before it)"),
    ("id_lookup", "the group's stored-id lookup"),
    ("detection", "the group's detection until the trigger is handed to Kafka"),
    ("kafka_to_listener", "the hand-over to the trigger's arrival on cx.triggers"),
)


def trigger_stages(times: dict, seen: list[tuple[int, dict]]) -> dict:
    """Per stage, p50/p90/max ms over the triggers the worker timed (``/cx/trigger-times``) that arrived.

    Only triggers fired by a record of the worker's own stage are timed
    (friction, support, and carts whose deadline a record passed); the
    customer stage's and the idle tick's are not.
    """
    arrived = {t["trigger_id"]: (arrival, t["event_time"]) for arrival, t in seen}
    fields = times["fields"]
    marks = []
    for row in times["triggers"]:
        t = dict(zip(fields, row))
        if t["trigger_id"] not in arrived or t["kind"] == "cart_abandoned":
            continue  # a cart's event_time is its deadline, not the event that passed it
        arrival, event_ms = arrived[t["trigger_id"]]
        marks.append([event_ms, t["received_ms"], t["record_ms"], t["taken_ms"], t["looked_up_ms"], t["sent_ms"], arrival])
    return _stage_summary(STAGES, marks)


def _stage_summary(stages: tuple[tuple[str, str], ...], marks: list[list[int]]) -> dict:
    """p50/p90/max ms of each stage, the time between consecutive marks of each timed trigger."""
    if not marks:
        return {"count": 0}
    out: dict = {"count": len(marks)}
    for i, (name, _) in enumerate(stages):
        values = [m[i + 1] - m[i] for m in marks]
        out[name] = {k: v for k, v in _percentiles(values, 0.90).items() if k != "count"}
    return out


# The parts of a customer-stage cart's latency (deadline -> trigger), in order (docs/identity.md).
CUSTOMER_STAGES = (
    ("device_stage", "the deadline to the candidate's Kafka record: allowed lateness, the hop into the worker, detection"),
    ("customers_hop", "the candidate's record to the worker taking it from cx.customers (broker, fetch, Faust)"),
    ("merge_hold", "held until every device partition's promise passed it, then decided and handed to Kafka"),
    ("kafka_to_listener", "the hand-over to the trigger's arrival on cx.triggers"),
)


def customer_stages(times: dict, seen: list[tuple[int, dict]]) -> dict:
    """Per stage, p50/p90/max ms over the customer stage's carts the worker timed (``/cx/trigger-times``)."""
    arrived = {t["trigger_id"]: (arrival, t["event_time"]) for arrival, t in seen if t["kind"] == "cart_abandoned"}
    timed = times.get("customer", {"fields": [], "triggers": []})
    marks = []
    for row in timed["triggers"]:
        t = dict(zip(timed["fields"], row))
        if t["trigger_id"] in arrived:
            arrival, deadline_ms = arrived[t["trigger_id"]]
            marks.append([deadline_ms, t["candidate_ms"], t["taken_ms"], t["sent_ms"], arrival])
    return _stage_summary(CUSTOMER_STAGES, marks)


def _client_of(msg: dict, clients: int) -> int:
    key = msg.get("anonymousId") or msg.get("userId") or ""
    return zlib.crc32(key.encode()) % clients


class _Poster:
    """One keep-alive HTTP/1.1 connection posting JSON bodies with the bench's write key.

    ``http.client`` rather than ``requests``: the clients share the two
    cores with what they measure, and a ``requests`` call costs several
    times the CPU of the request itself (at 2,000 events/s the bench's
    process took about a quarter of a core).
    """

    def __init__(self, url: str, timeout_s: float) -> None:
        parts = urlsplit(url)
        self._host, self._port, self._timeout = parts.hostname or "127.0.0.1", parts.port or 80, timeout_s
        self._conn: http.client.HTTPConnection | None = None
        self._headers = {
            "Content-Type": "application/json",
            "Authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode(),
        }

    def post(self, path: str, body: bytes) -> tuple[int, str]:
        """Status and body of the answer; a connection the server closed is opened again once."""
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
            try:
                self._conn.request("POST", path, body=body, headers=self._headers)
                resp = self._conn.getresponse()
                text = resp.read()
                return resp.status, text[:200].decode(errors="replace")
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self._conn.close()
                self._conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


def send_live(url: str, messages: list[dict], rate: int, clients: int) -> dict:
    """Post ``messages`` at ``rate`` per second, stamped with the wall clock when sent.

    A visitor's messages always go through the same client, in order. Each
    client sends what is due in one request (up to ``REQUEST_MESSAGES``).
    """
    lanes: list[list[tuple[float, dict]]] = [[] for _ in range(clients)]
    for i, msg in enumerate(messages):
        lanes[_client_of(msg, clients)].append((i / rate, msg))
    failures: list[str] = []
    started = time.monotonic()

    def run(lane: list[tuple[float, dict]]) -> None:
        poster = _Poster(url, 30)
        i = 0
        while i < len(lane):
            due = lane[i][0] - (time.monotonic() - started)
            if due > 0:
                time.sleep(min(due, 0.05))
                continue
            now_s = time.monotonic() - started
            batch = []
            while i < len(lane) and lane[i][0] <= now_s and len(batch) < REQUEST_MESSAGES:
                batch.append(lane[i][1])
                i += 1
            stamp = iso_ms(wall_ms())
            body = orjson.dumps({"batch": [{**m, "timestamp": stamp} for m in batch]})
            status, text = poster.post("/v1/batch", body)
            if status != 200:
                failures.append(f"{status} {text}")
        poster.close()

    threads = [threading.Thread(target=run, args=(lane,)) for lane in lanes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.monotonic() - started
    if failures:
        raise BenchError(f"{len(failures)} live requests failed: {failures[:3]}")
    return {"sent": len(messages), "seconds": round(seconds, 2), "achieved_rate": round(len(messages) / seconds)}


def _wait_worker_ready(pipe: Pipeline, timeout_s: float = 120.0) -> float:
    """Seconds until the worker's ``/ready`` answers 200; BenchError after ``timeout_s``."""
    started = time.monotonic()
    url = f"http://{pipe.worker_host}:{pipe.worker_port}/ready"
    while time.monotonic() - started < timeout_s:
        try:
            if requests.get(url, timeout=5).status_code == 200:
                return round(time.monotonic() - started, 2)
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise BenchError(f"live: the worker was not ready within {timeout_s:.0f} s")


def run_live(
    rate: int, opts: BenchOptions, settings: Settings, bootstrap: str, clickhouse_url: str, log_dir: Path
) -> dict:
    """Collector + one worker at ``rate`` events/s for ``opts.live_seconds``; trigger latency per kind."""
    from pipeline.supervisor.runner import Pipeline

    live_settings = settings.model_copy(
        update={
            "kafka_bootstrap": bootstrap,
            "clickhouse_url": clickhouse_url,
            "topic_events": f"{settings.topic_events}-live{rate}",
            "topic_triggers": f"{settings.topic_triggers}-live{rate}",
            "topic_deadletter": f"{settings.topic_deadletter}-live{rate}",
            "worker_group": f"{settings.worker_group}-live{rate}",
            "abandon_after_ms": LIVE_ABANDON_AFTER_MS,
            "collector_port": 0,
            "worker_web_port": 0,
            "data_dir": log_dir / f"live{rate}",
        }
    )
    n = max(1, round(rate * opts.live_seconds))
    messages, _ = make_traffic(n, opts.seed + 1)  # timestamps are replaced by the sending time
    ch = connect(clickhouse_url)
    try:
        ch.execute("DROP DATABASE IF EXISTS cx")
        migrate(ch)
    finally:
        ch.close()
    with Pipeline(live_settings, log_dir=log_dir / f"live{rate}-logs") as pipe, TriggerListener(live_settings, bootstrap) as listener:
        # Traffic starts once the worker is ready (partitions assigned, caught
        # up): the figures are the steady state, not the worker's start-up.
        ready_s = _wait_worker_ready(pipe)
        sent = send_live(pipe.collector_url, messages, rate, opts.clients)
        # Every cart deadline falls at most abandon_after after the last event;
        # then allowed lateness, idle detection and a flush.
        settle_s = (LIVE_ABANDON_AFTER_MS + live_settings.allowed_lateness_ms + live_settings.idle_partition_ms) / 1000
        time.sleep(settle_s + 3.0)
        if not pipe.wait_drained(60):
            raise BenchError("live: the worker did not drain the events topic")
        time.sleep(1.0)
        times = worker_json(pipe.worker_port, pipe.token, "/cx/trigger-times", pipe.worker_host)
    return {
        **sent,
        "worker_ready_s": ready_s,
        "requested_rate": rate,
        "abandon_after_ms": LIVE_ABANDON_AFTER_MS,
        "allowed_lateness_ms": live_settings.allowed_lateness_ms,
        "sink_max_interval_ms": live_settings.sink_max_interval_ms,
        "latency": trigger_latency(listener.seen),
        "stages": trigger_stages(times, listener.seen),
        "customer_stages": customer_stages(times, listener.seen),
    }


# -- collector throughput ------------------------------------------------------


def _process_tree(pid: int) -> list[int]:
    """``pid`` and its children (the collector processes of ``CX_COLLECTOR_PROCESSES``)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return [pid, *(int(c) for c in children)]


def _listening(log_path: Path, start: int) -> int:
    """Collector processes that logged they listen, in ``log_path`` past byte ``start``."""
    with open(log_path, "rb") as log:
        log.seek(start)
        return log.read().count(b"collector listening on")


def _tree_cpu_s(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            total += cpu_seconds(pid)
        except OSError:
            pass
    return total


def run_collector(opts: BenchOptions, settings: Settings, bootstrap: str, log_dir: Path) -> dict:
    """Events/s the collector acknowledges for SDK-sized batches from ``opts.clients`` concurrent clients.

    ``settings.collector_processes`` collector processes serve the port
    (``CX_COLLECTOR_PROCESSES``); the rate per process is the rate divided by
    their number. CPU per event: user + system time of every collector
    process from the moment all of them listen to the last answer.
    """
    coll_settings = settings.model_copy(
        update={
            "topic_events": settings.topic_events + "-coll",
            "topic_triggers": settings.topic_triggers + "-coll",
            "topic_deadletter": settings.topic_deadletter + "-coll",
        }
    )
    ensure_topics(coll_settings, bootstrap)
    # Sent with their own timestamps, a day before now: inside the accepted window.
    messages, expected = make_traffic(opts.collector_events, opts.seed + 2, wall_ms() - DAY_MS - 3_600_000)
    bodies = [
        orjson.dumps({"batch": messages[i : i + REQUEST_MESSAGES]}) for i in range(0, len(messages), REQUEST_MESSAGES)
    ]
    port = free_port()
    log_path = log_dir / "collector.log"
    log_start = log_path.stat().st_size if log_path.exists() else 0
    proc = spawn("collector", child_env(coll_settings, bootstrap, collector_port=str(port), collector_metrics_port="0"), log_path)
    try:
        wait_for_port(port, settings.collector_host, 60, alive=lambda: proc.poll() is None)
        # The port answers once one process listens: wait for every one (each logs it).
        deadline = time.monotonic() + 60
        while _listening(log_path, log_start) < coll_settings.collector_processes:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise BenchError(f"collector: {coll_settings.collector_processes} processes did not all listen (see {log_path})")
            time.sleep(0.1)
        tree = _process_tree(proc.pid)
        cpu_before = _tree_cpu_s(tree)
        url = f"http://{settings.collector_host}:{port}"
        lock = threading.Lock()
        queue = list(reversed(bodies))
        failures: list[str] = []

        def run() -> None:
            poster = _Poster(url, 60)
            while True:
                with lock:
                    if not queue:
                        poster.close()
                        return
                    body = queue.pop()
                status, text = poster.post("/v1/batch", body)
                if status != 200:
                    failures.append(f"{status} {text}")

        started = time.perf_counter()
        threads = [threading.Thread(target=run) for _ in range(opts.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.perf_counter() - started
        cpu_s = _tree_cpu_s(tree) - cpu_before
    finally:
        stop_process(proc)
    if failures:
        raise BenchError(f"{len(failures)} collector requests failed: {failures[:3]}")
    return {
        "messages": len(messages),
        "requests": len(bodies),
        "clients": opts.clients,
        "seconds": round(seconds, 2),
        "events_per_s": round(len(messages) / seconds),
        "processes": coll_settings.collector_processes,
        "events_per_s_per_process": round(len(messages) / seconds / coll_settings.collector_processes),
        "cpu_us_per_event": round(cpu_s / len(messages) * 1e6, 1),
        "expected_dead_letters": expected.invalid,
    }
