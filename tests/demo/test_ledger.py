"""Ground-truth bookkeeping: a cart's outcome from its emitted steps, timestamps, the seeded random."""

from __future__ import annotations

import pytest

from pipeline.demo.ledger import CartTrace, Tally
from pipeline.demo.visit import SeededRandom, iso_ms

MIN = 60_000


def test_cart_ordered_within_the_visit_is_not_abandoned() -> None:
    # 0:00 add (1 item), 0:04 cart viewed, 0:09 order
    cart = CartTrace("c1", steps=[(0, 1), (4 * MIN, 1)], order_ms=9 * MIN)
    assert cart.outcome() == (False, None)


def test_cart_left_with_items_is_abandoned_30_minutes_after_its_last_activity() -> None:
    # 0:00 add, 0:02 add (2 items), nothing after: abandoned at 0:32
    cart = CartTrace("c1", steps=[(0, 1), (2 * MIN, 2)])
    assert cart.outcome() == (True, 32 * MIN)


def test_cart_ordered_on_a_later_visit_was_abandoned_then_recovered() -> None:
    # 0:00 add; back at 0:50 (cart viewed); order at 0:55: abandoned at 0:30, the order recovers it
    cart = CartTrace("c1", steps=[(0, 1), (50 * MIN, 1)], order_ms=55 * MIN)
    assert cart.outcome() == (True, 30 * MIN)
    tally = Tally()
    tally.close_cart(cart)
    assert (tally.carts, tally.abandoned, tally.recovered, tally.settle_ms) == (1, 1, 1, 30 * MIN)


def test_emptied_cart_is_never_abandoned() -> None:
    # 0:00 add, 0:03 remove the only item: holds nothing, so no abandonment
    cart = CartTrace("c1", steps=[(0, 1), (3 * MIN, 0)])
    assert cart.outcome() == (False, None)
    tally = Tally()
    tally.close_cart(cart)
    assert (tally.carts, tally.abandoned, tally.emptied) == (1, 0, 1)


def test_cart_whose_first_add_was_cut_at_span_end_is_not_counted() -> None:
    tally = Tally()
    tally.close_cart(CartTrace("c1"))
    assert tally.carts == 0


def test_a_planned_gap_near_the_threshold_is_refused() -> None:
    # 0:00 add, 0:29 cart viewed: a pipeline rounding differently could disagree, so the plan must never do it
    with pytest.raises(AssertionError, match="too close"):
        CartTrace("c1", steps=[(0, 1), (29 * MIN, 1)]).outcome()


@pytest.mark.parametrize(
    ("ts_ms", "text"),
    [
        (0, "1970-01-01T00:00:00.000Z"),
        (1_767_225_600_000, "2026-01-01T00:00:00.000Z"),
        (1_767_225_600_000 + 23 * 3_600_000 + 59 * MIN + 59_999, "2026-01-01T23:59:59.999Z"),
        (1_709_164_800_007, "2024-02-29T00:00:00.007Z"),
    ],
)
def test_iso_timestamps_have_milliseconds_and_z(ts_ms: int, text: str) -> None:
    assert iso_ms(ts_ms) == text


def test_seeded_random_stays_in_bounds_and_repeats() -> None:
    a, b = SeededRandom(3), SeededRandom(3)
    draws = [a.randint(2, 5) for _ in range(2_000)]
    assert draws == [b.randint(2, 5) for _ in range(2_000)]
    assert set(draws) == {2, 3, 4, 5}
    assert {a.choice("xyz") for _ in range(300)} == {"x", "y", "z"}
