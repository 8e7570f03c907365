"""offers_daily, customers and the uplift query of docs/offers.md on both backends, against hand-computed numbers."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from pipeline.offers_report import UPLIFT_SQL
from sinks.client import ClickHouse
from sinks.sink import ClickHouseSink
from tests.sinks.records import event, ms, trigger

D1, D2 = date(2024, 3, 10), date(2024, 3, 11)
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def utc(iso: str) -> datetime:
    return datetime.fromisoformat(iso).replace(tzinfo=timezone.utc)


def abandoned(tid: str, at: str, *, action: str = "none", pct: int = 0, holdout: bool = False,
              experiment: str = "default", kind: str = "cart_abandoned") -> dict:  # fmt: skip
    offer = {"code": "CX-" + tid, "discount_pct": pct, "expires_at_ms": ms(at) + 86_400_000, "channel": "email"}
    return {
        **trigger("shop-a", tid, at, "k-" + tid, kind=kind),
        "action": action, "offer": offer if action == "offer" else None, "holdout": holdout, "experiment": experiment,
    }  # fmt: skip


def recovery(tid: str, trigger_at: str, order_at: str, revenue: float, *, holdout: bool = False,
             action: str = "offer", pct: int = 0, experiment: str = "default",
             kind: str = "cart_abandoned") -> dict:  # fmt: skip
    return {
        "tenant": "shop-a", "trigger_id": tid, "kind": kind, "trigger_time_ms": ms(trigger_at),
        "order_time_ms": ms(order_at), "customer_id": "u-x", "anonymous_id": "anon-x", "order_id": "o-" + tid,
        "revenue": revenue, "holdout": holdout, "experiment": experiment, "action": action, "discount_pct": pct,
    }  # fmt: skip


# Experiment "default", shop-a:
#   D1 treatment  t1 offer 10 %, t2 offer 15 %, t3 assist, t4 none (anonymous)
#   D1 holdout    t5, t6
#   D2 treatment  t7 offer 20 %
#   D1 checkout_friction: treatment f1 assist (recovered, 60), f2 assist; holdout f3: a
#     treatment of its own in the same experiment, on rows of its own kind
#   offer_cancelled and support_risk triggers do not start a decision: not counted
# Experiment "spring": D2 holdout t8.
TRIGGERS = [
    abandoned("t1", "2024-03-10 10:30:00", action="offer", pct=10),
    abandoned("t2", "2024-03-10 11:30:00", action="offer", pct=15),
    abandoned("t3", "2024-03-10 12:30:00", action="assist"),
    abandoned("t4", "2024-03-10 13:30:00"),
    abandoned("t5", "2024-03-10 14:30:00", holdout=True),
    abandoned("t6", "2024-03-10 23:59:59", holdout=True),
    abandoned("t7", "2024-03-11 08:00:00", action="offer", pct=20),
    abandoned("t8", "2024-03-11 09:00:00", holdout=True, experiment="spring"),
    abandoned("f1", "2024-03-10 15:00:00", action="assist", kind="checkout_friction"),
    abandoned("f2", "2024-03-10 16:00:00", action="assist", kind="checkout_friction"),
    abandoned("f3", "2024-03-10 17:00:00", holdout=True, kind="checkout_friction"),
    abandoned("c1", "2024-03-10 18:00:00", kind="offer_cancelled"),
    abandoned("s1", "2024-03-10 19:00:00", kind="support_risk", action="assist"),
]
# Recovered: t1 (100, cost 10), t3 (80, assist: cost 0), t5 (holdout, 50), and t7 whose
# order fell on D3 (200, cost 40) still counts on its trigger's day D2.
RECOVERIES = [
    recovery("t1", "2024-03-10 10:30:00", "2024-03-10 16:00:00", 100.0, pct=10),
    recovery("t3", "2024-03-10 12:30:00", "2024-03-11 12:00:00", 80.0, action="assist"),
    recovery("t5", "2024-03-10 14:30:00", "2024-03-12 09:00:00", 50.0, holdout=True, action="none"),
    recovery("t7", "2024-03-11 08:00:00", "2024-03-12 10:00:00", 200.0, pct=20),
    recovery("f1", "2024-03-10 15:00:00", "2024-03-10 15:20:00", 60.0, action="assist", kind="checkout_friction"),
]
AB, CF = "cart_abandoned", "checkout_friction"
# (day, experiment, kind, arm): triggers, offers, assists, recovered_orders, recovered_revenue, recovery_rate, cost
EXPECTED_OFFERS = {
    (D1, "default", AB, "treatment"): (4, 2, 1, 2, 180.0, 0.5, 10.0),
    (D1, "default", AB, "holdout"): (2, 0, 0, 1, 50.0, 0.5, 0.0),
    (D1, "default", CF, "treatment"): (2, 0, 2, 1, 60.0, 0.5, 0.0),
    (D1, "default", CF, "holdout"): (1, 0, 0, 0, 0.0, 0.0, 0.0),
    (D2, "default", AB, "treatment"): (1, 1, 0, 1, 200.0, 1.0, 40.0),
    (D2, "spring", AB, "holdout"): (1, 0, 0, 0, 0.0, 0.0, 0.0),
}
OFFERS_SQL = (
    "SELECT day, experiment, kind, arm, triggers, offers, assists, recovered_orders, recovered_revenue,"
    " recovery_rate, est_discount_cost FROM cx.offers_daily WHERE tenant = 'shop-a'"
)


def customer_event(tenant: str, eid: str, at: str, name: str | None, user: str | None, **kw: object) -> dict:
    return {**event(tenant, eid, at, name, "s1", **kw), "user_id": user}


def score(tenant: str, customer: str, visitor: str, at: str, value: int, orders: int) -> dict:
    return {"tenant": tenant, "customer_id": customer, "visitor_id": visitor, "scored_at_ms": ms(at),
            "loyalty_score": value, "orders": orders, "revenue": 0.0}  # fmt: skip


# shop-a u-1: page D1 10:00; order o1 D1 10:20 (revenue 100, total 110), the same order resent
#   10:21; order o2 D2 09:00 (total 50)   -> 2 orders, ltv 150, repeat buyer, last seen D2 09:00;
#   scores: 56 at D1 10:20 and 81 at D2 09:00 on its browser, 20 at D1 12:00 on a second device -> 81
# shop-a u-2: identify only D1 11:00     -> 0 orders, first order 1970, score 0
# shop-a: an order without a user id     -> not a customer
# shop-b u-1: order o1 (same id as shop-a's) D2 08:00, total 30; score 12 -> tenants stay apart
EVENTS = [
    customer_event("shop-a", "a-1", "2024-03-10 10:00:00", None, "u-1", call="page"),
    customer_event("shop-a", "a-2", "2024-03-10 10:20:00", "Order Completed", "u-1", props={"order_id": "o1", "revenue": 100, "total": 110}),
    customer_event("shop-a", "a-3", "2024-03-10 10:21:00", "Order Completed", "u-1", props={"order_id": "o1", "revenue": 100, "total": 110}),
    customer_event("shop-a", "a-4", "2024-03-11 09:00:00", "Order Completed", "u-1", props={"order_id": "o2", "total": 50}),
    customer_event("shop-a", "a-5", "2024-03-10 11:00:00", None, "u-2", call="identify"),
    customer_event("shop-a", "a-6", "2024-03-10 11:30:00", "Order Completed", None, props={"order_id": "o9", "total": 70}),
    customer_event("shop-b", "b-1", "2024-03-11 08:00:00", "Order Completed", "u-1", props={"order_id": "o1", "total": 30}),
]  # fmt: skip
SCORES = [
    score("shop-a", "u-1", "anon-s1", "2024-03-11 09:00:00", 81, 2),
    score("shop-a", "u-1", "anon-s1", "2024-03-10 10:20:00", 56, 1),  # older, written later: the version wins
    score("shop-a", "u-1", "anon-s9", "2024-03-10 12:00:00", 20, 0),
    score("shop-b", "u-1", "anon-b", "2024-03-11 08:00:00", 12, 1),
]
EXPECTED_CUSTOMERS = {
    ("shop-a", "u-1"): (utc("2024-03-10 10:20:00"), 2, 150.0, 1, utc("2024-03-11 09:00:00"), 81),
    ("shop-a", "u-2"): (EPOCH, 0, 0.0, 0, utc("2024-03-10 11:00:00"), 0),
    ("shop-b", "u-1"): (utc("2024-03-11 08:00:00"), 1, 30.0, 0, utc("2024-03-11 08:00:00"), 12),
}
CUSTOMERS_SQL = (
    "SELECT tenant, customer_id, first_order_at, orders, ltv, repeat_buyer, last_seen_at, loyalty_score"
    " FROM cx.customers"
)


def write(ch: ClickHouse, triggers=(), recoveries=(), events=(), scores=()) -> None:  # noqa: ANN001
    sink = ClickHouseSink(ch)
    sink.add_triggers(triggers)
    sink.add_events(events)
    if recoveries:
        sink.add_facts("cx.recoveries", recoveries)
    for row in scores:  # one insert each, so that the older score really is written later
        sink.add_facts("cx.customer_scores", [row])
        sink.flush()
    sink.flush()


def offers(ch: ClickHouse) -> dict:
    return {(r[0], r[1], r[2], r[3]): tuple(r[4:]) for r in ch.execute(OFFERS_SQL)}


def customers(ch: ClickHouse) -> dict:
    return {(r[0], r[1]): tuple(r[2:]) for r in ch.execute(CUSTOMERS_SQL)}


def test_offers_daily_matches_hand_computed_values(ch_backend: ClickHouse) -> None:
    write(ch_backend, TRIGGERS, RECOVERIES)
    got = offers(ch_backend)
    assert set(got) == set(EXPECTED_OFFERS)
    for key, expected in EXPECTED_OFFERS.items():
        assert got[key][:4] == expected[:4], key
        assert got[key][4:] == pytest.approx(expected[4:]), key


def test_replayed_triggers_and_recoveries_leave_offers_daily_unchanged(ch_backend: ClickHouse) -> None:
    write(ch_backend, TRIGGERS, RECOVERIES)
    before = offers(ch_backend)
    write(ch_backend, TRIGGERS[2:], RECOVERIES[1:])
    write(ch_backend, TRIGGERS, RECOVERIES)
    assert offers(ch_backend) == before


def big_experiment() -> tuple[list[dict], list[dict]]:
    """Experiment "big", D1: 40 treated cart_abandoned triggers, 12 recovered; 30 held out, 6 recovered."""
    triggers, recoveries = [], []
    for i in range(70):
        tid, at, holdout = f"b{i}", f"2024-03-10 {i // 6:02d}:{i % 6 * 10:02d}:00", i >= 40
        triggers.append(abandoned(tid, at, action="none" if holdout else "offer", pct=10, holdout=holdout,
                                  experiment="big"))  # fmt: skip
        if i < 12 or 40 <= i < 46:
            recoveries.append(recovery(tid, at, "2024-03-12 09:00:00", 10.0, holdout=holdout, experiment="big"))
    return triggers, recoveries


def test_uplift_query_gives_the_difference_of_rates_with_a_95_ci(ch_backend: ClickHouse) -> None:
    big_triggers, big_recoveries = big_experiment()
    write(ch_backend, TRIGGERS + big_triggers, RECOVERIES + big_recoveries)
    columns, rows = ch_backend.query(UPLIFT_SQL)
    got = {(r[0], r[1]): dict(zip(columns, r)) for r in rows}
    assert set(got) == {("shop-a", "big"), ("shop-a", "default"), ("shop-a", "spring")}
    # big: treatment 12 of 40 recovered (0.3), holdout 6 of 30 (0.2): uplift 0.1,
    # se = sqrt(0.3 x 0.7 / 40 + 0.2 x 0.8 / 30) = sqrt(0.00525 + 0.0053333) = sqrt(0.0105833) = 0.102875
    b = got[("shop-a", "big")]
    assert (b["n_treatment"], b["n_holdout"]) == (40, 30)
    assert (b["rate_treatment"], b["rate_holdout"], b["uplift"]) == pytest.approx((0.3, 0.2, 0.1))
    assert b["se"] == pytest.approx(0.102875, abs=1e-6)
    assert (b["ci95_low"], b["ci95_high"]) == pytest.approx((0.1 - 1.96 * 0.102875, 0.1 + 1.96 * 0.102875), abs=1e-5)
    # default: only cart_abandoned (the checkout_friction assists f1-f3 are left out):
    # treatment 3 of 5 recovered (0.6), holdout 1 of 2 (0.5): uplift 0.1, but under 30
    # triggers per arm there is no interval
    d = got[("shop-a", "default")]
    assert (d["n_treatment"], d["n_holdout"]) == (5, 2)
    assert (d["rate_treatment"], d["rate_holdout"], d["uplift"]) == pytest.approx((0.6, 0.5, 0.1))
    assert (d["se"], d["ci95_low"], d["ci95_high"]) == (None, None, None)
    # spring: no treated trigger yet, 0 of 1 held out: no treatment rate, no uplift, no interval
    s = got[("shop-a", "spring")]
    assert (s["n_treatment"], s["n_holdout"], s["rate_treatment"], s["rate_holdout"]) == (0, 1, None, 0.0)
    assert (s["uplift"], s["se"], s["ci95_low"], s["ci95_high"]) == (None, None, None, None)


def test_customers_view_matches_hand_computed_values(ch_backend: ClickHouse) -> None:
    write(ch_backend, events=EVENTS, scores=SCORES)
    got = customers(ch_backend)
    assert set(got) == set(EXPECTED_CUSTOMERS)
    for key, (first, orders, ltv, repeat, seen, loyalty) in EXPECTED_CUSTOMERS.items():
        assert got[key] == (first, orders, pytest.approx(ltv), repeat, seen, loyalty), key
    # a replay (events and scores again) changes nothing
    write(ch_backend, events=EVENTS, scores=SCORES)
    assert customers(ch_backend) == got


def test_offers_page_shows_the_tested_uplift_query() -> None:
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "offers.md").read_text(encoding="utf-8")
    assert "```sql\n" + UPLIFT_SQL + "\n```" in doc
