"""Friction signals (docs/detection.md), the session friction score and assist triggers; pure.

``observe`` runs for the events in ``vocabulary.FRICTION_INPUTS`` and for page views,
after the event was placed in its session; every other event costs one set
lookup in the processor. Each signal occurrence becomes one fact row for
``cx.friction`` whose id comes from the event that revealed it and the
signal (``stable_id("friction", tenant, event_id, signal)``; a second
occurrence of one signal revealed by one late event adds its number), so a
replay writes the same rows. Definitions, all in event time,
thresholds from ``Rules`` (settings ``CX_FRICTION_*``):

- ``rage_click``: ``friction_rage_clicks`` (3) ``Element Clicked`` on one
  selector within ``friction_rage_window_ms`` (1 s, inclusive: first to last
  click <= 1000 ms) and within ``friction_rage_radius_px`` (30 px, inclusive)
  of the click that completes the burst. Clicks continuing a counted burst
  (same selector, within the window and radius of one of its clicks) join it
  and count nothing more. Text fields, +/- steppers and the other elements of
  ``friction_rage_exclude`` are never rage (nor dead clicks): an entry is a
  compound CSS selector (tag, ``#id``, ``.class``, ``[attr]``, ``[attr=v]``,
  ``[attr*=v]``, ...) matched against each element of the click's selector,
  quotes and case ignored, an ``input`` without ``type`` being a text field;
  an entry with a combinator must occur in the selector as written.
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
  (10 s, inclusive) of B's last view; the signal's page is B's path, the
  page that was left. Pages are told apart by url without fragment (two
  searches on one path are two pages), else by path; a reload is not a new
  page.

Late events: clicks, errors and page views are kept sorted by event time in
small per-session buffers (the window plus the allowed lateness), and a late
one is decided in its place in event time, as if it had come in order: a
late click completes or joins its burst, pairs with its error, a late page
view makes or separates a u-turn. A row once written is never taken back, so
two cases differ from the in-order result: a late click that links two
bursts already counted leaves both rows, and a late page view between a
counted u-turn's pages leaves its row. A row revealed by a late event takes
that event's id; a burst completed earlier in event time than the click that
wrote its row keeps that row (and its time). Step views and denied coupons
count in arrival order: the same counts, the row at the event that arrived
n-th. The memory is per session, for the visitor's three most recent
sessions, so a late event of the previous session still finds its own.

Score: the sum over the session's occurrences of each signal's weight,
capped at 100. ``checkout_friction`` (action ``assist``; ``none`` for the
holdout) fires when a session that is in checkout (it sent a checkout event)
and has no ``Order Completed`` yet reaches ``friction_assist_score`` on an
event that added friction or brought it into checkout; at most one per
session per ``friction_assist_cap_ms``.
"""

from __future__ import annotations

import math
import re
from bisect import insort
from functools import lru_cache

from pipeline.detect.friction_state import (
    COUNTED, DONE, ERRORED, MAX_CHECKOUT_STEPS, MAX_CLICKS, MAX_ERRORS, MAX_PAGES, ROW, UTURN, FrictionState,
    SessionFriction,
)  # fmt: skip
from pipeline.detect.attribution import remember_trigger
from pipeline.detect.offers import decide_assist
from pipeline.detect.rules import FRICTION_SIGNALS, Rules
from pipeline.detect.state import VisitorState
from pipeline.wire.records import stable_id
from pipeline.vocabulary import (
    CHECKOUT_STEP_VIEWED, COUPON_DENIED, ELEMENT_CLICKED, ERROR_SHOWN, IN_CHECKOUT, ORDER_COMPLETED, PAYMENT_FAILED,
    PRODUCTS_SEARCHED, label, number,
)  # fmt: skip

__all__ = ["FRICTION_TABLE", "observe", "reasons", "score"]

FRICTION_TABLE = "cx.friction"

Hit = tuple[str, int, str, str]  # (signal, event time ms, page, detail)


def score(counts: dict[str, int], rules: Rules) -> int:
    """The session friction score, 0-100: weight x occurrences, summed, capped."""
    return min(100, sum(points * counts.get(signal, 0) for signal, points in rules.friction_weights))


def reasons(counts: dict[str, int], rules: Rules) -> list[str]:
    """What made the score, heaviest first: ``rage_click``, ``payment_failed_x2`` (two occurrences), ..."""
    weights = dict(rules.friction_weights)
    present = [(s, n) for s in FRICTION_SIGNALS if (n := counts.get(s, 0)) and weights.get(s, 0)]
    present.sort(key=lambda sn: -weights[sn[0]] * sn[1])  # stable: ties keep FRICTION_SIGNALS' order
    return [s if n == 1 else f"{s}_x{n}" for s, n in present]


def observe(
    state: VisitorState, event: dict, props: dict, session_id: str, rules: Rules, wall_ms: int
) -> tuple[list[dict], dict | None]:
    """Apply one page view or ``FRICTION_INPUTS`` event; return its fact rows and an assist trigger or None.

    Events outside a browser session (``session_id`` '') carry no friction.
    """
    if not session_id:
        return [], None
    t = event["event_time_ms"]
    if state.friction is None:
        state.friction = FrictionState()
    f = state.friction.session(session_id, t, rules.session_gap_ms + rules.allowed_lateness_ms)
    name = event.get("event")
    page = event.get("page_path") or f.page
    hits: list[Hit] = []
    entered_checkout = False
    if event.get("type") == "page":
        _on_page(f, event, t, props, rules, hits)
    elif name == ELEMENT_CLICKED:
        _on_click(f, t, props, page, rules, hits)
    elif name == ERROR_SHOWN:
        _on_error(f, t, page, rules, hits)
    elif name == PRODUCTS_SEARCHED:
        count = props.get("results_count")
        if count == 0 and not isinstance(count, bool):
            hits.append(("zero_result_search", t, page, ""))
    elif name == ORDER_COMPLETED:
        f.ordered = True
    if name in IN_CHECKOUT:
        entered_checkout = not f.in_checkout
        f.in_checkout = True
        f.checkout_id = label(props.get("checkout_id")) or f.checkout_id
        _on_checkout(f, name, t, props, page, rules, hits)
    if not hits and not entered_checkout:
        return [], None  # most page views
    facts = _facts(state, event, session_id, hits)
    for signal, *_ in hits:
        f.counts[signal] = f.counts.get(signal, 0) + 1
    at = max([t] + [hit[1] for hit in hits])
    return facts, _assist(state, f, at, rules, wall_ms)


# -- pages -------------------------------------------------------------------------


def _on_page(f: SessionFriction, event: dict, t: int, props: dict, rules: Rules, hits: list[Hit]) -> None:
    path = event.get("page_path") or ""
    load_ms = number(props.get("load_time_ms"))
    if load_ms is not None and load_ms > rules.friction_slow_page_ms:
        hits.append(("slow_page", t, path, ""))
    key = (event.get("page_url") or "").partition("#")[0] or path
    if not key:
        return  # a page without a path cannot be told apart from another
    view = [t, key, path, 0]
    pages = f.pages
    if not pages or pages[-1][0] <= t:
        # In order (most views): the view ends the list, so only a return it makes can change.
        pages.append(view)
        if len(pages) > 1 and pages[-2][1] != key:
            left = pages[-2]  # the last view of the page left
            j = len(pages) - 3
            while j >= 0 and pages[j][1] == left[1]:
                j -= 1
            if j >= 0 and pages[j][1] == key and t - left[0] <= rules.friction_u_turn_ms:
                view[3] |= UTURN
                hits.append(("u_turn", t, left[2], ""))
        _prune_pages(f, rules.friction_u_turn_ms + rules.allowed_lateness_ms)
        return
    insort(pages, view, key=lambda v: v[0])  # after views of the same millisecond: arrival order
    runs = _runs(f.pages)
    at = next(i for i, run in enumerate(runs) if any(v is view for v in run))
    # The new view can only change the runs from its own to two after it: a
    # return it makes, or a return to a page it now separates or precedes.
    for i in range(max(2, at), min(at + 3, len(runs))):
        run, left, before = runs[i], runs[i - 1], runs[i - 2]
        if run[0][1] != before[0][1] or any(v[3] & UTURN for v in run):
            continue
        if run[0][0] - left[-1][0] <= rules.friction_u_turn_ms:
            run[0][3] |= UTURN
            hits.append(("u_turn", run[0][0], left[-1][2], ""))
    _prune_pages(f, rules.friction_u_turn_ms + rules.allowed_lateness_ms)


def _runs(pages: list[list]) -> list[list[list]]:
    """Page views in event time, grouped into pages: consecutive views of one key are one page (reloads)."""
    runs: list[list[list]] = []
    for view in pages:
        if runs and runs[-1][0][1] == view[1]:
            runs[-1].append(view)
        else:
            runs.append([view])
    return runs


def _prune_pages(f: SessionFriction, keep_ms: int) -> None:
    # Keep the views a late view can still fall between, and one view of each of
    # the two pages before them (a return needs the page before the page left).
    pages = f.pages
    newest = pages[-1][0]
    cut = next(i for i, v in enumerate(pages) if newest - v[0] <= keep_ms)
    kept = pages[cut:]
    older: list[list] = []  # newest first
    target = kept[0]
    for view in reversed(pages[:cut]):
        if view[1] == target[1]:  # an earlier view of the same page: its flag goes to the view kept
            target[3] |= view[3]
        elif len(older) == 2:
            break
        else:
            older.append(view)
            target = view
    f.pages = (older[::-1] + kept)[-MAX_PAGES:]


# -- clicks and errors -------------------------------------------------------------

_QUOTES = str.maketrans("", "", "'\"")
_BRACKETS = re.compile(r"\[([^\]]*)\]")
_COMBINATOR = re.compile(r"\s*[>+~]\s*|\s+")
_TAG = re.compile(r"[a-z][\w-]*")
_PART = re.compile(r"#[\w-]+|\.[\w-]+|\[[^\]]*\]|:[\w-]+(?:\([^)]*\))?")
_ATTRIBUTE = re.compile(r"\[([\w-]+)(?:([*^$~|]?=)(.*))?\]")


def _normal(selector: str) -> str:
    """Lower case, without quotes, and without spaces inside ``[...]``."""
    text = selector.lower().translate(_QUOTES).strip()
    return _BRACKETS.sub(lambda m: "[" + "".join(m[1].split()) + "]", text)


def _compound(text: str) -> tuple[str, dict[str, str], list[str]]:
    """One compound selector: its tag, its attributes (``id``, ``class``, ...), its pseudo-classes.

    An ``input`` without a ``type`` is a text field, as in HTML.
    """
    m = _TAG.match(text)
    tag = m[0] if m else ""
    attrs: dict[str, str] = {}
    classes, pseudo = [], []
    for part in _PART.findall(text, m.end() if m else 0):
        if part[0] == "#":
            attrs["id"] = part[1:]
        elif part[0] == ".":
            classes.append(part[1:])
        elif part[0] == ":":
            pseudo.append(part)
        elif a := _ATTRIBUTE.fullmatch(part):
            attrs[a[1]] = a[3] or ""
    if classes:
        attrs["class"] = " ".join(classes)
    if tag == "input":
        attrs.setdefault("type", "text")
    return tag, attrs, pseudo


_OPS = {
    None: lambda have, want: True,
    "=": lambda have, want: have == want,
    "*=": lambda have, want: want in have,
    "^=": lambda have, want: have.startswith(want),
    "$=": lambda have, want: have.endswith(want),
    "~=": lambda have, want: want in have.split(),
    "|=": lambda have, want: have == want or have.startswith(want + "-"),
}


def _matches(entry: str, compound: tuple[str, dict[str, str], list[str]]) -> bool:
    tag, attrs, pseudo = compound
    m = _TAG.match(entry)
    if m and m[0] != tag:
        return False
    for part in _PART.findall(entry, m.end() if m else 0):
        if part[0] == "#":
            ok = attrs.get("id") == part[1:]
        elif part[0] == ".":
            ok = part[1:] in attrs.get("class", "").split()
        elif part[0] == ":":
            ok = part in pseudo
        else:
            a = _ATTRIBUTE.fullmatch(part)
            ok = a is not None and a[1] in attrs and _OPS.get(a[2], _OPS["="])(attrs[a[1]], a[3] or "")
        if not ok:
            return False
    return True


@lru_cache(maxsize=64)
def _exclusion(entries: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The entries as (compound selectors, descendant chains matched as written)."""
    normal = [_normal(e) for e in entries]
    return tuple(e for e in normal if not _COMBINATOR.search(e)), tuple(e for e in normal if _COMBINATOR.search(e))


@lru_cache(maxsize=4096)
def _excluded_selector(selector: str, entries: tuple[str, ...]) -> bool:
    compounds, chains = _exclusion(entries)
    text = _normal(selector)
    if any(chain in text for chain in chains):
        return True
    parsed = [_compound(c) for c in _COMBINATOR.split(text) if c]
    return any(_matches(entry, c) for entry in compounds for c in parsed)


def _excluded(selector: str, rules: Rules) -> bool:
    """A text field, a +/- stepper or another element of ``friction_rage_exclude``, anywhere in the selector's path."""
    return _excluded_selector(selector, rules.friction_rage_exclude)


def _near(a: list, b: list, radius: float) -> bool:
    if a[2] is None or a[3] is None or b[2] is None or b[3] is None:
        return True  # no coordinates sent: the selector alone decides
    return math.hypot(a[2] - b[2], a[3] - b[3]) <= radius


def _on_click(f: SessionFriction, t: int, props: dict, page: str, rules: Rules, hits: list[Hit]) -> None:
    selector = props.get("selector")
    if not isinstance(selector, str) or not selector:
        return
    excluded = _excluded(selector, rules)
    if props.get("interactive") is True and props.get("responded") is False and not excluded:
        hits.append(("dead_click", t, page, selector))  # a text field or stepper need not change the page
    click = [t, selector, number(props.get("x")), number(props.get("y")), 0, None]
    insort(f.clicks, click, key=lambda c: c[0])  # after clicks of the same millisecond: arrival order
    error_window = rules.friction_error_click_ms
    for error in f.errors:  # a late click may come before an error still waiting for one
        if not error[1] and t <= error[0] <= t + error_window:
            error[1] = 1
            click[4] |= ERRORED
            hits.append(("error_click", error[0], page, selector))
            break
    if not excluded:
        _rage(f, click, page, rules, hits)
    _prune(f, rules)


def _rage(f: SessionFriction, click: list, page: str, rules: Rules, hits: list[Hit]) -> None:
    """Decide the selector's clicks from the new one on, in event time, as if they had come in order.

    A click joins a burst when one of the earlier clicks within the window and
    radius is in one; else it completes a burst when there are enough of them,
    and the latest of them become the burst's first clicks (``burst`` = its
    time). Decisions depend only on earlier clicks, so the ones before a late
    click stand; the marks that later completions made are taken back and made
    again.
    """
    window, radius, needed = rules.friction_rage_window_ms, rules.friction_rage_radius_px, rules.friction_rage_clicks
    t, selector = click[0], click[1]
    same = [c for c in f.clicks if c[1] == selector]
    at = next(i for i, c in enumerate(same) if c is click)
    for c in same:
        if c[5] is not None and c[5] > t:
            c[5] = None
    for c in same[at:]:
        c[4] &= ~(COUNTED | DONE)
    completed: list[list] = []
    for i in range(at, len(same)):
        c = same[i]
        prior = [p for p in same[:i] if c[0] - p[0] <= window and _near(p, c, radius)]
        if any(p[4] & COUNTED or p[5] is not None for p in prior):
            c[4] |= COUNTED
        elif len(prior) >= needed - 1:
            c[4] |= COUNTED | DONE
            for p in prior[len(prior) - needed + 1 :]:
                p[5] = c[0]
            if not c[4] & ROW:
                completed.append(c)
    # A row written for a click that no longer completes a burst (a late click
    # came before it) stands for the burst now completed before it, if any.
    stale = [c for c in same[at:] if c[4] & ROW and not c[4] & DONE]
    for c in completed:
        moved = next((s for s in stale if s[0] >= c[0]), None)
        if moved is not None:
            stale.remove(moved)
            moved[4] &= ~ROW
        else:
            hits.append(("rage_click", c[0], page, selector))
        c[4] |= ROW


def _on_error(f: SessionFriction, t: int, page: str, rules: Rules, hits: list[Hit]) -> None:
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


def _prune(f: SessionFriction, rules: Rules) -> None:
    # Keep what a later or late event can still combine with.
    keep_ms = max(rules.friction_rage_window_ms, rules.friction_error_click_ms) + rules.allowed_lateness_ms
    newest = max(f.clicks[-1][0] if f.clicks else 0, f.errors[-1][0] if f.errors else 0)
    f.clicks = [c for c in f.clicks if newest - c[0] <= keep_ms][-MAX_CLICKS:]
    f.errors = [e for e in f.errors if newest - e[0] <= keep_ms][-MAX_ERRORS:]


# -- checkout ------------------------------------------------------------------------


def _on_checkout(f: SessionFriction, name: str, t: int, props: dict, page: str, rules: Rules, hits: list[Hit]) -> None:
    if name == PAYMENT_FAILED:
        hits.append(("payment_failed", t, page, label(props.get("checkout_id"))))
    elif name == CHECKOUT_STEP_VIEWED:
        step = label(props.get("step"))
        if step and (step in f.step_views or len(f.step_views) < MAX_CHECKOUT_STEPS):
            views = f.step_views[step] = f.step_views.get(step, 0) + 1
            if views == rules.friction_loop_step_views:
                hits.append(("checkout_loop", t, page, f"step {step}"))
    elif name == COUPON_DENIED:
        f.coupons_denied += 1
        if f.coupons_denied == rules.friction_loop_coupon_denials:
            hits.append(("checkout_loop", t, page, "coupon"))


def _facts(state: VisitorState, event: dict, session_id: str, hits: list[Hit]) -> list[dict]:
    rows, seen = [], {}
    for signal, t, page, detail in hits:
        # One event may reveal two occurrences of one signal (a late click or
        # page view can); the second one's id also carries its number.
        n = seen[signal] = seen.get(signal, 0) + 1
        parts = ("friction", state.tenant, event["event_id"], signal) + ((n,) if n > 1 else ())
        rows.append({
            "tenant": state.tenant,
            "friction_id": stable_id(*parts),
            "event_time_ms": t,
            "session_id": session_id,
            "anonymous_id": state.anonymous_id or "",
            "customer_id": state.user_id or "",
            "signal": signal,
            "page": page,
            "detail": detail,
        })  # fmt: skip
    return rows


def _assist(state: VisitorState, f: SessionFriction, at: int, rules: Rules, wall_ms: int) -> dict | None:
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
    decision = decide_assist(
        rules, kind="checkout_friction", tenant=state.tenant, subject=state.user_id or state.anonymous_id or ""
    )
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
        "action": decision.action,
        "offer": None,
        "holdout": decision.holdout,
        "experiment": decision.experiment,
        "ref_trigger_id": None,
    }
    # An order after the assist, within the attribution window, counts as
    # recovered in offers_daily, in either arm: the uplift of an assist.
    remember_trigger(state, trigger)
    return trigger
