"""Events of one request -> Kafka records: one EventBatch per partition, in arrival order.

Packing is the collector's main performance lever: the worker pays its
per-record costs (poll, decode, offset bookkeeping) once per batch instead
of once per event. The partition is Kafka's default partitioner applied to
the visitor key, so one visitor's events always share a partition and keep
their order, whichever record carries them.
"""

from __future__ import annotations

from pipeline.wire.partitioner import partition_for_key
from pipeline.wire.records import DeadLetter, encode_batch, visitor_key

__all__ = ["MAX_RECORD_BYTES", "Record", "dead_letter_records", "pack_events"]

# (topic, partition or None for the producer's partitioner, key, value)
Record = tuple[str, int | None, bytes | None, bytes]

# A partition's events are split into records of at most about this size:
# under the 1 MB message.max.bytes that Kafka brokers and clients default to.
MAX_RECORD_BYTES = 512 * 1024
# Upper bound of an event's encoded size besides its properties and traits;
# those two are counted twice because JSON escapes their quotes.
_EVENT_OVERHEAD = 1024


def _size_bound(event: dict) -> int:
    return _EVENT_OVERHEAD + 2 * (len(event["properties"]) + len(event["traits"]))


def pack_events(events: list[dict], *, topic: str, partitions: int) -> list[Record]:
    """One record per partition (more when it would pass MAX_RECORD_BYTES), events in order.

    The record key is the first event's visitor key; it is informational
    (the partition is explicit) but lets tools read who the record is about.
    """
    groups: dict[int, list[tuple[str, dict]]] = {}
    for event in events:
        key = visitor_key(event["tenant"], event["anonymous_id"], event["user_id"])
        partition = partition_for_key(key.encode("utf-8"), partitions)
        groups.setdefault(partition, []).append((key, event))
    records: list[Record] = []
    for partition, items in groups.items():
        chunk: list[dict] = []
        first_key = ""
        size = 0
        for key, event in items:
            bound = _size_bound(event)
            if chunk and size + bound > MAX_RECORD_BYTES:
                records.append((topic, partition, first_key.encode("utf-8"), encode_batch(chunk)))
                chunk, size = [], 0
            if not chunk:
                first_key = key
            chunk.append(event)
            size += bound
        records.append((topic, partition, first_key.encode("utf-8"), encode_batch(chunk)))
    return records


def dead_letter_records(dead_letters: list[DeadLetter], *, topic: str) -> list[Record]:
    """Dead letters as JSON records keyed by tenant (the producer picks the partition)."""
    return [
        (topic, None, (dl.tenant or "").encode("utf-8"), dl.model_dump_json().encode("utf-8"))
        for dl in dead_letters
    ]
