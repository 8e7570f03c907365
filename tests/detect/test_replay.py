"""Determinism and crash safety: batching, drains and replays after a crash change nothing.

The stream below mixes six visitors in one partition, one to three events
per Kafka record, over three hours of event time:

- anon-a  identify cust-a (consent) T0, adds T0+1m and T0+3m       -> abandoned T0+33m with an offer,
          page T0+50m, order T0+70m                                -> offer_cancelled
- anon-b  add T0+2m, Checkout Started chk-b T0+5m, Payment Info T0+8m,
          order by checkout_id T0+12m                              -> nothing
- anon-c  add 2 T0+4m, remove all T0+6m (the emptied cart stays open),
          add T0+20m to it                                         -> abandoned T0+50m (anonymous: none)
- anon-d  identify cust-d (no consent) T0+6m30s, add to cart c-d T0+6m,
          Cart Viewed T0+25m                                       -> abandoned T0+55m (no consent: none)
- anon-e  pages T0, T0+10m, T0+45m (new session), T0+80m (new session),
          and the SDK resends the T0+10m page                     -> a duplicate, dropped
- anon-f  a page every 5 min up to T0+3h                           -> moves the watermark
"""

from __future__ import annotations

import pytest

from pipeline.detect import Rules

from tests.detect.helpers import MIN, T0, Harness, add, identify, order, page, track, without_wall_clock

RULES = Rules(allowed_lateness_ms=1_000, holdout_pct=0.0)


def stream() -> list[list[dict]]:
    """The records of the partition, in offset order."""
    events = [
        identify(T0, "cust-a", True, anon="anon-a"),
        add(T0 + 1 * MIN, "sku-1", anon="anon-a"),
        add(T0 + 3 * MIN, "sku-2", 20.0, anon="anon-a"),
        page(T0 + 50 * MIN, anon="anon-a"),
        order(T0 + 70 * MIN, anon="anon-a"),
        add(T0 + 2 * MIN, "sku-3", anon="anon-b"),
        track("Checkout Started", T0 + 5 * MIN, anon="anon-b", checkout_id="chk-b"),
        track("Payment Info Entered", T0 + 8 * MIN, anon="anon-b", checkout_id="chk-b"),
        order(T0 + 12 * MIN, anon="anon-b", checkout_id="chk-b"),
        add(T0 + 4 * MIN, "sku-4", quantity=2, anon="anon-c"),
        track("Product Removed", T0 + 6 * MIN, anon="anon-c", product_id="sku-4"),
        add(T0 + 20 * MIN, "sku-5", anon="anon-c"),
        add(T0 + 6 * MIN, "sku-6", anon="anon-d", cart_id="c-d"),
        identify(T0 + 6 * MIN + 30_000, "cust-d", False, anon="anon-d"),
        track("Cart Viewed", T0 + 25 * MIN, anon="anon-d", cart_id="c-d"),
        *(page(T0 + m * MIN, anon="anon-e") for m in (0, 10, 45, 80)),
        *(page(T0 + m * MIN, anon="anon-f") for m in range(0, 181, 5)),
    ]
    events.sort(key=lambda e: e["event_time_ms"])  # stable: each visitor keeps its order
    resent = next(e for e in events if e["anonymous_id"] == "anon-e" and e["event_time_ms"] == T0 + 10 * MIN)
    events.insert(events.index(resent) + 7, dict(resent))
    records, i, sizes = [], 0, (2, 3, 1)
    while i < len(events):
        size = sizes[len(records) % 3]
        records.append(events[i : i + size])
        i += size
    return records


def run(h: Harness, records: list[list[dict]]) -> Harness:
    for events in records:
        h.feed(*events)
    h.drain()
    return h


def by_id(triggers: list[dict]) -> dict[str, dict]:
    return {t["trigger_id"]: t for t in without_wall_clock(triggers)}


@pytest.fixture(scope="module")
def single() -> Harness:
    return run(Harness(RULES), stream())


def test_scenario_yields_the_expected_triggers(single: Harness) -> None:
    summary = [(t["kind"], t["cart_key"], t["event_time_ms"], t["action"]) for t in single.triggers]
    assert summary == [
        ("cart_abandoned", "anon-a#1", T0 + 33 * MIN, "offer"),
        ("cart_abandoned", "anon-c#1", T0 + 50 * MIN, "none"),
        ("cart_abandoned", "anon-d/c-d", T0 + 55 * MIN, "none"),
        ("offer_cancelled", "anon-a#1", T0 + 70 * MIN, "none"),
    ]
    assert len({r["session_id"] for r in single.rows if r["anonymous_id"] == "anon-e"}) == 3
    # anon-a's order at T0+70m recovers its abandonment (order_id o-<ms>, total 99.8)
    recovered = [(r["trigger_id"], r["order_time_ms"], r["revenue"]) for r in single.facts["cx.recoveries"]]
    assert recovered == [(single.triggers[0]["trigger_id"], T0 + 70 * MIN, 99.8)]
    assert sum(len(events) for events in stream()) == len(single.rows) + 1  # the resent page


def test_trigger_ids_and_offer_code_are_the_same_in_every_process(single: Harness) -> None:
    # Written down once: the ids hash the events alone (tenant, cart key, deadline; the
    # cancelled trigger's id), never a per-process salt, the wall clock or the batching.
    assert [(t["trigger_id"], (t["offer"] or {}).get("code"), t["ref_trigger_id"]) for t in single.triggers] == [
        ("01432458bb5725d04ecb6f2ff6440fa0", "CX-01432458BB", None),
        ("7b1635113d9407145b64643c00e082f7", None, None),
        ("0fdf55428b373321e70895e58b601217", None, None),
        ("0fe984074f5791be9e3fd4fef936d7d8", None, "01432458bb5725d04ecb6f2ff6440fa0"),
    ]


def test_trigger_ids_follow_their_written_recipe(single: Harness) -> None:
    # The ids above, computed here by hand from the rule in docs/detection.md: BLAKE2b with a
    # 16-byte digest over the parts, each followed by the unit separator 0x1f.
    #   cart_abandoned: ("cart_abandoned", tenant, cart key, deadline)
    #     anon-a's first cart is "anon-a#1"; its last activity was at T0+3m, so with the
    #     30-minute rule its deadline is T0+33m = 1_700_001_980_000 ms.
    #   offer_cancelled: ("offer_cancelled", tenant, the cancelled trigger's id)
    #   offer code: "CX-" and the first 10 hex digits of the trigger id, upper case.
    import hashlib

    def blake(*parts: str) -> str:
        return hashlib.blake2b(b"".join(p.encode() + b"\x1f" for p in parts), digest_size=16).hexdigest()

    abandoned = blake("cart_abandoned", "shop-a", "anon-a#1", "1700001980000")
    first, *_, cancelled = single.triggers
    assert T0 + 33 * MIN == 1_700_001_980_000
    assert first["trigger_id"] == abandoned
    assert first["offer"]["code"] == "CX-" + abandoned[:10].upper()
    assert cancelled["trigger_id"] == blake("offer_cancelled", "shop-a", abandoned)


def test_batch_splitting_and_drains_do_not_change_rows_or_triggers(single: Harness) -> None:
    records = stream()
    split = Harness(RULES)
    bounds = [round(i * len(records) / 7) for i in range(8)]
    for lo, hi in zip(bounds, bounds[1:]):
        batch_wall = records[hi - 1][-1]["event_time_ms"] + 900  # one wall clock per batch, as the agent does
        for events in records[lo:hi]:
            split.feed(*events, wall_ms=batch_wall)
        split.drain()
    assert without_wall_clock(split.triggers) == without_wall_clock(single.triggers)
    assert split.rows == single.rows
    assert split.facts == single.facts
    assert split.table == single.table


@pytest.mark.parametrize(("persisted", "lost", "committed"), [(10, 14, 7), (16, 25, 16), (5, 30, 0)])
def test_replay_after_crash_skips_persisted_visitors_and_gives_the_same_triggers(
    single: Harness, persisted: int, lost: int, committed: int
) -> None:
    records = stream()
    # Before the crash: records [0, persisted) fully stored (rows, triggers,
    # states); records [persisted, lost) processed but never drained: lost.
    before = run(Harness(RULES), records[:persisted])
    for events in records[persisted:lost]:
        before.feed(*events)
    # Restart: a new processor on the stored table replays from the last
    # committed offset, which may lag behind the stored states.
    after = run(Harness(RULES, table=dict(before.table), start_offset=committed), records[committed:])
    assert before.rows + after.rows == single.rows  # persisted visitors' records were skipped
    assert by_id(before.triggers) | by_id(after.triggers) == by_id(single.triggers)
    assert len(before.triggers) + len(after.triggers) == len(single.triggers)
    for table, rows in single.facts.items():  # derived rows: the same, each written once
        assert before.facts.get(table, []) + after.facts.get(table, []) == rows, table
    assert after.table == single.table


def test_replay_when_states_were_lost_after_emitting_repeats_the_same_trigger_ids(single: Harness) -> None:
    records = stream()
    # The agent emitted rows and triggers of records [0, 30) but crashed
    # before writing the states: the table still holds the states of [0, 12).
    first = run(Harness(RULES), records[:12])
    stale_table = dict(first.table)
    for events in records[12:30]:
        first.feed(*events)
    first.drain()
    after = run(Harness(RULES, table=stale_table, start_offset=12), records[12:])
    emitted = without_wall_clock(first.triggers) + without_wall_clock(after.triggers)
    assert {t["trigger_id"]: t for t in emitted} == by_id(single.triggers)  # same ids and content, some twice
    assert len(emitted) > len(single.triggers)
    assert after.table == single.table
