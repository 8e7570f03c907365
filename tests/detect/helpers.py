"""Builders for detection tests: events as the worker sees them, and a fake agent.

``Harness`` plays the events agent: it feeds records to a
``PartitionProcessor`` at increasing offsets, and on ``drain()`` keeps the
rows and triggers and writes the changed states to its table (a dict), as
the agent does after ClickHouse and Kafka acknowledged them.
"""

from __future__ import annotations

import orjson

from pipeline.detect import Rules
from pipeline.detect.stages import LocalStages

T0 = 1_700_000_000_000  # 2023-11-14 22:13:20 UTC
MIN = 60_000
HOUR = 60 * MIN
DAY = 24 * HOUR

# Exact rules for boundary tests: no lateness, nobody held out.
EXACT = Rules(allowed_lateness_ms=0, holdout_pct=0.0)


def ev(
    name: str | None,
    t_ms: int,
    *,
    anon: str | None = "anon-1",
    user: str | None = None,
    type: str = "track",
    props: dict | None = None,
    traits: dict | None = None,
    hint: str | None = None,
    event_id: str | None = None,
    tenant: str = "shop-a",
) -> dict:
    """One event dict with the fields of ``schemas/event.avsc``."""
    return {
        "event_id": event_id or f"{anon or user}:{name or type}:{t_ms}",
        "tenant": tenant,
        "type": type,
        "event": name,
        "anonymous_id": anon,
        "user_id": user,
        "event_time_ms": t_ms,
        "received_at_ms": t_ms + 40,
        "sent_at_ms": t_ms + 20,
        "session_hint": hint,
        "page_path": "/",
        "page_url": None,
        "page_referrer": None,
        "user_agent": None,
        "locale": None,
        "ip_hash": None,
        "properties": orjson.dumps(props or {}).decode(),
        "traits": orjson.dumps(traits or {}).decode(),
    }


def page(t_ms: int, anon: str = "anon-9", hint: str | None = None) -> dict:
    """A page view, by default of a bystander: for anon-1 it only moves the watermark."""
    return ev(None, t_ms, anon=anon, type="page", hint=hint)


def track(name: str, t_ms: int, *, anon: str = "anon-1", user: str | None = None, **props: object) -> dict:
    return ev(name, t_ms, anon=anon, user=user, props=props)


def add(
    t_ms: int,
    product_id: str = "sku-1",
    price: float = 49.9,
    quantity: int = 1,
    *,
    anon: str = "anon-1",
    **props: object,
) -> dict:
    """``Product Added`` in EUR; the id names the product so two adds may share a millisecond."""
    props = {"product_id": product_id, "price": price, "quantity": quantity, "currency": "EUR", **props}
    return ev("Product Added", t_ms, anon=anon, props=props, event_id=f"{anon}:add:{product_id}:{t_ms}")


def identify(t_ms: int, user: str, consent: bool, anon: str = "anon-1") -> dict:
    return ev(None, t_ms, anon=anon, user=user, type="identify", traits={"consent_marketing": consent})


def order(t_ms: int, *, anon: str = "anon-1", **props: object) -> dict:
    return track("Order Completed", t_ms, anon=anon, order_id=f"o-{t_ms}", total=99.8, **props)


class _Device:
    """The harness's device partition, as tests poke it: ticks go through both stages."""

    def __init__(self, stages: LocalStages) -> None:
        self._stages = stages

    def tick(self, wall_ms: int, caught_up: bool) -> None:
        self._stages.tick(0, wall_ms, caught_up)

    @property
    def watermark_ms(self) -> int | None:
        return self._stages.device(0).watermark_ms


class Harness:
    """A fake events agent around one partition of both stages (``LocalStages``) and a dict table.

    Identified visitors' cart decisions go through the customer stage, as in the worker.
    """

    def __init__(self, rules: Rules = EXACT, table: dict[str, bytes] | None = None, start_offset: int = 0) -> None:
        self.table: dict[str, bytes] = {} if table is None else table
        self.stages = LocalStages(rules, self.table)
        self.stages.device(0)
        self.proc = _Device(self.stages)
        self.offset = start_offset
        self.rows: list[dict] = []
        self.triggers: list[dict] = []
        self.facts: dict[str, list[dict]] = {}  # derived rows by table, as the sink receives them

    def feed(self, *events: dict, wall_ms: int | None = None) -> None:
        """One Kafka record holding ``events``; the wall clock defaults to live traffic."""
        wall = wall_ms if wall_ms is not None else max(e["event_time_ms"] for e in events) + 500
        self.stages.process(0, self.offset, list(events), wall)
        self.offset += 1

    def each(self, *events: dict) -> list[dict]:
        """Feed each event as its own record, then drain; returns the new triggers."""
        for event in events:
            self.feed(event)
        return self.drain()

    def drain(self) -> list[dict]:
        out = self.stages.drain()
        self.rows += out.rows
        self.triggers += out.triggers
        for table, rows in out.facts.items():
            self.facts.setdefault(table, []).extend(rows)
        self.table.update(out.states)
        return out.triggers


def without_wall_clock(triggers: list[dict]) -> list[dict]:
    """Triggers minus ``emitted_at_ms``, the one field a replay may change."""
    return [{k: v for k, v in t.items() if k != "emitted_at_ms"} for t in triggers]
