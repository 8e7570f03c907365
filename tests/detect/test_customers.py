"""Customer value in the stream: orders counted once, the loyalty score formula, assist for loyal buyers."""

from __future__ import annotations

from pipeline.detect import Rules
from pipeline.detect.customers import loyalty_score, note_experience, note_order
from pipeline.detect.state import CustomerValue, decode_state
from pipeline.wire.records import visitor_key

from pipeline.detect.customer import customer_key, decode_customer
from tests.detect.helpers import DAY, HOUR, MIN, T0, Harness, add, identify, page, track

RULES = Rules()  # loyalty_full_revenue 500


def value(orders: int, revenue: float, last_order_ms: int | None, friction=(), support=()) -> CustomerValue:
    return CustomerValue(
        orders=orders, revenue=revenue, first_order_ms=last_order_ms, last_order_ms=last_order_ms,
        friction_ms=list(friction), support_ms=list(support),
    )  # fmt: skip


def test_new_visitor_scores_zero() -> None:
    assert loyalty_score(CustomerValue(), T0, RULES) == 0


def test_score_of_a_two_order_customer_45_days_after_the_last_order() -> None:
    # recency 20 x (180 - 45) / 150 = 18; frequency 2 x 12.5 = 25; monetary 30 x 150/500 = 9 -> 52
    assert loyalty_score(value(2, 150.0, T0 - 45 * DAY), T0, RULES) == 52


def test_one_order_however_large_stays_below_the_assist_threshold() -> None:
    # 20 + 12.5 + 30 = 62.5 -> 63 < 70
    assert loyalty_score(value(1, 5_000.0, T0 - DAY), T0, RULES) == 63


def test_recent_friction_and_support_lower_the_score_old_ones_do_not() -> None:
    v = value(2, 150.0, T0 - 45 * DAY, friction=[T0 - 2 * DAY], support=[T0 - 29 * DAY])
    assert loyalty_score(v, T0, RULES) == 37  # 52 - 5 - 10
    old = value(2, 150.0, T0 - 45 * DAY, friction=[T0 - 30 * DAY], support=[T0 - 31 * DAY])
    assert loyalty_score(old, T0, RULES) == 52  # 30 days or more ago: forgotten


def test_score_is_100_for_a_frequent_recent_big_spender_and_0_at_the_floor() -> None:
    assert loyalty_score(value(5, 800.0, T0 - 10 * DAY), T0, RULES) == 100
    # one order of 50, 200 days ago (recency 0): 12.5 + 3 = 15.5, minus 4 x 5 friction -> 0, not negative
    assert loyalty_score(value(1, 50.0, T0 - 200 * DAY, friction=[T0 - i * MIN for i in range(1, 5)]), T0, RULES) == 0


def test_same_order_id_counts_once() -> None:
    v = CustomerValue()
    assert note_order(v, "o-1", 40.0, T0 + HOUR) is True
    assert note_order(v, "o-1", 40.0, T0 + HOUR + MIN) is False  # resent under a new message id
    assert note_order(v, "o-2", 10.5, T0) is True  # out of order: first_order moves back
    assert (v.orders, v.revenue, v.first_order_ms, v.last_order_ms) == (2, 50.5, T0, T0 + HOUR)


def test_only_painful_support_moments_count() -> None:
    v = CustomerValue()
    assert note_experience(v, "Survey Answered", {"survey": "nps", "score": 9}, T0) is False
    assert note_experience(v, "Survey Answered", {"survey": "csat", "score": 2}, T0 + 1) is True
    assert note_experience(v, "Support Ticket Resolved", {"ticket_id": "t", "reopened": False}, T0 + 2) is False
    assert note_experience(v, "Support Ticket Opened", {"ticket_id": "t", "channel": "chat"}, T0 + 3) is True
    assert note_experience(v, "Payment Failed", {"checkout_id": "c"}, T0 + 4) is True
    assert (v.support_ms, v.friction_ms) == ([T0 + 1, T0 + 3], [T0 + 4])


def order_of(t_ms: int, order_id: str, total: float) -> dict:
    return track("Order Completed", t_ms, user="cust-1", order_id=order_id, total=total)


def test_loyal_buyer_abandoning_gets_assist_and_score_rows_are_written() -> None:
    h = Harness()
    # T0        identify cust-1 with consent
    # T0+1h..3h three orders of 200 each (no cart): value 3 orders, 600
    # T0+4h     add -> deadline T0+4h30m; bystander at T0+4h30m -> abandoned
    #           score 20 + 37.5 + 30 = 87.5 -> 88 >= 70 -> assist, no discount
    events = [identify(T0, "cust-1", True)]
    events += [order_of(T0 + i * HOUR, f"o-{i}", 200.0) for i in (1, 2, 3)]
    events += [add(T0 + 4 * HOUR), page(T0 + 4 * HOUR + 30 * MIN)]
    (trigger,) = h.each(*events)
    assert (trigger["action"], trigger["offer"], trigger["holdout"]) == ("assist", None, False)
    scores = [(r["scored_at_ms"], r["loyalty_score"], r["orders"]) for r in h.facts["cx.customer_scores"]]
    # identify: 0; order 1: 20 + 12.5 + 12 = 44.5 -> 45 (half up); order 2: 20 + 25 + 24 = 69;
    # order 3: 20 + 37.5 + 30 = 87.5 -> 88; the decision at T0+4h30m: still 88
    assert scores == [
        (T0, 0, 0),
        (T0 + 1 * HOUR, 45, 1),
        (T0 + 2 * HOUR, 69, 2),
        (T0 + 3 * HOUR, 88, 3),
        (T0 + 4 * HOUR + 30 * MIN, 88, 3),
    ]
    customer = decode_customer(h.table[customer_key("shop-a", "cust-1")])
    assert (customer.value.orders, customer.value.revenue) == (3, 600.0)
    assert customer.last_offer_ms == T0 + 4 * HOUR + 30 * MIN  # an assist counts for the cap
