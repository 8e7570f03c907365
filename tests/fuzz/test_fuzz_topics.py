"""Fuzzing the worker through its topics: any record on ``cx.events`` or ``cx.deadletter`` is accounted for.

Records are produced straight onto the running pipeline's topics, past the
collector: arbitrary bytes, arbitrary JSON, EventBatch records whose events
have optional fields of any type or required fields broken, records nested
around every depth limit, and dead letters of every shape. After each
example a sentinel record (one good event) goes onto the same partition.
At the end, with everything committed, every record is checked against what
the worker must have done with it:

- a record that is not an EventBatch (``decode_batch_checked`` refuses it):
  one dead letter naming its partition and offset;
- an EventBatch: each event stored once in ``cx.events``, or dead-lettered
  (naming the record, or its event index), never both, never neither;
- a record on the dead-letter topic: stored as the dead letter it is, or as
  a ``processing_error`` dead letter naming its partition and offset;
- every sentinel stored exactly once, and the worker is the process started
  with the pipeline.
"""

from __future__ import annotations

import time
from typing import Iterator

import orjson
import pytest
from confluent_kafka import Producer
from hypothesis import given
from hypothesis import strategies as st

from pipeline.wire.records import BadRecord, DeadLetter, Event, decode_batch_checked
from tests.fixtures.report import tell
from tests.fuzz.conftest import RUN_LENGTHS, FuzzPipeline, Ledger, fuzz_settings, start_fuzz_pipeline
from tests.fuzz.strategies import deadletter_records, letters_id, topic_records, valid_event

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def fuzz(kafka: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzPipeline]:
    yield from start_fuzz_pipeline(kafka, tmp_path_factory.mktemp("fuzz-topics"), "topics", ["rec", "sentinel"])


class Sender:
    """Produces records and remembers where each landed (partition, offset)."""

    def __init__(self, fuzz: FuzzPipeline) -> None:
        self.producer = Producer({"bootstrap.servers": fuzz.running.bootstrap, "linger.ms": 0})
        self.fuzz = fuzz

    def send(self, topic: str, value: bytes | None, partition: int, copies: int = 1) -> list[tuple[int, int]]:
        """``copies`` times the same record, back to back (as a producer's retry would), then wait for them."""
        landed: list = []
        for _ in range(copies):
            self.producer.produce(topic, value, partition=partition, on_delivery=lambda err, msg: landed.append((err, msg)))
        self.producer.flush(30)
        assert len(landed) == copies and all(err is None for err, _ in landed), landed
        return [(msg.partition(), msg.offset()) for _, msg in landed]

    def close(self) -> None:
        """Drop the producer now (a producer left for the garbage collector outlives the broker and logs)."""
        self.producer.flush(30)
        self.producer = None


def _dead_letters(fuzz: FuzzPipeline) -> list[tuple]:
    return fuzz.query("SELECT tenant, dl_id, reason, source, detail, payload FROM cx.deadletters FINAL")


@pytest.mark.parametrize("run", RUN_LENGTHS)
def test_every_record_on_the_topics_is_stored_or_dead_lettered_and_the_worker_goes_on(
    fuzz: FuzzPipeline, run: str, request: pytest.FixtureRequest
) -> None:
    s = fuzz.running.settings
    assert Event.model_validate(valid_event("t", "e", 1)).event_id == "e"  # the mutations start from a real record
    tenant = fuzz.keys[fuzz.key("rec")]
    sentinel_tenant = fuzz.keys[fuzz.key("sentinel")]
    sender = Sender(fuzz)
    ledger = Ledger()
    refused: list[tuple[int, int]] = []  # events-topic records that are not EventBatch records
    refused_ids: set[str] = set()  # the event ids in those records: none may be stored
    accepted: list[tuple[int, int, list[str]]] = []  # (partition, offset, event ids) of EventBatch records
    foreign: list[tuple[int, int]] = []  # dead-letter-topic records that are not dead letters
    letters: set[tuple[str, str]] = set()  # (tenant, dl_id) of the valid dead letters produced

    @fuzz_settings(run, bounded_examples=60)
    @given(data=st.data(), to_deadletters=st.booleans(), partition=st.integers(0, s.kafka_partitions - 1),
           copies=st.sampled_from([1, 1, 1, 2, 3]))
    def example(data: st.DataObject, to_deadletters: bool, partition: int, copies: int) -> None:
        now_ms = time.time_ns() // 1_000_000
        if to_deadletters:
            value = data.draw(deadletter_records(now_ms))
            where = sender.send(s.topic_deadletter, value, partition, copies)
            try:
                dl = DeadLetter.model_validate_json(value or b"")
            except ValueError:
                foreign.extend(where)
            else:
                letters.add((dl.tenant or "", dl.dl_id))
        else:
            value, ids = data.draw(topic_records(tenant, now_ms))
            where = sender.send(s.topic_events, value, partition, copies)
            try:
                decode_batch_checked(value)
            except BadRecord:
                refused.extend(where)
                refused_ids.update(ids)
            else:
                accepted.extend((p, o, ids) for p, o in where)
        ledger.records += copies
        ledger.examples += 1
        sid = letters_id("fzsentinel")
        sender.send(s.topic_events, orjson.dumps({"events": [valid_event(sentinel_tenant, sid, now_ms)]}), partition)
        ledger.records += 1
        ledger.sentinels.append(sid)

    example()
    sender.close()
    fuzz.drain()

    rows = fuzz.query(f"SELECT event_id, count() FROM cx.events FINAL WHERE tenant = '{sentinel_tenant}' GROUP BY event_id")
    stored_sentinels = dict((i, n) for i, n in rows)
    lost = sorted(set(ledger.sentinels) - set(stored_sentinels))
    assert lost == [], f"{len(lost)} of {len(ledger.sentinels)} sentinel events not stored"
    assert set(stored_sentinels.values()) == {1}

    dead = _dead_letters(fuzz)
    details = [detail for *_, detail, _ in dead]

    def naming(prefix: str) -> list[str]:
        return [d for d in details if d.startswith(prefix)]

    for p, o in refused:
        found = naming(f"{s.topic_events}[{p}]@{o}: ")
        assert len(found) == 1, f"record {p}@{o} that is not an EventBatch: {len(found)} dead letters"
    rows = fuzz.query(f"SELECT event_id, count() FROM cx.events FINAL WHERE tenant = '{tenant}' GROUP BY event_id")
    mine = {i for *_, ids in accepted for i in ids}
    stored = {i: n for i, n in rows if i in mine or i in refused_ids}  # this test's (the module runs it twice)
    assert sorted(set(stored) & refused_ids) == [], "events of records the worker must refuse whole were stored"
    rejected_rows = [payload for _, _, reason, _, _, payload in dead if reason == "store_rejected"]
    for p, o, ids in accepted:
        whole = naming(f"{s.topic_events}[{p}]@{o}: ")
        for index, event_id in enumerate(ids):
            outcomes = stored.get(event_id, 0) + len(whole) + len(naming(f"{s.topic_events}[{p}]@{o} event {index}: "))
            outcomes += sum(f'"{event_id}"' in payload for payload in rejected_rows)
            assert outcomes == 1, f"event {event_id} of record {p}@{o}: {outcomes} outcomes (stored {stored.get(event_id, 0)})"
    for p, o in foreign:
        found = naming(f"{s.topic_deadletter}[{p}]@{o} is not a dead letter")
        assert len(found) == 1, f"record {p}@{o} on the dead-letter topic: {len(found)} dead letters"
    kept = {(t, i) for t, i, *_ in dead}
    assert letters <= kept, f"dead letters not stored: {sorted(letters - kept)[:5]}"
    fuzz.assert_alive()
    tell(request.config, ledger.summary(
        f"fuzz topics [{run}]", refused=len(refused), batches=len(accepted),
        events=sum(len(ids) for *_, ids in accepted), stored=len(stored), foreign_deadletters=len(foreign),
        deadletters=len(letters), dead_rows=len(dead)))


def test_a_visitor_whose_events_move_to_the_other_partition_has_every_event_stored(fuzz: FuzzPipeline) -> None:
    """Found by the long fuzz run: events of one visitor on both partitions were dropped silently.

    The state the other partition's processor loads from the worker's table
    carries the first partition's offset; a record at a lower offset was
    taken for a replay (pipeline.detect.processor, tests/detect/test_partition_move.py).
    """
    s = fuzz.running.settings
    tenant = fuzz.keys[fuzz.key("sentinel")]
    sender = Sender(fuzz)
    ends = fuzz.running.offsets()
    behind = ends[f"{s.topic_events}[1]"][1] - ends[f"{s.topic_events}[0]"][1]
    anon = letters_id("fzmove")
    now_ms = time.time_ns() // 1_000_000
    ids = []
    for _ in range(max(behind, 0) + 3):  # partition 0's offset ends past partition 1's
        event = {**valid_event(tenant, letters_id("fzmoved"), now_ms), "anonymous_id": anon}
        sender.send(s.topic_events, orjson.dumps({"events": [event]}), 0)
        ids.append(event["event_id"])
    fuzz.drain()  # the visitor's state, stored with partition 0's offset
    moved = {**valid_event(tenant, letters_id("fzmoved"), now_ms + 1), "anonymous_id": anon}
    sender.send(s.topic_events, orjson.dumps({"events": [moved]}), 1)
    ids.append(moved["event_id"])
    sender.close()
    fuzz.drain()
    rows = fuzz.query(f"SELECT event_id FROM cx.events FINAL WHERE tenant = '{tenant}' AND anonymous_id = '{anon}'")
    assert sorted(r[0] for r in rows) == sorted(ids)
