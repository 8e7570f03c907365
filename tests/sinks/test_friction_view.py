"""friction_daily on both backends: hand-computed affected/unaffected conversion, tenants apart, replays."""

from __future__ import annotations

from datetime import date

import pytest

from sinks.client import ClickHouse
from sinks.rows import friction_row
from sinks.sink import ClickHouseSink
from tests.sinks.records import event, ms

D1, D2 = date(2024, 3, 10), date(2024, 3, 11)

# shop-f, D1 unless said (sessions by their events; friction rows below)
#   s1  page, Order Completed              converted   rage_click /p/1 x2, slow_page /
#   s2  page                                            rage_click /p/1, payment_failed /pay
#   s3  page, Order Completed              converted   payment_failed /pay x2
#   s4  page                                            dead_click /p/2
#   s5  page, Order Completed              converted   -
#   s6  D1 23:59 page, D2 00:01 page,      converted   u_turn /c/x on D2
#       D2 00:05 Order Completed                        (seen on both days: in both populations)
# shop-g (same session id as shop-f's s1, kept apart)
#   s1  page                                            rage_click /p/1
EVENTS = [
    event("shop-f", "e1", "2024-03-10 10:00:00", None, "s1", call="page"),
    event("shop-f", "e2", "2024-03-10 10:05:00", "Order Completed", "s1", props={"order_id": "o1", "total": 10}),
    event("shop-f", "e3", "2024-03-10 11:00:00", None, "s2", call="page"),
    event("shop-f", "e4", "2024-03-10 12:00:00", None, "s3", call="page"),
    event("shop-f", "e5", "2024-03-10 12:09:00", "Order Completed", "s3", props={"order_id": "o3", "total": 10}),
    event("shop-f", "e6", "2024-03-10 13:00:00", None, "s4", call="page"),
    event("shop-f", "e7", "2024-03-10 14:00:00", None, "s5", call="page"),
    event("shop-f", "e8", "2024-03-10 14:03:00", "Order Completed", "s5", props={"order_id": "o5", "total": 10}),
    event("shop-f", "e9", "2024-03-10 23:59:00", None, "s6", call="page"),
    event("shop-f", "e10", "2024-03-11 00:01:00", None, "s6", call="page"),
    event("shop-f", "e11", "2024-03-11 00:05:00", "Order Completed", "s6", props={"order_id": "o6", "total": 10}),
    event("shop-g", "g1", "2024-03-10 10:00:00", None, "s1", call="page"),
]


def fact(tenant: str, fid: str, at: str, session: str, signal: str, page: str, detail: str = "") -> dict:
    return {
        "tenant": tenant, "friction_id": fid, "event_time_ms": ms(at), "session_id": session,
        "anonymous_id": f"anon-{session}", "customer_id": "", "signal": signal, "page": page, "detail": detail,
    }  # fmt: skip


FACTS = [
    fact("shop-f", "f1", "2024-03-10 10:01:00", "s1", "rage_click", "/p/1", "button.buy"),
    fact("shop-f", "f2", "2024-03-10 10:02:00", "s1", "rage_click", "/p/1", "button.buy"),
    fact("shop-f", "f3", "2024-03-10 10:03:00", "s1", "slow_page", "/"),
    fact("shop-f", "f4", "2024-03-10 11:01:00", "s2", "rage_click", "/p/1", "img.zoom"),
    fact("shop-f", "f5", "2024-03-10 11:02:00", "s2", "payment_failed", "/pay", "chk-2"),
    fact("shop-f", "f6", "2024-03-10 12:01:00", "s3", "payment_failed", "/pay", "chk-3"),
    fact("shop-f", "f7", "2024-03-10 12:02:00", "s3", "payment_failed", "/pay", "chk-3"),
    fact("shop-f", "f8", "2024-03-10 13:01:00", "s4", "dead_click", "/p/2", "a.size-guide"),
    fact("shop-f", "f9", "2024-03-11 00:01:00", "s6", "u_turn", "/c/x"),
    fact("shop-g", "g-f1", "2024-03-10 10:00:30", "s1", "rage_click", "/p/1", "button.buy"),
]

# (tenant, day, signal, page): sessions_affected, occurrences, conversion_rate_affected, conversion_rate_unaffected
# shop-f D1 population: s1..s6 = 6 sessions, converted s1, s3, s5, s6 = 4.
EXPECTED = {
    ("shop-f", D1, "rage_click", "/p/1"): (2, 3, 1 / 2, 3 / 4),  # s1 s2; others s3-s6: 3 of 4 converted
    ("shop-f", D1, "slow_page", "/"): (1, 1, 1.0, 3 / 5),  # s1; others s2-s6: s3 s5 s6
    ("shop-f", D1, "payment_failed", "/pay"): (2, 3, 1 / 2, 3 / 4),  # s2 s3; others s1 s4 s5 s6
    ("shop-f", D1, "dead_click", "/p/2"): (1, 1, 0.0, 4 / 5),  # s4; others: all 4 converted ones
    ("shop-f", D2, "u_turn", "/c/x"): (1, 1, 1.0, None),  # s6 is D2's only session: no one unaffected, NULL
    ("shop-g", D1, "rage_click", "/p/1"): (1, 1, 0.0, None),  # shop-g's only session
}

SQL = (
    "SELECT tenant, day, signal, page, sessions_affected, occurrences, conversion_rate_affected, "
    "conversion_rate_unaffected FROM cx.friction_daily"
)


def write(ch: ClickHouse, events: list[dict], facts: list[dict]) -> None:
    sink = ClickHouseSink(ch)
    sink.add_events(events)
    sink.add_facts("cx.friction", facts)
    sink.flush()


def friction_daily(ch: ClickHouse) -> dict:
    return {tuple(r[:4]): tuple(r[4:]) for r in ch.execute(SQL)}


def test_friction_daily_matches_hand_computed_values(ch_backend: ClickHouse) -> None:
    write(ch_backend, EVENTS, FACTS)
    got = friction_daily(ch_backend)
    assert set(got) == set(EXPECTED)
    for key, (sessions, occurrences, affected, unaffected) in EXPECTED.items():
        assert got[key][:2] == (sessions, occurrences), key
        assert got[key][2] == pytest.approx(affected), key
        assert got[key][3] == (None if unaffected is None else pytest.approx(unaffected)), key


def test_replayed_friction_rows_leave_friction_daily_unchanged(ch_backend: ClickHouse) -> None:
    write(ch_backend, EVENTS, FACTS)
    before = friction_daily(ch_backend)
    write(ch_backend, EVENTS[:4], FACTS[:3])  # a crash and a replay in other batch boundaries
    write(ch_backend, EVENTS, FACTS)
    assert friction_daily(ch_backend) == before
    assert ch_backend.execute("SELECT count() FROM cx.friction FINAL") == [(len(FACTS),)]


def test_friction_row_has_the_columns_of_the_table() -> None:
    row = friction_row(FACTS[0])
    assert row[:3] == ("shop-f", "f1", D1)
    assert row[3:5] == (ms("2024-03-10 10:01:00") // 1000, ms("2024-03-10 10:01:00"))
    assert row[5:] == ("s1", "anon-s1", "", "rage_click", "/p/1", "button.buy")
