"""Friction signals (CONTRACT.md section 5), the session friction score and assist triggers; pure.

``observe`` runs for the events in ``FRICTION_EVENTS`` and for page views,
after the event was placed in its session; every other event costs one set
lookup in the processor. Each signal occurrence becomes one fact row for
``cx.friction`` whose id comes from the event that revealed it and the
signal, so a replay writes the same rows. Definitions, all in event time,
thresholds from ``Rules`` (settings ``CX_FRICTION_*``):

- ``rage_click``: ``friction_rage_clicks`` (3) ``Element Clicked`` on one
  selector within ``friction_rage_window_ms`` (1 s, inclusive: first to last
  click <= 1000 ms) and within ``friction_rage_radius_px`` (30 px, inclusive)
  of the click that completes the burst. Clicks continuing a counted burst
  (same selector, within the window and radius of one of its clicks) join it
  and count nothing more. Selectors containing an excluded entry (text
  fields, +/- steppers: ``friction_rage_exclude``) are never rage.
- ``dead_click``: a click with ``interactive`` true and ``responded`` false.
- ``error_click``: an ``Error Shown`` 0 to ``friction_error_click_ms`` (1 s,
  inclusive) after a click; each error pairs with the latest click not
  already paired, each click with at most one error. At the error's time.
- ``payment_failed``: each ``Payment Failed``; the row's detail is the
  checkout id, so failures per checkout can be counted.
- ``checkout_loop``: the ``friction_loop_step_views``-th (3rd) view of one
  checkout step in the session (detail ``step N``), or the
  ``friction_loop_coupon_denials``-th (2nd) ``Coupon Denied`` (``coupon``).
- ``zero_result_search``: ``Products Searched`` with ``results_count`` 0.
- ``slow_page``: a page view with ``load_time_ms`` over ``friction_slow_page_ms``.
- ``u_turn``: page A, page B, then A again within ``friction_u_turn_ms``
  (10 s, inclusive) of B; the signal's page is B's path, the page that was
  left. Pages are told apart by url without fragment (two searches on one
  path are two pages), else by path; a reload is not a new page.

Late events: clicks and errors are kept sorted by event time in a small
per-session buffer (the window plus the allowed lateness), so a click that
arrives late but inside the allowed lateness still completes a burst or
pairs with an error, with the same count as in order. A late page view
(earlier than the current page's) is checked for slowness but does not
change the current page. Which event of a burst names the fact row follows
arrival order, which a replay repeats exactly.

Score: the sum over the session's occurrences of each signal's weight,
capped at 100. ``checkout_friction`` (action ``assist``; ``none`` for the
holdout) fires when a session that is in checkout (it sent a checkout event)
and has no ``Order Completed`` yet reaches ``friction_assist_score`` on an
event that added friction or brought it into checkout; at most one per
session per ``friction_assist_cap_ms``.
"""

from __future__ import annotations

import math
from bisect import insort

from pipeline.detect.friction_state import CONSUMED, ERRORED, MAX_CHECKOUT_STEPS, MAX_CLICKS, MAX_ERRORS, FrictionState
from pipeline.detect.attribution import remember_trigger
from pipeline.detect.offers import in_holdout
from pipeline.detect.rules import Rules
from pipeline.detect.state import VisitorState
from pipeline.records import stable_id
from pipeline.settings import FRICTION_SIGNALS

__all__ = ["FRICTION_EVENTS", "FRICTION_TABLE", "observe", "reasons", "score"]

FRICTION_TABLE = "cx.friction"
CLICK, ERROR, SEARCH = "Element Clicked", "Error Shown", "Products Searched"
PAYMENT_FAILED, STEP_VIEWED, COUPON_DENIED = "Payment Failed", "Checkout Step Viewed", "Coupon Denied"
ORDER_COMPLETED = "Order Completed"
_IN_CHECKOUT = frozenset(
    {"Checkout Started", STEP_VIEWED, "Checkout Step Completed", "Payment Info Entered", PAYMENT_FAILED,
     "Coupon Applied", COUPON_DENIED}
)  # fmt: skip
FRICTION_EVENTS = frozenset({CLICK, ERROR, SEARCH, ORDER_COMPLETED}) | _IN_CHECKOUT

Hit = tuple[str, int, str, str]  # (signal, event time ms, page, detail)


def _number(value: object) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def _text(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(int(value)) if float(value).is_integer() else str(value)
    return ""


def score(counts: dict[str, int], rules: Rules) -> int:
    """The session friction score, 0-100: weight x occurrences, summed, capped."""
    return min(100, sum(points * counts.get(signal, 0) for signal, points in rules.friction_weights))


def reasons(counts: dict[str, int], rules: Rules) -> list[str]:
    """What made the score, heaviest first: ``rage_click``, ``payment_failed_x2`` (two occurrences), ..."""
    weights = dict(rules.friction_weights)
    present = [(s, n) for s in FRICTION_SIGNALS if (n := counts.get(s, 0)) and weights.get(s, 0)]
    present.sort(key=lambda sn: -weights[sn[0]] * sn[1])  # stable: ties keep the contract's order
    return [s if n == 1 else f"{s}_x{n}" for s, n in present]


def observe(
    state: VisitorState, event: dict, props: dict, session_id: str, rules: Rules, wall_ms: int
) -> tuple[list[dict], dict | None]:
    """Apply one page view or ``FRICTION_EVENTS`` event; return its fact rows and an assist trigger or None.

    Events outside a browser session (``session_id`` '') carry no friction.
    """
    if not session_id:
        return [], None
    f = state.friction
    if f is None or f.sid != session_id:
        f = state.friction = FrictionState(sid=session_id)
    t = event["event_time_ms"]
    name = event.get("event")
    page = event.get("page_path") or f.page
    hits: list[Hit] = []
    entered_checkout = False
    if event.get("type") == "page":
        _on_page(f, event, t, props, rules, hits)
    elif name == CLICK:
        _on_click(f, t, props, page, rules, hits)
    elif name == ERROR:
        _on_error(f, t, page, rules, hits)
    elif name == SEARCH:
        count = props.get("results_count")
        if count == 0 and not isinstance(count, bool):
            hits.append(("zero_result_search", t, page, ""))
    elif name == ORDER_COMPLETED:
        f.ordered = True
    if name in _IN_CHECKOUT:
        entered_checkout = not f.in_checkout
        f.in_checkout = True
        f.checkout_id = _text(props.get("checkout_id")) or f.checkout_id
        _on_checkout(f, name, t, props, page, rules, hits)
    if not hits and not entered_checkout:
        return [], None  # most page views
    facts = [_fact(state, event, session_id, hit) for hit in hits]
    for signal, *_ in hits:
        f.counts[signal] = f.counts.get(signal, 0) + 1
    at = max([t] + [hit[1] for hit in hits])
    return facts, _assist(state, f, at, rules, wall_ms)


def _on_page(f: FrictionState, event: dict, t: int, props: dict, rules: Rules, hits: list[Hit]) -> None:
    path = event.get("page_path") or ""
    load_ms = _number(props.get("load_time_ms"))
    if load_ms is not None and load_ms > rules.friction_slow_page_ms:
        hits.append(("slow_page", t, path, ""))
    key = (event.get("page_url") or "").partition("#")[0] or path
    if not key or (f.page_ms is not None and t < f.page_ms):
        return  # a page without a path, or a late one: the current page stays
    if f.page_ms is not None and key == f.prev_key and key != f.page_key and t - f.page_ms <= rules.friction_u_turn_ms:
        hits.append(("u_turn", t, f.page, ""))
    if key != f.page_key:  # a reload keeps the page before
        f.prev_key, f.page_key = f.page_key, key
    f.page = path
    f.page_ms = t


def _excluded(selector: str, rules: Rules) -> bool:
    return any(entry in selector for entry in rules.friction_rage_exclude)


def _near(a: list, b: list, radius: float) -> bool:
    if a[2] is None or a[3] is None or b[2] is None or b[3] is None:
        return True  # no coordinates sent: the selector alone decides
    return math.hypot(a[2] - b[2], a[3] - b[3]) <= radius


def _on_click(f: FrictionState, t: int, props: dict, page: str, rules: Rules, hits: list[Hit]) -> None:
    selector = props.get("selector")
    if not isinstance(selector, str) or not selector:
        return
    if props.get("interactive") is True and props.get("responded") is False:
        hits.append(("dead_click", t, page, selector))
    click = [t, selector, _number(props.get("x")), _number(props.get("y")), 0]
    insort(f.clicks, click, key=lambda c: c[0])  # after clicks of the same millisecond: arrival order
    error_window = rules.friction_error_click_ms
    for error in f.errors:  # a late click may come before an error still waiting for one
        if not error[1] and t <= error[0] <= t + error_window:
            error[1] = 1
            click[4] |= ERRORED
            hits.append(("error_click", error[0], page, selector))
            break
    if not _excluded(selector, rules):
        _rage(f, click, page, rules, hits)
    _prune(f, rules)


def _rage(f: FrictionState, click: list, page: str, rules: Rules, hits: list[Hit]) -> None:
    window, radius, needed = rules.friction_rage_window_ms, rules.friction_rage_radius_px, rules.friction_rage_clicks
    t, selector = click[0], click[1]
    same = [c for c in f.clicks if c[1] == selector and abs(c[0] - t) <= window and _near(c, click, radius)]
    if any(c[4] & CONSUMED for c in same):
        click[4] |= CONSUMED  # the burst goes on: it was counted once already
        return
    at = same.index(click)
    for start in range(max(0, at - needed + 1), min(at, len(same) - needed) + 1):
        burst = same[start : start + needed]
        if burst[-1][0] - burst[0][0] <= window:
            for c in burst:
                c[4] |= CONSUMED
            hits.append(("rage_click", burst[-1][0], page, selector))
            return


def _on_error(f: FrictionState, t: int, page: str, rules: Rules, hits: list[Hit]) -> None:
    window = rules.friction_error_click_ms
    paired = 0
    for click in reversed(f.clicks):  # the latest click before the error first
        if click[0] <= t <= click[0] + window and not click[4] & ERRORED:
            click[4] |= ERRORED
            hits.append(("error_click", t, page, click[1]))
            paired = 1
            break
    insort(f.errors, [t, paired], key=lambda e: e[0])
    _prune(f, rules)


def _prune(f: FrictionState, rules: Rules) -> None:
    # Keep what a later or late event can still combine with.
    keep_ms = max(rules.friction_rage_window_ms, rules.friction_error_click_ms) + rules.allowed_lateness_ms
    newest = max(f.clicks[-1][0] if f.clicks else 0, f.errors[-1][0] if f.errors else 0)
    f.clicks = [c for c in f.clicks if newest - c[0] <= keep_ms][-MAX_CLICKS:]
    f.errors = [e for e in f.errors if newest - e[0] <= keep_ms][-MAX_ERRORS:]


def _on_checkout(f: FrictionState, name: str, t: int, props: dict, page: str, rules: Rules, hits: list[Hit]) -> None:
    if name == PAYMENT_FAILED:
        hits.append(("payment_failed", t, page, _text(props.get("checkout_id"))))
    elif name == STEP_VIEWED:
        step = _text(props.get("step"))
        if step and (step in f.step_views or len(f.step_views) < MAX_CHECKOUT_STEPS):
            views = f.step_views[step] = f.step_views.get(step, 0) + 1
            if views == rules.friction_loop_step_views:
                hits.append(("checkout_loop", t, page, f"step {step}"))
    elif name == COUPON_DENIED:
        f.coupons_denied += 1
        if f.coupons_denied == rules.friction_loop_coupon_denials:
            hits.append(("checkout_loop", t, page, "coupon"))


def _fact(state: VisitorState, event: dict, session_id: str, hit: Hit) -> dict:
    signal, t, page, detail = hit
    return {
        "tenant": state.tenant,
        "friction_id": stable_id("friction", state.tenant, event["event_id"], signal),
        "event_time_ms": t,
        "session_id": session_id,
        "anonymous_id": state.anonymous_id or "",
        "customer_id": state.user_id or "",
        "signal": signal,
        "page": page,
        "detail": detail,
    }


def _assist(state: VisitorState, f: FrictionState, at: int, rules: Rules, wall_ms: int) -> dict | None:
    if not f.in_checkout or f.ordered:
        return None
    points = score(f.counts, rules)
    if points < rules.friction_assist_score:
        return None
    if f.assist_ms is not None and at - f.assist_ms < rules.friction_assist_cap_ms:
        return None
    f.assist_ms = at
    cart = state.find_cart(state.checkouts.get(f.checkout_id)) or state.find_cart(state.open_cart)
    if cart is not None and cart.ordered_ms is not None:
        cart = None
    experiment = rules.experiment_for("checkout_friction")
    holdout = in_holdout(rules, state.tenant, state.user_id or state.anonymous_id or "", experiment)
    trigger = {
        "trigger_id": stable_id("checkout_friction", state.tenant, f.sid, at),
        "kind": "checkout_friction",
        "tenant": state.tenant,
        "customer_id": state.user_id,
        "anonymous_id": state.anonymous_id,
        "session_id": f.sid,
        "cart_id": cart.cart_id if cart else None,
        "cart_key": state.cart_key(cart) if cart else "",
        "cart_value": cart.value if cart else 0.0,
        "currency": cart.currency if cart else None,
        "items": cart.trigger_items() if cart else [],
        "event_time_ms": at,
        "emitted_at_ms": wall_ms,
        "reasons": reasons(f.counts, rules),
        "friction_score": points,
        "action": "none" if holdout else "assist",
        "offer": None,
        "holdout": holdout,
        "experiment": experiment,
        "ref_trigger_id": None,
    }
    # An order after the assist, within the attribution window, counts as
    # recovered in offers_daily, in either arm: the uplift of an assist.
    remember_trigger(state, trigger)
    return trigger
