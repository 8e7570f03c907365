"""De-duplication on event_id: a duplicate produces no row and no state change."""

from __future__ import annotations

from pipeline.detect.state import decode_state
from pipeline.wire.records import visitor_key

from pipeline.detect.customer import STAGE_PREFIX
from tests.detect.helpers import MIN, T0, Harness, add, page

ANON_1 = visitor_key("shop-a", "anon-1", None)


def test_duplicated_event_id_changes_nothing() -> None:
    h = Harness()
    # T0       add 1 x sku-1
    # (retry)  the SDK sends the same Product Added again, in a later record
    h.each(add(T0))
    stored = h.table[ANON_1]
    h.feed(add(T0))
    out = h.stages.drain()
    visitor_states = {k: v for k, v in out.states.items() if not k.startswith(STAGE_PREFIX)}
    assert (out.rows, out.triggers, visitor_states) == ([], [], {})
    assert h.table[ANON_1] == stored
    # T0+30m   bystander: the cart holds 1 item, not 2
    (trigger,) = h.each(page(T0 + 30 * MIN))
    assert trigger["items"][0]["quantity"] == 1


def test_duplicate_inside_one_record_is_dropped() -> None:
    h = Harness()
    h.feed(add(T0), add(T0))
    assert len(h.stages.drain().rows) == 1


def test_dedup_memory_keeps_the_last_64_ids() -> None:
    h = Harness()
    # T0 .. T0+64ms: 65 distinct page views; the first id falls out of the window
    views = [page(T0 + i, anon="anon-1") for i in range(65)]
    h.each(*views)
    assert len(decode_state(h.table[ANON_1]).recent_ids) == 64
    h.each(views[1])  # still remembered: dropped
    h.each(views[0])  # forgotten: stored again (the bound is a memory trade-off)
    assert [r["event_id"] for r in h.rows[65:]] == [views[0]["event_id"]]
