"""Send generated messages to a collector with the real Segment SDK (segment-analytics-python).

The SDK is used as a storefront's backend would use it: ``Client(write_key,
host=...)``, one call per message (``track``, ``page``, ``identify``, ...),
batching in its background thread to ``POST /v1/batch`` with basic auth.
Messages keep their simulated timestamps; pacing only decides *when* each
is handed to the SDK.

Nothing is dropped silently: the SDK reports an upload that failed for good
(after its retries) through ``on_error``, and refuses a message when its
queue is full or the message is over 32 KB; each of these counts as failed
in the report. The queue is kept from filling by waiting while it is long.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from segment.analytics import Client

__all__ = ["Pacer", "SendReport", "send"]

MAX_ERRORS_KEPT = 20


@dataclass
class SendReport:
    """``sent``: accepted by the collector; ``failed``: reported by the SDK as not delivered."""

    sent: int = 0
    failed: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)  # the first few failure reasons


@dataclass(frozen=True)
class Pacer:
    """When each message is due, in seconds after sending started (pure: no clock).

    ``speedup`` spreads messages by their event-time gaps divided by it (24 h
    of traffic at speedup 1440 take one minute); ``rate_per_s`` caps the
    rate. With both, the later of the two moments wins; with neither,
    everything is due at once.
    """

    rate_per_s: float | None = None
    speedup: float | None = None

    def __post_init__(self) -> None:
        if self.rate_per_s is not None and self.rate_per_s <= 0:
            raise ValueError("rate_per_s must be > 0")
        if self.speedup is not None and self.speedup <= 0:
            raise ValueError("speedup must be > 0")

    def due_s(self, index: int, ts_ms: int, first_ts_ms: int) -> float:
        due = 0.0
        if self.rate_per_s is not None:
            due = index / self.rate_per_s
        if self.speedup is not None:
            due = max(due, (ts_ms - first_ts_ms) / 1000 / self.speedup)
        return due


def _parse_ts(text: str) -> datetime:
    return datetime.fromisoformat(text)  # Python >= 3.11 reads the trailing Z


def _call(client: Client, msg: dict, timestamp: datetime) -> tuple[bool, dict]:
    """Hand one message to the SDK with the call its type names."""
    common = {
        "user_id": msg.get("userId"),
        "anonymous_id": msg.get("anonymousId"),
        "context": dict(msg.get("context") or {}),  # the SDK writes context.library into it
        "timestamp": timestamp,
        "message_id": msg.get("messageId"),
    }
    kind = msg["type"]
    properties = msg.get("properties") or {}
    if kind == "track":
        return client.track(event=msg["event"], properties=properties, **common)
    if kind == "page":
        return client.page(name=msg.get("name"), category=msg.get("category"), properties=properties, **common)
    if kind == "screen":
        return client.screen(name=msg.get("name"), category=msg.get("category"), properties=properties, **common)
    if kind == "identify":
        return client.identify(traits=msg.get("traits") or {}, **common)
    if kind == "group":
        return client.group(group_id=msg["groupId"], traits=msg.get("traits") or {}, **common)
    if kind == "alias":
        del common["anonymous_id"]
        return client.alias(previous_id=msg["previousId"], **common)
    raise ValueError(f"no SDK call for message type {kind!r}")


def send(
    messages: Iterable[dict],
    *,
    host: str,
    write_key: str,
    rate_per_s: float | None = None,
    speedup: float | None = None,
    clients: int = 1,
    upload_size: int = 250,
    gzip: bool = False,
    max_retries: int = 5,
    on_progress: Callable[[int], None] | None = None,
) -> SendReport:
    """Send ``messages`` (in order) through ``clients`` SDK clients; blocks until all are settled.

    A visitor's messages always go through the same client (chosen by a hash
    of its anonymousId or userId), so each visitor's order is kept with
    several clients too. ``on_progress`` receives the count handed over so
    far, about twice a second. Returns once every message was uploaded or
    reported failed by the SDK.
    """
    if clients < 1:
        raise ValueError("clients must be >= 1")
    pacer = Pacer(rate_per_s, speedup)
    report = SendReport()
    lock = threading.Lock()

    def on_error(error: Exception, batch: list) -> None:
        # Runs on an SDK consumer thread once a batch failed for good.
        with lock:
            report.failed += len(batch)
            if len(report.errors) < MAX_ERRORS_KEPT:
                report.errors.append(f"{type(error).__name__}: {error}")

    queue_size = max(10_000, upload_size * 40)
    pool = [
        Client(write_key, host=host, on_error=on_error, max_queue_size=queue_size, upload_size=upload_size,
               upload_interval=0.2, gzip=gzip, max_retries=max_retries)
        for _ in range(clients)
    ]
    started = time.monotonic()
    last_progress = started
    handed = 0
    first_ts_ms: int | None = None
    try:
        for index, msg in enumerate(messages):
            when = _parse_ts(msg["timestamp"])
            ts_ms = round(when.timestamp() * 1000)
            first_ts_ms = ts_ms if first_ts_ms is None else first_ts_ms
            delay = started + pacer.due_s(index, ts_ms, first_ts_ms) - time.monotonic()
            if delay > 0.002:
                time.sleep(delay)
            key = msg.get("anonymousId") or msg.get("userId") or ""
            client = pool[zlib.crc32(key.encode()) % clients]
            # Backpressure on the SDK's own queue (a public attribute): a full queue drops.
            while client.queue.qsize() > queue_size * 0.8:
                time.sleep(0.01)
            try:
                accepted, _ = _call(client, msg, when)
            except (AssertionError, RuntimeError, ValueError) as exc:  # SDK type checks, oversize
                accepted = False
                on_error(exc, [msg])
            else:
                if not accepted:
                    on_error(RuntimeError("SDK queue full"), [msg])
            handed += 1
            now = time.monotonic()
            if on_progress is not None and now - last_progress >= 0.5:
                last_progress = now
                on_progress(handed)
    finally:
        for client in pool:
            client.flush()  # returns once every queued message was uploaded or reported failed
            client.join()
    report.sent = handed - report.failed
    report.seconds = time.monotonic() - started
    if on_progress is not None:
        on_progress(handed)
    return report
