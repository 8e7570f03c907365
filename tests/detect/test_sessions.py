"""Sessions: 30 min without events in event time ends one, unless the SDK names it."""

from __future__ import annotations

from pipeline.wire.records import stable_id

from tests.detect.helpers import MIN, T0, Harness, ev, page

GAP = 30 * MIN


def sessions(h: Harness) -> list[str]:
    return [r["session_id"] for r in h.rows]


def test_session_id_is_stable_from_tenant_visitor_and_start() -> None:
    h = Harness()
    h.each(page(T0, anon="anon-1"))
    assert sessions(h) == [stable_id("session", "shop-a", "anon-1", T0)[:20]]


def test_session_gap_exactly_30_min_starts_a_new_session() -> None:
    h = Harness()
    # T0             first page view: session A
    # T0+30m-1ms     1 ms short of the gap: still A
    # T0+60m-1ms     exactly 30 min after the previous event: session B
    h.each(page(T0, anon="anon-1"), page(T0 + GAP - 1, anon="anon-1"), page(T0 + 2 * GAP - 1, anon="anon-1"))
    a, still_a, b = sessions(h)
    assert a == still_a != b
    assert b == stable_id("session", "shop-a", "anon-1", T0 + 2 * GAP - 1)[:20]


def test_out_of_order_earlier_event_joins_current_session() -> None:
    h = Harness()
    # T0+40m   page view: session starting at T0+40m
    # T0       an event from 40 min earlier arrives late: joins the current session
    h.each(page(T0 + 40 * MIN, anon="anon-1"), page(T0, anon="anon-1"))
    assert sessions(h)[0] == sessions(h)[1] == stable_id("session", "shop-a", "anon-1", T0 + 40 * MIN)[:20]


def test_session_hint_defines_the_session() -> None:
    h = Harness()
    # T0        hint "s-1"
    # T0+2h     hint "s-1" again, after a 2 h gap: still "s-1" (the SDK decides)
    # T0+2h+1m  hint "s-2": a new session
    # T0+2h+2m  no hint, 1 min later: continues "s-2"
    h.each(
        page(T0, anon="anon-1", hint="s-1"),
        page(T0 + 120 * MIN, anon="anon-1", hint="s-1"),
        page(T0 + 121 * MIN, anon="anon-1", hint="s-2"),
        page(T0 + 122 * MIN, anon="anon-1"),
    )
    s1 = stable_id("session", "shop-a", "anon-1", "sdk", "s-1")[:20]
    s2 = stable_id("session", "shop-a", "anon-1", "sdk", "s-2")[:20]
    assert sessions(h) == [s1, s1, s2, s2]


def test_the_same_sdk_session_id_from_two_visitors_is_two_sessions() -> None:
    h = Harness()
    # T0     anon-1 sends SDK session id "1710064800000" (a start time, as Amplitude numbers sessions)
    # T0+1s  anon-2 sends the same SDK session id: another visitor, another session
    h.each(page(T0, anon="anon-1", hint="1710064800000"), page(T0 + 1000, anon="anon-2", hint="1710064800000"))
    assert sessions(h) == [
        stable_id("session", "shop-a", "anon-1", "sdk", "1710064800000")[:20],
        stable_id("session", "shop-a", "anon-2", "sdk", "1710064800000")[:20],
    ]


def test_user_only_events_without_hint_belong_to_no_browser_session() -> None:
    h = Harness()
    # T0  a helpdesk event keyed on the user id only: no browser session
    h.each(ev("Support Ticket Opened", T0, anon=None, user="cust-1", props={"ticket_id": "t-1", "channel": "chat"}))
    assert sessions(h) == [""]
