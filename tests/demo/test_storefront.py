"""The demo storefront generator: determinism, valid Segment messages, exact ground truth."""

from __future__ import annotations

import re
from collections import Counter, defaultdict

import pytest

from pipeline.demo.ledger import Tally
from pipeline.demo.storefront import Traffic, generate, iter_messages
from tests.demo.contract_reading import REQUIRED, invalid_reason, read_stream, ts_ms

START = 1_767_225_600_000  # 2026-01-01T00:00:00Z
HOUR = 3_600_000
DAY = 24 * HOUR
ISO_MS_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture(scope="module")
def days() -> Traffic:
    """Two simulated days of 4,000 people (about 50,000 messages), shared by the read-only tests."""
    return generate(11, visitors=4_000, start_ms=START, span_ms=2 * DAY)


def test_same_seed_gives_identical_messages() -> None:
    a = generate(5, visitors=200, start_ms=START, span_ms=DAY)
    b = generate(5, visitors=200, start_ms=START, span_ms=DAY)
    assert a.messages == b.messages
    assert a.expected == b.expected


def test_different_seed_gives_different_messages() -> None:
    a = generate(5, visitors=200, start_ms=START, span_ms=DAY)
    b = generate(6, visitors=200, start_ms=START, span_ms=DAY)
    assert a.messages != b.messages
    assert not {m["messageId"] for m in a.messages} & {m["messageId"] for m in b.messages}


def test_streaming_yields_the_same_messages_as_generate() -> None:
    tally = Tally()
    streamed = list(iter_messages(5, visitors=200, start_ms=START, span_ms=DAY, tally=tally))
    whole = generate(5, visitors=200, start_ms=START, span_ms=DAY)
    assert streamed == whole.messages
    assert tally.expected() == whole.expected


def test_every_message_is_a_valid_segment_call(days) -> None:
    ids = [m["messageId"] for m in days.messages]
    assert len(set(ids)) == len(ids)
    for m in days.messages:
        assert m["type"] in {"track", "page", "identify"}
        assert m.get("anonymousId") or m.get("userId")
        assert ISO_MS_Z.match(m["timestamp"]), m["timestamp"]
        assert m["context"]["locale"] in {"fr-FR", "en-GB", "en-US"}
        if m["type"] == "track":
            assert m["event"] in REQUIRED
            assert isinstance(m["properties"], dict)
        if m["type"] == "identify":
            assert isinstance(m["traits"]["consent_marketing"], bool)
            assert "@" in m["traits"]["email"] and m["userId"]
        if "anonymousId" in m:  # browser calls carry the page and the device
            page = m["context"]["page"]
            assert page["path"].startswith("/") and page["url"].startswith("https://")
            assert "referrer" in page and page["title"]
            assert m["context"]["userAgent"] and m["context"]["ip"]
        else:  # helpdesk and survey calls are server-side, by userId
            assert m["event"].startswith(("Support", "Survey"))


def test_invalid_messages_are_exactly_the_expected_dead_letters(days) -> None:
    found = Counter(r for m in days.messages if (r := invalid_reason(m)) is not None)
    assert sum(found.values()) == days.expected.invalid
    assert dict(found) == days.expected.invalid_by_reason
    assert 0.003 <= days.expected.invalid / days.expected.messages <= 0.008  # about 0.5%


def test_timestamps_are_ordered_and_inside_the_span(days) -> None:
    times = [ts_ms(m) for m in days.messages]
    assert times == sorted(times)
    assert START <= times[0] and times[-1] <= START + 2 * DAY
    assert len(times) == days.expected.messages


def test_tenant_write_key_goes_in_the_body_and_into_the_message_ids() -> None:
    plain = generate(5, visitors=30, start_ms=START, span_ms=DAY)
    keyed = generate(5, visitors=30, start_ms=START, span_ms=DAY, tenant_write_key="wk_shop_a")
    assert all(m["writeKey"] == "wk_shop_a" for m in keyed.messages)
    # Same journeys, but ids of two tenants fed from one seed never collide.
    assert [m["timestamp"] for m in keyed.messages] == [m["timestamp"] for m in plain.messages]
    assert not {m["messageId"] for m in keyed.messages} & {m["messageId"] for m in plain.messages}


def test_three_visitors_match_the_hand_checked_plan() -> None:
    # Seed 410, 3 people over 6 hours from 2026-01-01T00:00Z (read from the messages):
    #  V1 00:57:39.491  fr-FR, home page, a normal click, opens the linen wrap dress
    #     00:59:39.980  Product Added 89.00 (cart_id sent), 00:59:45.824 Cart Viewed
    #     01:00:24.547  Checkout Started, 01:00:24.702 Checkout Step Viewed step 1 (last cart activity)
    #     01:01:46.123  identify (consent_marketing true), then leaves at step 1
    #                   -> abandoned at 01:30:24.702: an identified, consenting customer
    #  V2 02:25:01.861  en-GB, browses; on a product page a broken tag sends
    #     02:29:03.510  Products Searched without query (the 1 dead letter)
    #     02:30:18.365  Product Added towels 32.00 (last cart activity), browses on, leaves
    #                   -> abandoned at 03:00:18.365
    #     03:18:11.980  back straight to the cart (second browser session), checks out,
    #     03:19:49.815  identify (consent true); one Payment Failed, its error shown
    #                   1.103 s after the pay click (not an error click: over 1 s), then
    #     03:23:44.553  Order Completed total 36.90 (4.90 shipping), revenue 32.00 -> recovered
    #  V3 05:32:08.067  lands on a category page and leaves (bounce)
    # Expected: 2 carts, 1 order, 2 abandoned (1 recovered), revenue 32.00 (revenue wins
    # over total), 4 browser sessions, 2 consenting customers, 1 invalid event,
    # settle_ms = the later deadline, 03:00:18.365.
    traffic = generate(410, visitors=3, start_ms=START, span_ms=6 * HOUR)
    e = traffic.expected
    assert (e.messages, e.invalid, e.invalid_by_reason) == (52, 1, {"missing_property": 1})
    assert (e.visitors, e.browser_sessions) == (3, 4)
    assert (e.identified_visitors, e.identified_customers, e.consenting_customers) == (2, 2, 2)
    assert (e.carts, e.orders, e.abandoned_carts, e.recovered_carts, e.emptied_carts) == (2, 1, 2, 1, 0)
    assert e.revenue == 32.0
    assert e.settle_ms == START + 3 * HOUR + 18_365
    assert (e.tickets, e.surveys) == (0, {})
    assert e.friction == {"error_shown": 1, "payment_failed": 1}

    # The timeline above, checked against the messages themselves.
    at = {(m["timestamp"][11:23], m.get("event") or m["type"]): m for m in traffic.messages}
    assert at[("01:00:24.702", "Checkout Step Viewed")]["properties"]["step"] == 1
    assert at[("01:01:46.123", "identify")]["traits"]["consent_marketing"] is True
    assert invalid_reason(at[("02:29:03.510", "Products Searched")]) == "missing_property"
    assert at[("03:18:11.980", "page")]["context"]["page"]["path"] == "/en/cart"
    order = at[("03:23:44.553", "Order Completed")]["properties"]
    assert (order["total"], order["revenue"], order["shipping"]) == (36.9, 32.0, 4.9)
    assert order["cart_id"] == at[("02:30:18.365", "Product Added")]["properties"]["cart_id"]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_ground_truth_agrees_with_a_reading_of_the_stream_by_the_contract(seed: int) -> None:
    traffic = generate(seed, visitors=1_500, start_ms=START, span_ms=DAY)
    e, r = traffic.expected, read_stream(traffic.messages)
    assert (r.carts, r.orders, r.abandoned, r.recovered) == (e.carts, e.orders, e.abandoned_carts, e.recovered_carts)
    assert r.revenue_cents / 100 == pytest.approx(e.revenue, abs=0.001)
    assert sum(r.invalid.values()) == e.invalid
    assert r.sessions == e.browser_sessions
    assert len(r.identified_visitors) == e.identified_visitors
    assert (len(r.customers), sum(r.customers.values())) == (e.identified_customers, e.consenting_customers)


def test_mix_looks_like_a_real_shop(days) -> None:
    e, msgs = days.expected, days.messages
    assert 0.55 <= e.abandoned_carts / e.carts <= 0.75
    assert e.recovered_carts > 0 and e.emptied_carts > 0
    assert 0.5 <= e.consenting_customers / e.identified_customers <= 0.7
    assert Counter(m["context"]["locale"] for m in msgs).keys() == {"fr-FR", "en-GB", "en-US"}
    assert any(m["type"] == "page" and m["properties"]["load_time_ms"] > 4_000 for m in msgs)
    assert any(m.get("event") == "Products Searched" and m["properties"].get("results_count") == 0 for m in msgs)
    orders_per_user = Counter(m["userId"] for m in msgs if m.get("event") == "Order Completed")
    assert max(orders_per_user.values()) >= 2  # repeat customers
    assert any(m.get("event") == "Support Ticket Resolved" and m["properties"]["reopened"] for m in msgs)
    texts = [m["properties"]["text"] for m in msgs if m.get("event") == "Support Message Sent"]
    assert any("inadmissible" in t or "déçu" in t for t in texts)  # clearly negative, in French
    assert any("refund" in t or "never" in t for t in texts)  # and in English
    for kind in ("nps", "csat", "ces"):
        assert e.surveys.get(kind, 0) > 0
    signals = ("rage_click", "dead_click", "error_click", "payment_failed", "zero_result_search", "slow_page", "u_turn",
               "checkout_loop", "payment_failed_x2")  # fmt: skip
    assert all(e.friction[k] > 0 for k in signals), e.friction


def test_rage_bursts_are_three_to_five_clicks_within_a_second_on_one_selector(days) -> None:
    clicks = defaultdict(list)
    for m in days.messages:
        if m.get("event") == "Element Clicked" and m["properties"].get("interactive") is False:
            clicks[m["anonymousId"]].append((ts_ms(m), m["properties"]["selector"]))
    bursts = 0
    for seq in clicks.values():
        run = [seq[0]]
        for click in seq[1:] + [(None, None)]:
            if click[1] == run[0][1] and click[0] - run[0][0] <= 1_000:
                run.append(click)
                continue
            assert 3 <= len(run) <= 5, run
            bursts += 1
            run = [click]
    assert bursts == days.expected.friction["rage_click"]


def test_friction_counts_match_the_signals_in_the_messages(days) -> None:
    valid = [m for m in days.messages if invalid_reason(m) is None]
    tracks = Counter()
    for m in valid:
        p = m.get("properties", {})
        event = m.get("event")
        tracks["slow_page"] += m["type"] == "page" and p["load_time_ms"] > 4_000
        tracks["zero_result_search"] += event == "Products Searched" and p["results_count"] == 0
        tracks["payment_failed"] += event == "Payment Failed"
        tracks["error_shown"] += event == "Error Shown"
        tracks["dead_click"] += event == "Element Clicked" and p["interactive"] and not p["responded"]
    # error click: an Error Shown at most 1 s after the same visitor's latest click, each click once
    last_click: dict[str, int] = {}
    for m in valid:
        if m.get("event") == "Element Clicked":
            last_click[m["anonymousId"]] = ts_ms(m)
        elif m.get("event") == "Error Shown" and m["anonymousId"] in last_click:
            if ts_ms(m) - last_click[m["anonymousId"]] <= 1_000:
                tracks["error_click"] += 1
                del last_click[m["anonymousId"]]
    # u-turn: page B, then within 10 s the page before B again (same visitor; pages told apart by url)
    pages = defaultdict(list)
    for m in valid:
        if m["type"] == "page":
            pages[m["anonymousId"]].append((ts_ms(m), m["context"]["page"]["url"]))
    for seq in pages.values():
        for (_, before), (t_b, url_b), (t, url) in zip(seq, seq[1:], seq[2:]):
            tracks["u_turn"] += url == before and url != url_b and t - t_b <= 10_000
    # checkout loop: the 3rd view of one checkout step, or the 2nd Coupon Denied, in a session
    # (30 min without events ends one)
    last_seen: dict[str, int] = {}
    views: dict[str, Counter] = defaultdict(Counter)
    for m in valid:
        anon, t = m.get("anonymousId"), ts_ms(m)
        if anon is None:
            continue
        if t - last_seen.get(anon, t) >= 30 * 60_000:
            views[anon].clear()
        last_seen[anon] = t
        if m.get("event") == "Checkout Step Viewed":
            views[anon][m["properties"]["step"]] += 1
            tracks["checkout_loop"] += views[anon][m["properties"]["step"]] == 3
        elif m.get("event") == "Coupon Denied":
            views[anon]["coupon"] += 1
            tracks["checkout_loop"] += views[anon]["coupon"] == 2
    for signal, count in tracks.items():
        assert count == days.expected.friction[signal], signal


def test_most_carts_are_sent_with_a_cart_id_and_checkouts_with_a_checkout_id(days) -> None:
    adds = [m["properties"] for m in days.messages if m.get("event") == "Product Added" and invalid_reason(m) is None]
    assert 0.75 <= sum("cart_id" in p for p in adds) / len(adds) <= 0.95
    checkout_events = {"Checkout Started", "Checkout Step Viewed", "Checkout Step Completed", "Payment Info Entered",
                       "Payment Failed", "Order Completed"}
    assert all("checkout_id" in m["properties"] for m in days.messages if m.get("event") in checkout_events)


def test_no_visitors_gives_an_empty_stream() -> None:
    traffic = generate(1, visitors=0, start_ms=START, span_ms=DAY)
    assert traffic.messages == [] and traffic.expected.messages == 0 and traffic.expected.settle_ms is None


@pytest.mark.slow
def test_a_million_messages_take_seconds() -> None:
    import time

    t0 = time.monotonic()
    n = sum(1 for _ in iter_messages(1, visitors=85_000, start_ms=START, span_ms=DAY))
    assert n > 950_000
    assert time.monotonic() - t0 < 60
