"""Visitor state: compact, serializable, and bounded in size."""

from __future__ import annotations

from pipeline.detect.state import decode_state, encode_state
from pipeline.wire.records import visitor_key

from tests.detect.helpers import MIN, T0, Harness, add, ev, identify, page, track

ANON = "0f8e5b7c-3d1a-4b2e-9c6f-7a1d2e3f4b5c"  # analytics.js anonymous ids are UUIDs
KEY = visitor_key("shop-a", ANON, None)


def active_session_with_three_item_cart(page_views: int) -> Harness:
    """A shopper: identify, browse, 3 products in the cart, checkout started."""
    h = Harness()
    events = [identify(T0, "cust-00012345", True, anon=ANON)]
    events += [page(T0 + i * 10_000, anon=ANON) for i in range(1, page_views + 1)]
    t = T0 + (page_views + 1) * 10_000
    cart_id = "5f2b9c1e-cart-77d1"
    products = [
        ("sku-100234", "Linen shirt, relaxed fit", 49.9),
        ("sku-200871", "Chino trousers", 69.0),
        ("sku-310002", "Canvas sneakers, white", 89.5),
    ]
    for i, (pid, name, price) in enumerate(products):
        events.append(add(t + i * 1000, pid, price, anon=ANON, name=name, cart_id=cart_id))
    events.append(track("Cart Viewed", t + 5_000, anon=ANON, cart_id=cart_id))
    events.append(track("Checkout Started", t + 9_000, anon=ANON, checkout_id="chk-8f3a2b61c9", cart_id=cart_id))
    h.each(*events)
    return h


def test_typical_active_session_state_is_under_2_kb() -> None:
    # 20 page views: a typical session
    typical = len(active_session_with_three_item_cart(page_views=20).table[KEY])
    # 60 page views: the id memory is full (64 ids), the worst case for this shopper
    full_memory = len(active_session_with_three_item_cart(page_views=60).table[KEY])
    assert typical < full_memory < 2048, (typical, full_memory)


def test_state_roundtrips_through_its_serialized_form() -> None:
    data = active_session_with_three_item_cart(page_views=5).table[KEY]
    state = decode_state(data)
    assert encode_state(state) == data
    assert (state.user_id, state.consent, len(state.carts), len(state.carts[0].items)) == ("cust-00012345", True, 1, 3)
    assert state.checkouts == {"chk-8f3a2b61c9": "/5f2b9c1e-cart-77d1"}


def test_state_records_the_offset_of_the_last_applied_record() -> None:
    h = Harness(start_offset=41)
    h.each(page(T0, anon=ANON), ev("Cart Viewed", T0 + MIN, anon=ANON))  # offsets 41 and 42
    assert decode_state(h.table[KEY]).last_offset == 42
