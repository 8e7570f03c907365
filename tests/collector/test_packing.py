"""Packing: one EventBatch record per partition, one visitor's events in order, bounded record size."""

from __future__ import annotations

import orjson

from pipeline.collector.packing import MAX_RECORD_BYTES, dead_letter_records, pack_events
from pipeline.wire.partitioner import partition_for_key
from pipeline.wire.records import dead_letter, decode_batch, visitor_key


def event(anon: str, n: int, props: str = "{}") -> dict:
    return {
        "event_id": f"{anon}-{n}",
        "tenant": "shop-a",
        "anonymous_id": anon,
        "user_id": None,
        "properties": props,
        "traits": "{}",
    }


def anon_on(partition: int, partitions: int, skip: set[str] = frozenset()) -> str:
    """An anonymous id whose visitor key lands on ``partition`` (found with the partitioner itself)."""
    i = 0
    while True:
        anon = f"anon-{i}"
        if anon not in skip and partition_for_key(visitor_key("shop-a", anon, None).encode(), partitions) == partition:
            return anon
        i += 1


def test_three_events_of_one_visitor_are_one_record_in_order() -> None:
    events = [event("anon-1", 1), event("anon-1", 2), event("anon-1", 3)]
    records = pack_events(events, topic="cx.events", partitions=4)
    assert len(records) == 1
    topic, partition, key, value = records[0]
    assert topic == "cx.events"
    assert partition == partition_for_key(b"shop-a\x1fanon-1", 4)
    assert key == b"shop-a\x1fanon-1"
    assert [e["event_id"] for e in decode_batch(value)] == ["anon-1-1", "anon-1-2", "anon-1-3"]


def test_visitors_on_one_partition_share_a_record_and_others_get_their_own() -> None:
    a = anon_on(0, 2)
    b = anon_on(0, 2, skip={a})
    c = anon_on(1, 2)
    events = [event(a, 1), event(c, 1), event(b, 1), event(a, 2)]
    records = pack_events(events, topic="t", partitions=2)
    by_partition = {p: [e["event_id"] for e in decode_batch(v)] for _, p, _, v in records}
    assert by_partition == {0: [f"{a}-1", f"{b}-1", f"{a}-2"], 1: [f"{c}-1"]}
    keys = {p: k for _, p, k, _ in records}
    assert keys[0] == f"shop-a\x1f{a}".encode()  # the first event's visitor key


def test_a_partition_too_large_for_one_record_is_split_in_order() -> None:
    # Each event's size bound is 1024 + 2 * (30_000 + 2) = 61_028 bytes; 512 KB / 61_028 -> 8 per record.
    big = orjson.dumps({"blob": "z" * 29_989}).decode()
    assert len(big) == 30_000
    events = [event("anon-1", n, big) for n in range(20)]
    records = pack_events(events, topic="t", partitions=1)
    sizes = [len(decode_batch(v)) for _, _, _, v in records]
    assert sizes == [8, 8, 4]
    assert [e["event_id"] for _, _, _, v in records for e in decode_batch(v)] == [f"anon-1-{n}" for n in range(20)]
    assert all(len(v) <= MAX_RECORD_BYTES for _, _, _, v in records)


def test_dead_letters_are_json_keyed_by_tenant_without_partition() -> None:
    dl = dead_letter(tenant="shop-a", reason="bad_json", detail="d", payload=b"{", received_at_ms=5)
    [(topic, partition, key, value)] = dead_letter_records([dl], topic="cx.deadletter")
    assert (topic, partition, key) == ("cx.deadletter", None, b"shop-a")
    assert orjson.loads(value) == {
        "dl_id": dl.dl_id,
        "tenant": "shop-a",
        "reason": "bad_json",
        "detail": "d",
        "payload": "{",
        "received_at_ms": 5,
        "source": "collector",
    }
