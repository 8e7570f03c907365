"""What a correct pipeline produces for a message stream, computed in-process.

The stream goes through the collector's own ``normalize`` and partitioner,
the worker's id check and the same two stages the worker drives (``LocalStages``), one record
per message, with no crash, then every partition's watermark is carried past every deadline and
the customer stage decides what it holds. Fault-injection runs compare what the real pipeline stored
after its crashes with this.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from pipeline.collector.normalize import NormalizeRules, normalize
from pipeline.wire.partitioner import partition_for_key
from pipeline.detect import Rules
from pipeline.detect.ids import IdGate, judge_record
from pipeline.detect.stages import LocalStages
from pipeline.wire.records import visitor_key
from pipeline.settings import Settings

__all__ = ["Reference", "reference_run"]


@dataclass(frozen=True)
class Reference:
    events: int  # stored events (valid, de-duplicated)
    deadletters: int
    trigger_ids: dict[str, set[str]]  # kind -> trigger ids
    actions: dict[str, str]  # trigger id -> action (offer, assist, none)


def reference_run(messages: list[dict], tenant: str, settings: Settings, received_at_ms: int) -> Reference:
    rules = Rules.from_settings(settings)
    norm = NormalizeRules.from_settings(settings)
    n = settings.kafka_partitions
    table: dict[str, bytes] = {}
    stages = LocalStages(rules, table, partitions=n, route=lambda key: partition_for_key(key.encode(), n))
    gate = IdGate()  # ids across partitions, as the worker's lookup in cx.events
    events = deadletters = 0
    triggers: dict[str, set[str]] = defaultdict(set)
    actions: dict[str, str] = {}

    def collect() -> None:
        nonlocal events
        out = stages.drain()
        events += len(out.rows)
        table.update(out.states)
        for t in out.triggers:
            triggers[t["kind"]].add(t["trigger_id"])
            actions[t["trigger_id"]] = t["action"]

    for p in range(n):
        stages.device(p, restore=())
    for offset, msg in enumerate(messages):
        ev = normalize(msg, tenant=tenant, received_at_ms=received_at_ms, batch_sent_at=None, rules=norm)
        if not isinstance(ev, dict):
            deadletters += 1
            continue
        p = partition_for_key(visitor_key(tenant, ev.get("anonymous_id"), ev.get("user_id")).encode(), n)
        kept, conflicts = judge_record(gate, [ev])
        deadletters += len(conflicts)  # duplicate_id_conflict
        stages.process(p, offset, kept, received_at_ms)
        collect()
    for p in range(n):
        stages.tick(p, received_at_ms + 10 * 86_400_000, True)
    stages.finish(received_at_ms + 10 * 86_400_000)
    collect()
    return Reference(events, deadletters, dict(triggers), actions)
