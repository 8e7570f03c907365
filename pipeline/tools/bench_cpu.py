"""``python -m pipeline.tools.bench_cpu``: CPU time per event of the worker's pure path, with exact counts.

No Kafka, no ClickHouse, no Faust: the demo storefront's traffic
(``pipeline.tools.bench.make_traffic``) is packed into the collector's records
(``pipeline.tools.bench.collector_records``), closed by one clock event per
partition as ``cxstream bench`` does, and each record goes through what
``pipeline.runtime.worker.Worker`` does with it, stage by stage:

- **decode**: ``decode_batch_checked`` of each EventBatch record (as the worker);
- **ids**: the id check of ``Worker.handle`` (``pipeline.detect.ids``): each
  event's fingerprint, judged by an ``IdGate`` per batch against the ids
  stored so far (a dict stands in for the ClickHouse lookup, whose time is
  not measured);
- **detect**: ``PartitionProcessor.process`` of the record (one processor
  per partition, offsets in partition order), and the customer stage's
  handling of what it sent (``pipeline.detect.stages.LocalStages``);
- **states**: the drain of both stages, which serializes the changed
  visitor and customer states, after every ``BATCH_RECORDS`` records as at
  the end of a worker batch;
- **rows**: the drained events, facts and triggers handed to
  ``ClickHouseSink.add_*`` in ``Worker._flush``'s order (row tuples built by
  ``sinks.rows``);
- **trigger records**: ``encode_trigger`` and ``trigger_key`` of each trigger;
- **dead letters**: ``orjson.loads`` and ``add_deadletters`` of each dead-letter record;
- **insert**: the sink's ``flush`` into the embedded backend's insert
  serialization (``sinks.backend_chdb.insert_payload``: the Native block of
  the compiled codec, ``sinks.blocks``, or without it the Arrow stream, that
  chdb would receive), without writing it anywhere. The server backend
  sends the codec's same block through clickhouse-driver's connection
  (without the codec, the driver encodes while it talks to a server).

The wall clock the worker would pass is fixed (``RECEIVED_AT_MS``), so a run
is deterministic: ``run()`` returns a blake2b digest of every output in
order (each row of each table, each trigger record and key, each serialized
state), and the same arguments give the same digest on any machine. An
optimization of the pure path must leave it unchanged.

CPU time is ``time.thread_time`` summed per stage: this thread only (chdb,
opened to read the column types, runs threads of its own); the digest's
own work is excluded. The machine's load still matters: run it a few times
and keep the best.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import tempfile
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

import orjson

from pipeline import native

from pipeline.tools.bench import clock_messages, collector_records
from pipeline.tools.bench_common import CLOCK_TENANT, RECEIVED_AT_MS, make_traffic
from pipeline.detect.ids import IdGate, judge_record
from pipeline.wire.partitioner import partition_for_key
from pipeline.detect.customer import CUSTOMER_PREFIX, STAGE_PREFIX
from pipeline.detect.stages import LocalStages
from pipeline.detect.rules import Rules
from pipeline.wire.records import decode_batch_checked
from pipeline.settings import Settings
from pipeline.wire.triggers import encode_trigger, trigger_key
from sinks.sink import EVENT_ID_SET, EVENT_IDS_TABLE, ClickHouseSink

__all__ = ["BATCH_RECORDS", "PARTITIONS", "STAGES", "report", "run", "main"]

PARTITIONS = 4  # as ``cxstream bench``
# Records per worker batch (one drain and one flush each). The worker takes
# up to ``batch_max_records`` (250) records within ``sink_max_interval_ms``;
# 200 keeps the digests recorded when this benchmark was introduced (the
# serialized states depend on where batches end; rows and triggers do not).
BATCH_RECORDS = 200
STAGES = ("decode", "ids", "detect", "states", "rows", "trigger records", "dead letters", "insert")


@dataclass
class _Figures:
    cpu_s: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    rows: Counter = field(default_factory=Counter)  # by table
    triggers: Counter = field(default_factory=Counter)  # by kind
    states: int = 0  # serialized visitor states drained (one per changed visitor per batch)
    stage_states: int = 0  # the customer stage's states and the partitions' positions drained
    id_conflicts: int = 0  # events the id check took out (duplicate_id_conflict)
    insert_bytes: int = 0


class _Recorder:
    """A stand-in ``ClickHouse`` for the sink's ``flush``: serializes each insert and feeds the digest."""

    def __init__(self, digest: "hashlib._Hash", figures: _Figures, types: dict[str, dict[str, str]] | None) -> None:
        self.digest = digest
        self.figures = figures
        self.types = types

    def insert(self, table: str, columns: list[str], rows: list[tuple]) -> None:
        if self.types is not None:
            from sinks.backend_chdb import insert_payload

            started = time.thread_time()
            _fmt, data = insert_payload(columns, self.types[table], rows)
            self.figures.cpu_s["insert"] += time.thread_time() - started
            self.figures.insert_bytes += len(data)
        self.figures.rows[table] += len(rows)
        if table in (EVENT_IDS_TABLE, EVENT_ID_SET):
            return  # derived from the cx.events rows, which the digest has; digests stay comparable
        feed = self.digest.update
        feed(table.encode() + b"\n")
        for row in rows:
            # repr tells 1 from 1.0 and True and keeps every float digit.
            feed(repr(row).encode() + b"\n")


def _column_types() -> dict[str, dict[str, str]]:
    """Column types of every table of the migrated schema, read from a scratch chdb store."""
    from sinks.client import connect
    from sinks.migrate import migrate

    with tempfile.TemporaryDirectory(prefix="cx-bench-cpu-") as tmp:
        ch = connect(f"chdb://{tmp}/chdb")
        try:
            migrate(ch)
            tables = [name for (name,) in ch.execute("SELECT name FROM system.tables WHERE database = 'cx'")]
            return {
                f"cx.{t}": {row[0]: row[1] for row in ch.execute(f"DESCRIBE TABLE cx.{t}")} for t in tables
            }
        finally:
            ch.close()


def _records(events: int, seed: int, settings: Settings) -> tuple[list[tuple], list[bytes], dict]:
    """(EventBatch records as (partition, value), dead-letter values, ledger figures)."""
    messages, expected = make_traffic(events, seed)
    records, n_events, n_dead = collector_records(
        messages, settings, partitions=PARTITIONS, received_at_ms=RECEIVED_AT_MS
    )
    del messages
    if expected.settle_ms is not None:
        clock, _, _ = collector_records(
            clock_messages(expected.settle_ms, settings, PARTITIONS),
            settings,
            partitions=PARTITIONS,
            received_at_ms=RECEIVED_AT_MS,
            tenant=CLOCK_TENANT,
        )
        records += clock
    batches = [(partition, value) for topic, partition, _, value in records if topic == settings.topic_events]
    dead = [value for topic, _, _, value in records if topic == settings.topic_deadletter]
    ledger = {
        "messages": expected.messages,
        "events": n_events,
        "dead_letters": n_dead,
        "abandoned_carts": expected.abandoned_carts,
        "invalid": expected.invalid,
    }
    return batches, dead, ledger


def run(
    events: int, seed: int = 7, *, insert: bool = True, settings: Settings | None = None, worker_gc: bool = False
) -> dict:
    """Run about ``events`` demo events through the worker's pure path; figures, counts and digest.

    ``insert`` False leaves out the insert serialization (it needs chdb to
    read the column types). ``settings`` default to the environment's, as
    the worker's; the digest depends on the detection settings.
    ``worker_gc``: collect garbage as the worker does
    (``pipeline.runtime.worker.tune_gc``, for the rest of the process: the
    command line sets it); else Python's default, which walks the young
    objects every 700 allocations and made detection about a third dearer.
    """
    gc_used = "Python's default"
    if worker_gc:
        from pipeline.runtime.worker import GC_GEN0_THRESHOLD, tune_gc

        tune_gc()
        gc_used = f"the worker's (start-up frozen, young generation every {GC_GEN0_THRESHOLD:,} allocations)"
    settings = settings or Settings(_env_file=None)
    rules = Rules.from_settings(settings)
    batches, dead_letters, ledger = _records(events, seed, settings)
    figures = _Figures()
    digest = hashlib.blake2b(digest_size=16)
    recorder = _Recorder(digest, figures, _column_types() if insert else None)
    sink = ClickHouseSink(recorder)  # type: ignore[arg-type] - the recorder implements insert only
    cpu = figures.cpu_s
    tables: dict[str, bytes] = {}
    stages = LocalStages(rules, tables, partitions=PARTITIONS,
                         route=lambda key: partition_for_key(key.encode(), PARTITIONS))  # fmt: skip
    next_offset: dict[int, int] = {}
    decoded = 0
    clock = time.thread_time
    wall_ms = RECEIVED_AT_MS

    def emit() -> None:
        # Worker._flush, without the I/O.
        started = clock()
        outputs = [(0, stages.drain())]
        cpu["states"] += clock() - started
        started = clock()
        triggers = [t for _, out in outputs for t in out.triggers]
        for _, out in outputs:
            if out.rows:
                sink.add_events(out.rows)
            for table, facts in out.facts.items():
                sink.add_facts(table, facts)
        if triggers:
            sink.add_triggers(triggers)
        cpu["rows"] += clock() - started
        for _, out in outputs:  # what the flush stores (not timed: ClickHouse's part)
            for row in out.rows:
                stored_ids.setdefault((row["tenant"], row["event_id"]), row["payload_hash"])
        sink.flush()
        started = clock()
        sent = [(trigger_key(t), encode_trigger(t, settings)) for t in triggers]
        cpu["trigger records"] += clock() - started
        for trigger, (key, value) in zip(triggers, sent):
            figures.triggers[trigger["kind"]] += 1
            digest.update(b"trigger\n" + key + b"\n" + value + b"\n")
        for partition, out in outputs:
            for key, value in out.states.items():
                if key.startswith(STAGE_PREFIX):
                    figures.stage_states += 1
                else:
                    figures.states += 1
                tables[key] = value
                digest.update(b"state %d\n" % partition + key.encode() + b"\n" + value + b"\n")

    stored_ids: dict[tuple[str, str], int] = {}  # what cx.events holds: (tenant, event_id) -> fingerprint

    def judge(gate: IdGate, batch: list[dict]) -> list[dict]:
        # Worker._judge_ids, without the dead letters.
        kept, conflicts = judge_record(gate, batch)
        figures.id_conflicts += len(conflicts)
        return kept

    gc.collect()
    wall_started = time.perf_counter()
    for first in range(0, len(batches), BATCH_RECORDS):
        group = batches[first : first + BATCH_RECORDS]
        started = clock()
        decoded_group = [(partition, decode_batch_checked(value)) for partition, value in group]
        cpu["decode"] += clock() - started
        started = clock()
        ids = {(e["tenant"], e["event_id"]) for _, batch in decoded_group for e in batch}
        gate = IdGate({key: stored_ids[key] for key in ids if key in stored_ids})
        judged = [(partition, judge(gate, batch)) for partition, batch in decoded_group]
        cpu["ids"] += clock() - started
        for (partition, batch), (_, kept) in zip(decoded_group, judged):
            started = clock()
            offset = next_offset.get(partition, 0)
            stages.process(partition, offset, kept, wall_ms)
            cpu["detect"] += clock() - started
            next_offset[partition] = offset + 1
            decoded += len(batch)
        emit()
    stages.finish(wall_ms)  # the end of the data: the customer stage decides what it still holds
    emit()
    started = clock()
    sink.add_deadletters([orjson.loads(value) for value in dead_letters])
    cpu["dead letters"] += clock() - started
    sink.flush()
    wall_s = time.perf_counter() - wall_started

    pure = ("decode", "detect", "states", "rows")
    return {
        "seed": seed,
        "records": len(batches),
        "events": decoded,
        "dead_letters": len(dead_letters),
        "ledger": ledger,
        "rows": dict(sorted(figures.rows.items())),
        "triggers": dict(sorted(figures.triggers.items())),
        "states": figures.states,
        "stage_states": figures.stage_states,
        "customers": sum(1 for key in tables if key.startswith(CUSTOMER_PREFIX)),
        "visitors": sum(1 for key in tables if not key.startswith(STAGE_PREFIX)),
        "id_conflicts": figures.id_conflicts,
        "insert_bytes": figures.insert_bytes,
        "cpu_us_per_event": {stage: cpu[stage] / decoded * 1e6 for stage in STAGES if insert or stage != "insert"},
        "pure_us_per_event": sum(cpu[s] for s in pure) / decoded * 1e6,
        "wall_s": wall_s,
        "digest": digest.hexdigest(),
        "native": native.summary(),
        "gc": gc_used,
    }


def report(result: dict) -> str:
    lines = [
        f"records {result['records']:,}, events {result['events']:,} (ledger: {result['ledger']['events']:,} "
        f"+ {PARTITIONS} clock), dead letters {result['dead_letters']:,}",
        "rows: " + ", ".join(f"{t} {n:,}" for t, n in result["rows"].items()),
        "triggers: " + ", ".join(f"{k} {n:,}" for k, n in result["triggers"].items())
        + f" (ledger cart_abandoned {result['ledger']['abandoned_carts']:,})",
        f"states drained {result['states']:,} ({result['visitors']:,} visitors); customer stage "
        f"{result['stage_states']:,} ({result['customers']:,} customers)",
        "",
        f"{'stage':<18}{'CPU us/event':>14}",
    ]
    for stage, us in result["cpu_us_per_event"].items():
        lines.append(f"{stage:<18}{us:>14.2f}")
    lines += [
        f"{'decode..rows':<18}{result['pure_us_per_event']:>14.2f}",
        f"{'total':<18}{sum(result['cpu_us_per_event'].values()):>14.2f}",
        "",
        f"wall {result['wall_s']:.2f} s; digest {result['digest']}",
        f"native: {result['native']}",
        f"garbage collection: {result['gc']}",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-insert", action="store_true", help="skip the insert serialization (no chdb)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON instead of the report")
    args = parser.parse_args()
    result = run(args.events, args.seed, insert=not args.no_insert, worker_gc=True)
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(result) + b"\n")
    else:
        print(report(result))


if __name__ == "__main__":
    main()
