"""Friction signals on commented timelines: thresholds, their edges, exclusions and late events.

Times are milliseconds after T0; one visitor (anon-1) in one session unless
said. ``signals(h)`` lists what the processor wrote to ``cx.friction`` as
(signal, ms after T0, page, detail).
"""

from __future__ import annotations

from pipeline.detect import Rules
from pipeline.detect.friction import reasons, score
from pipeline.detect.state import decode_state, encode_state
from pipeline.records import visitor_key

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
    # contributions: payment_failed 60, rage_click 20, u_turn 20 (contract order breaks the tie), slow_page 5
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


def test_late_page_view_is_checked_for_slowness_but_does_not_move_the_current_page() -> None:
    # / at 0, /p/1 at 20 s; a slow /c/x page from 15 s arrives late; back on / at 25 s:
    # still a u-turn from /p/1 (the late page did not become the current page)
    pages = [visit(0, "/"), visit(20_000, "/p/1"), visit(15_000, "/c/x", load_ms=6_000), visit(25_000, "/")]
    h = run(*pages, rules=LATE_OK)
    assert signals(h) == [("slow_page", 15_000, "/c/x", ""), ("u_turn", 25_000, "/p/1", "")]


def test_late_step_view_inside_the_lateness_still_makes_the_loop() -> None:
    # views at 0, 40 s, then the 20 s one arrives last: the third view, whatever its time
    views = [on("/checkout", track("Checkout Step Viewed", T0 + t, checkout_id="chk-1", step=1)) for t in (0, 40_000, 20_000)]
    h = run(*views, rules=LATE_OK)
    assert signals(h) == [("checkout_loop", 20_000, "/checkout", "step 1")]
