"""Friction signals on commented timelines: thresholds, their edges, exclusions and late events.

Times are milliseconds after T0; one visitor (anon-1) in one session unless
said. ``signals(h)`` lists what the processor wrote to ``cx.friction`` as
(signal, ms after T0, page, detail).
"""

from __future__ import annotations

import pytest

from collections import Counter

from pipeline.detect import Rules
from pipeline.detect.friction import reasons, score
from pipeline.detect.state import decode_state, encode_state
from pipeline.wire.records import visitor_key

from tests.detect.helpers import EXACT, MIN, T0, Harness, ev, track

LATE_OK = Rules(allowed_lateness_ms=1_000, holdout_pct=0.0)


def visit(t: int, path: str, load_ms: float = 800, anon: str = "anon-1") -> dict:
    """A page view of ``path`` at T0 + t."""
    e = ev(None, T0 + t, anon=anon, type="page", props={"path": path, "load_time_ms": load_ms})
    e["page_path"] = path
    return e


def on(path: str, event: dict) -> dict:
    event["page_path"] = path  # analytics.js sends context.page.path with every track call
    return event


def click(
    t: int, selector: str = "img.hero", x: float = 100, y: float = 200, *,
    interactive: bool = False, responded: bool = False, path: str = "/p/1",
) -> dict:  # fmt: skip
    props = {"selector": selector, "x": x, "y": y, "interactive": interactive, "responded": responded}
    return on(path, ev("Element Clicked", T0 + t, props=props))


def error(t: int, path: str = "/p/1", kind: str = "validation") -> dict:
    return on(path, ev("Error Shown", T0 + t, props={"kind": kind, "selector": "#size"}))


def signals(h: Harness) -> list[tuple[str, int, str, str]]:
    return [
        (f["signal"], f["event_time_ms"] - T0, f["page"], f["detail"]) for f in h.facts.get("cx.friction", [])
    ]


def run(*events: dict, rules: Rules = EXACT) -> Harness:
    h = Harness(rules)
    h.each(*events)
    return h


# -- rage click ---------------------------------------------------------------


def test_three_clicks_spanning_exactly_one_second_are_one_rage_click() -> None:
    # 0 / 400 / 1000 ms on img.hero, a few px apart: the third click completes the burst
    h = run(click(0), click(400, x=104), click(1_000, y=196))
    assert signals(h) == [("rage_click", 1_000, "/p/1", "img.hero")]


def test_third_click_one_millisecond_past_the_window_is_not_rage() -> None:
    # 0 / 400 / 1001 ms: first to last is 1001 ms > 1 s
    assert signals(run(click(0), click(400), click(1_001))) == []


def test_click_exactly_30_px_away_is_in_the_burst_and_31_px_is_not() -> None:
    # third click 30 px right of the others (inclusive) / 31 px right
    assert signals(run(click(0), click(100), click(200, x=130))) == [("rage_click", 200, "/p/1", "img.hero")]
    assert signals(run(click(0), click(100), click(200, x=131))) == []


def test_two_clicks_are_not_rage_and_a_burst_of_five_counts_once() -> None:
    assert signals(run(click(0), click(200))) == []
    # 0..800 ms every 200 ms: rage at the third click; the 4th and 5th continue the same burst
    h = run(*(click(t) for t in (0, 200, 400, 600, 800)))
    assert signals(h) == [("rage_click", 400, "/p/1", "img.hero")]


def test_a_new_burst_after_a_pause_counts_again() -> None:
    # burst 1: 0 / 200 / 400; pause; burst 2: 2400 / 2600 / 2800 (2 s after the last click of burst 1)
    h = run(*(click(t) for t in (0, 200, 400, 2_400, 2_600, 2_800)))
    assert [s[:2] for s in signals(h)] == [("rage_click", 400), ("rage_click", 2_800)]


def test_clicks_on_different_selectors_are_not_rage() -> None:
    assert signals(run(click(0, "img.a"), click(100, "img.b"), click(200, "img.a"))) == []


def test_text_fields_and_quantity_steppers_are_never_rage() -> None:
    # placing the caret in a search field, then + + + on a quantity stepper
    h = run(
        click(0, "form.search input[type=text]", interactive=True, responded=True),
        click(150, "form.search input[type=text]", interactive=True, responded=True),
        click(300, "form.search input[type=text]", interactive=True, responded=True),
        click(2_000, "div.qty-stepper > button.plus", interactive=True, responded=True),
        click(2_200, "div.qty-stepper > button.plus", interactive=True, responded=True),
        click(2_400, "div.qty-stepper > button.plus", interactive=True, responded=True),
    )
    assert signals(h) == []


def test_a_selector_excluded_in_settings_is_never_rage() -> None:
    rules = Rules(allowed_lateness_ms=0, holdout_pct=0.0, friction_rage_exclude=("#carousel-next",))
    assert signals(run(*(click(t, "#carousel-next") for t in (0, 200, 400)), rules=rules)) == []
    # the default exclusions are replaced, not extended: a text field can rage now
    assert len(signals(run(*(click(t, "textarea") for t in (0, 200, 400)), rules=rules))) == 1


def test_late_click_inside_the_allowed_lateness_completes_the_burst() -> None:
    # arrival order 0, 900, then the 400 ms click (500 ms late, lateness 1 s):
    # sorted by event time the three span 900 ms -> one rage at 900
    h = run(click(0), click(900), click(400), rules=LATE_OK)
    assert signals(h) == [("rage_click", 900, "/p/1", "img.hero")]


def test_late_click_arriving_after_its_burst_joins_it_without_a_second_rage() -> None:
    # 0 / 200 / 400 rage; the 300 ms click arrives last: same burst
    h = run(click(0), click(200), click(400), click(300), rules=LATE_OK)
    assert [s[0] for s in signals(h)] == ["rage_click"]


def test_click_later_than_the_allowed_lateness_may_miss_its_burst() -> None:
    # lateness 0: the buffer keeps 1 s; a click at 5000 pushes out 0 and 100,
    # so the 200 ms click arriving after it finds nothing to join
    assert signals(run(click(0), click(100), click(5_000), click(200))) == []


LATE_3S = Rules(allowed_lateness_ms=3_000, holdout_pct=0.0)
CHAINED = (0, 400, 800, 1_350, 1_900, 2_300, 2_700)


def test_a_click_that_chains_two_bursts_makes_one_rage_in_order() -> None:
    # 0/400/800 rage at 800; 1350 is within 1 s of 800 and of 1900, so 1900/2300/2700
    # continue the same burst: one rage
    assert signals(run(*(click(t) for t in CHAINED), rules=LATE_3S)) == [("rage_click", 800, "/p/1", "img.hero")]


def test_the_chaining_click_arriving_late_but_before_the_second_burst_completes_gives_the_same_count() -> None:
    # lateness 3 s. Arrival 0, 400, 800, 1900, 2300, then 1350 (950 ms late), then 2700:
    # decided in event time, 1900 and 2300 join the first burst, and so does 2700
    order = (0, 400, 800, 1_900, 2_300, 1_350, 2_700)
    assert signals(run(*(click(t) for t in order), rules=LATE_3S)) == [("rage_click", 800, "/p/1", "img.hero")]


def test_the_chaining_click_arriving_after_both_bursts_were_counted_leaves_both_rows() -> None:
    # lateness 3 s. Arrival 0, 400, 800 (rage), 1900, 2300, 2700 (a second rage: nothing links it
    # to the first yet), then 1350 (1350 ms late). In event time that is one burst, but a row
    # written is never taken back: two rows, one more than in order (docs/detection.md, "Late events")
    order = (0, 400, 800, 1_900, 2_300, 2_700, 1_350)
    assert [s[:2] for s in signals(run(*(click(t) for t in order), rules=LATE_3S))] == [
        ("rage_click", 800),
        ("rage_click", 2_700),
    ]


def test_a_late_click_that_starts_the_burst_earlier_keeps_the_count() -> None:
    # lateness 3 s. In order 0/500/900 completes at 900 and 1300 joins: one rage.
    # Arrival 500, 900, 1300 (rage at 1300), then 0 (1300 ms late): in event time the burst
    # completes at 900; the row already written (at 1300) stands for it, no second row
    in_order = signals(run(*(click(t) for t in (0, 500, 900, 1_300)), rules=LATE_3S))
    late = signals(run(*(click(t) for t in (500, 900, 1_300, 0)), rules=LATE_3S))
    assert in_order == [("rage_click", 900, "/p/1", "img.hero")]
    assert late == [("rage_click", 1_300, "/p/1", "img.hero")]


def test_settings_change_the_rage_window_radius_and_count() -> None:
    # window 2 s: 0/900/1800 span 1.8 s -> rage (not with 1 s); 0/900/2001 -> no rage
    wide = Rules(allowed_lateness_ms=0, holdout_pct=0.0, friction_rage_window_ms=2_000)
    assert signals(run(click(0), click(900), click(1_800), rules=wide)) == [("rage_click", 1_800, "/p/1", "img.hero")]
    assert signals(run(click(0), click(900), click(2_001), rules=wide)) == []
    assert signals(run(click(0), click(900), click(1_800))) == []
    # radius 10 px: a third click 10 px away counts, 11 px does not
    tight = Rules(allowed_lateness_ms=0, holdout_pct=0.0, friction_rage_radius_px=10)
    assert len(signals(run(click(0), click(100), click(200, x=110), rules=tight))) == 1
    assert signals(run(click(0), click(100), click(200, x=111), rules=tight)) == []
    # 4 clicks needed: three are not rage, the fourth is
    four = Rules(allowed_lateness_ms=0, holdout_pct=0.0, friction_rage_clicks=4)
    assert signals(run(click(0), click(100), click(200), rules=four)) == []
    h = run(click(0), click(100), click(200), click(300), rules=four)
    assert signals(h) == [("rage_click", 300, "/p/1", "img.hero")]


# -- text fields and steppers ------------------------------------------------------------


@pytest.mark.parametrize(
    "selector",
    [
        "form input#email",  # an input without a type is a text field
        "input[type='text']",
        'form.search > input.q[type="search"]',
        "input[type=tel]",
        "input#pw[type=password]",
        "div.qty > input[type=number]",
        "textarea#message",
        "select#size",
        "div[contenteditable=true] > p",
        "div[role=spinbutton]",
        "div.quantity-stepper > button.plus",
        "button.qty-minus",
    ],
)
def test_text_fields_and_steppers_of_any_spelling_are_never_rage_nor_dead(selector: str) -> None:
    # three clicks 150 ms apart, none of which changed the page
    h = run(*(click(t, selector, interactive=True, responded=False) for t in (0, 150, 300)))
    assert signals(h) == []


@pytest.mark.parametrize(
    "selector", ["input[type=submit]", "input[type=checkbox]", "button.size-selector", "a.textarea-help"]
)
def test_buttons_and_links_that_only_look_like_text_fields_can_rage(selector: str) -> None:
    # a submit button, a checkbox, a class that contains "select", a link whose class contains "textarea"
    h = run(*(click(t, selector) for t in (0, 150, 300)))
    assert signals(h) == [("rage_click", 300, "/p/1", selector)]


# -- dead click -----------------------------------------------------------------


def test_interactive_click_without_response_is_a_dead_click() -> None:
    h = run(
        click(0, "a.size-guide", interactive=True, responded=False),  # dead
        click(5_000, "a.size-guide", interactive=True, responded=True),  # the page reacted
        click(10_000, "div.banner", interactive=False, responded=False),  # not interactive: not dead
        on("/p/1", ev("Element Clicked", T0 + 15_000, props={"selector": "a.x"})),  # nothing known: not dead
    )
    assert signals(h) == [("dead_click", 0, "/p/1", "a.size-guide")]


# -- error click ------------------------------------------------------------------


def test_error_exactly_one_second_after_a_click_makes_an_error_click() -> None:
    h = run(click(0, "button.add", interactive=True, responded=True), error(1_000))
    assert signals(h) == [("error_click", 1_000, "/p/1", "button.add")]


def test_error_one_millisecond_too_late_is_not_an_error_click() -> None:
    assert signals(run(click(0, "button.add", interactive=True, responded=True), error(1_001))) == []


def test_error_with_no_click_before_it_is_not_an_error_click() -> None:
    # the error at 0 precedes the click at 300 (in event time)
    assert signals(run(error(0), click(300, "button.add", interactive=True, responded=True))) == []


def test_error_arriving_before_its_late_click_still_pairs_with_it() -> None:
    # click at 0 arrives after the error at 600 (600 ms late, lateness 1 s)
    h = run(error(600), click(0, "button.add", interactive=True, responded=True), rules=LATE_OK)
    assert signals(h) == [("error_click", 600, "/p/1", "button.add")]


def test_one_click_makes_one_error_click_however_many_errors_follow() -> None:
    # click 0, errors 300 and 700: one error click; a second click at 2000 with an error at 2200: another
    h = run(
        click(0, "button.pay", interactive=True, responded=True), error(300), error(700),
        click(2_000, "button.pay", interactive=True, responded=True), error(2_200),
    )  # fmt: skip
    assert [s[:2] for s in signals(h)] == [("error_click", 300), ("error_click", 2_200)]


# -- pages ----------------------------------------------------------------------


def test_page_loading_over_four_seconds_is_slow_and_exactly_four_is_not() -> None:
    h = run(visit(0, "/", load_ms=4_000), visit(60_000, "/c/shoes", load_ms=4_001))
    assert signals(h) == [("slow_page", 60_000, "/c/shoes", "")]


def test_back_on_the_previous_page_within_ten_seconds_is_a_u_turn_of_the_page_left() -> None:
    # / at 0, /p/1 at 30 s, / again exactly 10 s later: u-turn away from /p/1
    h = run(visit(0, "/"), visit(30_000, "/p/1"), visit(40_000, "/"))
    assert signals(h) == [("u_turn", 40_000, "/p/1", "")]


def test_back_after_ten_seconds_and_one_millisecond_is_not_a_u_turn() -> None:
    assert signals(run(visit(0, "/"), visit(30_000, "/p/1"), visit(40_001, "/"))) == []


def test_going_forward_or_reloading_is_not_a_u_turn() -> None:
    # / -> /p/1 -> /p/2 (forward), /p/2 reloaded, then /p/3
    h = run(visit(0, "/"), visit(2_000, "/p/1"), visit(4_000, "/p/2"), visit(5_000, "/p/2"), visit(6_000, "/p/3"))
    assert signals(h) == []


def test_signals_take_the_page_of_the_session_when_the_event_has_none() -> None:
    search = ev("Products Searched", T0 + 2_000, props={"query": "lin shirt", "results_count": 0})
    search["page_path"] = None  # a server-side call without context.page
    h = run(visit(0, "/search"), search)
    assert signals(h) == [("zero_result_search", 2_000, "/search", "")]


# -- search and checkout ---------------------------------------------------------


def test_only_a_search_with_zero_results_is_a_zero_result_search() -> None:
    h = run(
        on("/search", track("Products Searched", T0, query="lin", results_count=0)),
        on("/search", track("Products Searched", T0 + 1_000, query="linen", results_count=12)),
        on("/search", track("Products Searched", T0 + 2_000, query="linen shirt")),  # count not sent
    )
    assert signals(h) == [("zero_result_search", 0, "/search", "")]


def test_each_payment_failure_counts_with_its_checkout() -> None:
    h = run(
        on("/pay", track("Payment Failed", T0, checkout_id="chk-1", reason="card_declined")),
        on("/pay", track("Payment Failed", T0 + 30_000, checkout_id="chk-1", reason="insufficient_funds")),
    )
    assert signals(h) == [("payment_failed", 0, "/pay", "chk-1"), ("payment_failed", 30_000, "/pay", "chk-1")]


def test_third_view_of_one_checkout_step_is_a_checkout_loop_and_the_fourth_adds_nothing() -> None:
    # step 1 at 0 s, step 2 at 20 s, back: step 1 at 40 s (2nd view), step 1 at 60 s (3rd: loop), 80 s (4th)
    steps = [(0, 1), (20_000, 2), (40_000, 1), (60_000, 1), (80_000, 1)]
    h = run(*(on("/checkout", track("Checkout Step Viewed", T0 + t, checkout_id="chk-1", step=s)) for t, s in steps))
    assert signals(h) == [("checkout_loop", 60_000, "/checkout", "step 1")]


def test_two_views_of_a_step_are_not_a_loop_but_two_denied_coupons_are() -> None:
    h = run(
        on("/checkout", track("Checkout Step Viewed", T0, checkout_id="chk-1", step=2)),
        on("/checkout", track("Checkout Step Viewed", T0 + 10_000, checkout_id="chk-2", step=2)),
        on("/checkout", track("Coupon Denied", T0 + 20_000, coupon_id="WELCOME", reason="expired")),
        on("/checkout", track("Coupon Denied", T0 + 40_000, coupon_id="SPRING", reason="minimum")),
        on("/checkout", track("Coupon Denied", T0 + 50_000, coupon_id="SPRING2", reason="minimum")),
    )
    assert signals(h) == [("checkout_loop", 40_000, "/checkout", "coupon")]


def test_a_new_session_starts_the_counts_again() -> None:
    # step 1 twice in session 1, then 40 min of silence: the third view is in session 2
    h = run(
        track("Checkout Step Viewed", T0, checkout_id="chk-1", step=1),
        track("Checkout Step Viewed", T0 + 1 * MIN, checkout_id="chk-1", step=1),
        track("Checkout Step Viewed", T0 + 41 * MIN, checkout_id="chk-2", step=1),
    )
    assert signals(h) == []


def test_a_duplicate_event_counts_once() -> None:
    failed = on("/pay", track("Payment Failed", T0, checkout_id="chk-1"))
    h = run(failed, dict(failed))  # the SDK resent it with the same messageId
    assert len(signals(h)) == 1


# -- score ------------------------------------------------------------------------


def test_score_is_the_weighted_sum_capped_at_100() -> None:
    # defaults: payment_failed 30, error_click 20, rage_click 20, checkout_loop 20, dead_click 10,
    # u_turn 10, zero_result_search 10, slow_page 5
    assert score({}, EXACT) == 0
    assert score({"slow_page": 1, "u_turn": 2}, EXACT) == 5 + 2 * 10
    assert score({"payment_failed": 2, "rage_click": 1}, EXACT) == 80
    assert score({"payment_failed": 3, "rage_click": 1}, EXACT) == 100  # 110, capped


def test_reasons_list_each_signal_once_with_its_count_heaviest_first() -> None:
    counts = {"slow_page": 1, "payment_failed": 2, "rage_click": 1, "u_turn": 2}
    # contributions: payment_failed 60, rage_click 20, u_turn 20 (FRICTION_SIGNALS' order breaks the tie), slow_page 5
    assert reasons(counts, EXACT) == ["payment_failed_x2", "rage_click", "u_turn_x2", "slow_page"]


# -- state ------------------------------------------------------------------------


def test_friction_memory_survives_the_state_table_and_stays_small() -> None:
    # two views of step 1 and two clicks; the worker restarts from its table; the third view and click follow
    h = run(
        on("/checkout", track("Checkout Step Viewed", T0, checkout_id="chk-1", step=1)),
        on("/checkout", track("Checkout Step Viewed", T0 + 20_000, checkout_id="chk-1", step=1)),
        click(30_000, path="/checkout"), click(30_200, path="/checkout"),
    )  # fmt: skip
    data = h.table[visitor_key("shop-a", "anon-1", None)]
    assert encode_state(decode_state(data)) == data
    assert len(data) < 400
    restarted = Harness(EXACT, table=h.table, start_offset=h.offset)
    restarted.each(
        click(30_400, path="/checkout"),
        on("/checkout", track("Checkout Step Viewed", T0 + 40_000, checkout_id="chk-1", step=1)),
    )
    assert signals(restarted) == [
        ("rage_click", 30_400, "/checkout", "img.hero"),
        ("checkout_loop", 40_000, "/checkout", "step 1"),
    ]


def test_two_searches_on_one_path_are_two_pages_for_u_turns() -> None:
    # /search?q=linen at 0, /search?q=lin at 20 s, back on ?q=linen 4 s later: u-turn from /search
    def search_page(t: int, q: str) -> dict:
        e = visit(t, "/search")
        e["page_url"] = f"https://shop.example/search?q={q}#results"
        return e

    h = run(search_page(0, "linen"), search_page(20_000, "lin"), search_page(24_000, "linen"))
    assert signals(h) == [("u_turn", 24_000, "/search", "")]


def test_late_page_view_takes_its_place_in_event_time() -> None:
    # / at 0, /p/1 at 20 s; a slow /c/x page from 15 s arrives late; / again at 25 s.
    # In event time the visitor went / -> /c/x -> /p/1 -> /: the page before /p/1 is
    # /c/x, so going to / is no u-turn, in either order
    late = [visit(0, "/"), visit(20_000, "/p/1"), visit(15_000, "/c/x", load_ms=6_000), visit(25_000, "/")]
    in_order = [late[0], late[2], late[1], late[3]]
    assert signals(run(*late, rules=LATE_OK)) == [("slow_page", 15_000, "/c/x", "")]
    assert signals(run(*in_order, rules=LATE_OK)) == [("slow_page", 15_000, "/c/x", "")]


def test_late_page_left_still_makes_the_u_turn() -> None:
    # lateness 1 s. In event time: / at 0, /p/1 at 5000, back on / at 5500 -> u-turn at 5500.
    # Arrival: /, then / at 5500 (a reload of / so far), then /p/1 from 5000 (500 ms late)
    in_order = run(visit(0, "/"), visit(5_000, "/p/1"), visit(5_500, "/"), rules=LATE_OK)
    late = run(visit(0, "/"), visit(5_500, "/"), visit(5_000, "/p/1"), rules=LATE_OK)
    assert signals(in_order) == signals(late) == [("u_turn", 5_500, "/p/1", "")]


def test_late_return_page_still_makes_the_u_turn() -> None:
    # lateness 1 s. In event time: / 0, /p/1 5000, / 5800 (u-turn from /p/1), /p/2 6000.
    # Arrival: the return to / at 5800 comes after /p/2 (200 ms late)
    in_order = run(visit(0, "/"), visit(5_000, "/p/1"), visit(5_800, "/"), visit(6_000, "/p/2"), rules=LATE_OK)
    late = run(visit(0, "/"), visit(5_000, "/p/1"), visit(6_000, "/p/2"), visit(5_800, "/"), rules=LATE_OK)
    assert signals(in_order) == signals(late) == [("u_turn", 5_800, "/p/1", "")]


def test_a_late_reload_does_not_count_a_u_turn_twice() -> None:
    # / 0, /p/1 5000, / 5500: u-turn. Then late: a reload of / at 5400 (before the return
    # counted) and a reload of /p/1 at 5200: still the same one return to /
    pages = [visit(0, "/"), visit(5_000, "/p/1"), visit(5_500, "/"), visit(5_400, "/"), visit(5_200, "/p/1")]
    h = run(*pages, rules=LATE_OK)
    assert signals(h) == [("u_turn", 5_500, "/p/1", "")]
    assert len({f["friction_id"] for f in h.facts["cx.friction"]}) == 1


def test_a_u_turn_counted_stays_when_a_late_page_lands_before_the_return() -> None:
    # / 0, /p/1 5000, / 5500: u-turn counted. /c/x from 5200 arrives late: in event time
    # /p/1 -> /c/x -> / is no u-turn, but a row written is never taken back (docs/detection.md)
    h = run(visit(0, "/"), visit(5_000, "/p/1"), visit(5_500, "/"), visit(5_200, "/c/x"), rules=LATE_OK)
    assert signals(h) == [("u_turn", 5_500, "/p/1", "")]


def test_late_step_view_inside_the_lateness_still_makes_the_loop() -> None:
    # views at 0, 40 s, then the 20 s one arrives last: the third view, whatever its time
    views = [on("/checkout", track("Checkout Step Viewed", T0 + t, checkout_id="chk-1", step=1)) for t in (0, 40_000, 20_000)]
    h = run(*views, rules=LATE_OK)
    assert signals(h) == [("checkout_loop", 20_000, "/checkout", "step 1")]


# -- late events of the other signals ---------------------------------------------


def test_late_dead_click_counts_once_at_its_own_time() -> None:
    # lateness 1 s: a responding click at 5000, then the dead click from 4500 arrives
    h = run(
        click(5_000, "a.nav", interactive=True, responded=True),
        click(4_500, "a.size-guide", interactive=True, responded=False),
        rules=LATE_OK,
    )
    assert signals(h) == [("dead_click", 4_500, "/p/1", "a.size-guide")]


def test_late_error_after_a_later_click_pairs_with_the_click_before_it() -> None:
    # lateness 1 s: click a at 0, click b at 1500, then the error from 900 arrives (600 ms late):
    # it pairs with a (0..900 is within 1 s), not with b, which came after it
    h = run(
        click(0, "button.a", interactive=True, responded=True),
        click(1_500, "button.b", interactive=True, responded=True),
        error(900),
        rules=LATE_OK,
    )
    assert signals(h) == [("error_click", 900, "/p/1", "button.a")]


def test_payment_failures_count_per_checkout_and_a_late_one_counts_too() -> None:
    # chk-1 fails at 30 s; chk-2 (a new checkout in the same session) fails at 90 s;
    # chk-1's failure from 20 s arrives late (after 30 s, lateness 1 min)
    lateness = Rules(allowed_lateness_ms=MIN, holdout_pct=0.0)
    h = run(
        on("/pay", track("Payment Failed", T0 + 30_000, checkout_id="chk-1")),
        on("/pay", track("Payment Failed", T0 + 90_000, checkout_id="chk-2")),
        on("/pay", track("Payment Failed", T0 + 20_000, checkout_id="chk-1")),
        rules=lateness,
    )
    assert signals(h) == [
        ("payment_failed", 30_000, "/pay", "chk-1"),
        ("payment_failed", 90_000, "/pay", "chk-2"),
        ("payment_failed", 20_000, "/pay", "chk-1"),
    ]
    per_checkout = Counter(f["detail"] for f in h.facts["cx.friction"])
    assert per_checkout == {"chk-1": 2, "chk-2": 1}


def test_late_zero_result_search_counts_at_its_own_time() -> None:
    # a search with results at 2000, then the empty one from 1500 arrives late
    h = run(
        on("/search", track("Products Searched", T0 + 2_000, query="linen", results_count=12)),
        on("/search", track("Products Searched", T0 + 1_500, query="lin", results_count=0)),
        rules=LATE_OK,
    )
    assert signals(h) == [("zero_result_search", 1_500, "/search", "")]


def test_late_coupon_denial_still_makes_the_coupon_loop() -> None:
    # denials at 40 s, then the one from 20 s arrives late: the second to arrive makes the loop
    # (the count is the same as in order; the row has the time of the denial that arrived second)
    h = run(
        on("/checkout", track("Coupon Denied", T0 + 40_000, coupon_id="SPRING", reason="minimum")),
        on("/checkout", track("Coupon Denied", T0 + 20_000, coupon_id="WELCOME", reason="expired")),
        rules=Rules(allowed_lateness_ms=MIN, holdout_pct=0.0),
    )
    assert signals(h) == [("checkout_loop", 20_000, "/checkout", "coupon")]


# -- non-default settings -----------------------------------------------------------


def test_error_click_window_is_a_setting() -> None:
    # 500 ms: an error 500 ms after the click pairs, 501 ms does not
    rules = Rules(allowed_lateness_ms=0, holdout_pct=0.0, friction_error_click_ms=500)
    assert len(signals(run(click(0, "button.a", interactive=True, responded=True), error(500), rules=rules))) == 1
    assert signals(run(click(0, "button.a", interactive=True, responded=True), error(501), rules=rules)) == []


def test_u_turn_window_is_a_setting() -> None:
    # 5 s: back on / 5000 ms after /p/1 is a u-turn, 5001 ms is not
    rules = Rules(allowed_lateness_ms=0, holdout_pct=0.0, friction_u_turn_ms=5_000)
    assert len(signals(run(visit(0, "/"), visit(10_000, "/p/1"), visit(15_000, "/"), rules=rules))) == 1
    assert signals(run(visit(0, "/"), visit(10_000, "/p/1"), visit(15_001, "/"), rules=rules)) == []


def test_loop_counts_are_settings() -> None:
    # 2 views of a step make the loop; 3 denied coupons are needed
    rules = Rules(allowed_lateness_ms=0, holdout_pct=0.0, friction_loop_step_views=2, friction_loop_coupon_denials=3)
    h = run(
        on("/checkout", track("Checkout Step Viewed", T0, checkout_id="chk-1", step=1)),
        on("/checkout", track("Checkout Step Viewed", T0 + 10_000, checkout_id="chk-1", step=1)),
        on("/checkout", track("Coupon Denied", T0 + 20_000, coupon_id="A")),
        on("/checkout", track("Coupon Denied", T0 + 30_000, coupon_id="B")),
        on("/checkout", track("Coupon Denied", T0 + 40_000, coupon_id="C")),
        rules=rules,
    )
    assert signals(h) == [
        ("checkout_loop", 10_000, "/checkout", "step 1"),
        ("checkout_loop", 40_000, "/checkout", "coupon"),
    ]


# -- sessions -----------------------------------------------------------------------


def hinted(event: dict, session: str) -> dict:
    event["session_hint"] = session  # the browser's own session id
    return event


def test_interleaved_sessions_keep_their_own_memory() -> None:
    # s1 clicks at 0 and 200; an event of s2 at 300 (another tab's session); s1 clicks at 400:
    # the three s1 clicks are a rage click in s1
    h = run(
        hinted(click(0), "s1"), hinted(click(200), "s1"), hinted(click(300, "a.x"), "s2"), hinted(click(400), "s1"),
        rules=LATE_OK,
    )  # fmt: skip
    assert signals(h) == [("rage_click", 400, "/p/1", "img.hero")]
    s1, _, s2, _ = (row["session_id"] for row in h.rows)
    assert h.facts["cx.friction"][0]["session_id"] == s1 != s2


def test_only_the_three_most_recent_sessions_are_remembered() -> None:
    # s1 clicks at 0 and 200; s2, s3 and s4 each send one click (300, 320, 340): s1 has the oldest
    # last event and is forgotten; its click at 400 then starts afresh: no rage
    h = run(
        hinted(click(0), "s1"), hinted(click(200), "s1"),
        hinted(click(300, "a.x"), "s2"), hinted(click(320, "a.x"), "s3"), hinted(click(340, "a.x"), "s4"),
        hinted(click(400), "s1"),
        rules=LATE_OK,
    )  # fmt: skip
    assert signals(h) == []
    data = h.table[visitor_key("shop-a", "anon-1", None)]
    assert encode_state(decode_state(data)) == data
    assert len(data) < 900  # three sessions of one or two buffered clicks each
