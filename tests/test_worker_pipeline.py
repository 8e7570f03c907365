"""The worker looks up a group's stored ids while the group before it is processed, in order, one lookup at a time."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

from pipeline.runtime.faust_adapter import create_app
from pipeline.runtime.worker import Worker, _Group
from pipeline.settings import Settings
from pipeline.wire.records import encode_batch
from tests.sinks.records import event

LOOKUP_S = 0.2
PROCESS_S = 0.2


class _Committed:
    async def start_of(self, topic: str, partition: int) -> int:
        return 0


def _worker(settings: Settings) -> Worker:
    worker = Worker(create_app(settings, "127.0.0.1:9"), settings, ch=None)  # no broker is contacted
    worker.committed = _Committed()  # type: ignore[assignment]
    return worker


def _record(settings: Settings, partition: int, offset: int, event_id: str) -> SimpleNamespace:
    value = encode_batch([event("shop-a", event_id, "2024-03-10 10:00:00", "Product Viewed", "s1")])
    message = SimpleNamespace(topic=settings.topic_events, partition=partition, offset=offset, value=value, timestamp=1.0)
    return SimpleNamespace(message=message)


def test_next_groups_lookup_runs_while_the_group_before_is_processed(fresh_settings: Settings) -> None:
    worker = _worker(fresh_settings)
    log: list[tuple[str, str, float]] = []

    async def lookup(decoded: list, known: object = None) -> dict:
        ids = ",".join(e["event_id"] for _, batch in decoded for e in batch)
        log.append(("lookup begins", ids, time.perf_counter()))
        await asyncio.sleep(LOOKUP_S)
        log.append(("lookup ends", ids, time.perf_counter()))
        return {}

    async def process(group: _Group) -> None:
        await group.lookup
        ids = ",".join(e["event_id"] for _, batch in group.decoded for e in batch)
        log.append(("processing begins", ids, time.perf_counter()))
        time.sleep(PROCESS_S)  # detection is CPU work: the event loop is not free during it
        log.append(("processing ends", ids, time.perf_counter()))

    worker._stored_fingerprints = lookup  # type: ignore[method-assign]
    worker._process_group = process  # type: ignore[method-assign]

    async def take_three_groups() -> float:
        started = time.perf_counter()
        for offset, event_id in enumerate(["a", "b", "c"]):
            await worker.handle([_record(fresh_settings, 0, offset, event_id)], ack=None)  # type: ignore[arg-type]
        await worker.settle()
        return time.perf_counter() - started

    took = asyncio.run(take_three_groups())
    steps = [(what, ids) for what, ids, _ in sorted(log, key=lambda entry: entry[2])]
    assert steps == [
        ("lookup begins", "a"), ("lookup ends", "a"),
        ("lookup begins", "b"), ("processing begins", "a"), ("processing ends", "a"), ("lookup ends", "b"),
        ("lookup begins", "c"), ("processing begins", "b"), ("processing ends", "b"), ("lookup ends", "c"),
        ("processing begins", "c"), ("processing ends", "c"),
    ]  # fmt: skip
    # one after the other it would take 3 x (lookup + processing) = 1.2 s
    assert took < 3 * (LOOKUP_S + PROCESS_S) - 0.3
    assert worker.stats["ids_s"] >= 3 * LOOKUP_S


def test_a_lookup_begun_before_a_window_closed_is_made_again(fresh_settings: Settings) -> None:
    worker = _worker(fresh_settings)
    asked: list[list[str]] = []

    async def lookup(decoded: list, known: object = None) -> dict:
        asked.append([e["event_id"] for _, batch in decoded for e in batch])
        return {}

    worker._stored_fingerprints = lookup  # type: ignore[method-assign]

    async def run() -> None:
        record = _record(fresh_settings, 0, 0, "a")
        decoded = [(record.message, [])]  # no event to detect: only the lookup is watched
        began = worker._gate_generation
        first = asyncio.ensure_future(worker._look_up(decoded, worker._gate))
        await first
        worker._gate_generation += 1  # what _flush does when it closes a window
        group = _Group([record], None, 0, 0, 0.0, [], decoded, [], first, began)  # type: ignore[arg-type]
        await worker._process_group(group)

    asyncio.run(run())
    assert len(asked) == 2
    assert worker.stats["lookups_again"] == 1
