"""Analyst views on both backends: hand-computed KPIs, replays, UTC days, privacy."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date, datetime, timezone
from pathlib import Path

import orjson
import pytest

from sinks.client import ClickHouse
from sinks.sink import ClickHouseSink
from tests.sinks.records import deadletter, event, trigger

REPO_ROOT = Path(__file__).resolve().parents[2]
D1, D2 = date(2024, 3, 10), date(2024, 3, 11)

# Two tenants over two UTC days. Session and cart ids repeat across tenants
# on purpose: every view must keep tenants apart.
#
# shop-a
#   s1  D1 10:00 page, 10:05 Product Added k1, 10:20 Order Completed o1
#       (revenue 100, total 110: revenue wins)
#   s2  D1 23:50 page, 23:55 Product Added k2, D2 00:10 page (same session,
#       counted on D1); trigger cart_abandoned k2 at D2 00:25
#   s3  D2 09:00 Product Added k3 twice, 09:10 Order Completed o2 (total 50
#       only), 09:11 the same order again under a new message id
#   --  D2 09:30 identify without a session: not a session
# shop-b
#   s1  D1 12:00 Product Added k1; trigger cart_abandoned k1 at 12:30
#   --  trigger cart_abandoned k9 at D1 13:00 for a cart with no Product
#       Added in the data: not a cart
#   s5  D2 08:00 page only
EVENTS = [
    event("shop-a", "a-1", "2024-03-10 10:00:00", None, "s1", call="page"),
    event("shop-a", "a-2", "2024-03-10 10:05:00", "Product Added", "s1", cart_key="k1", props={"product_id": "p-1", "price": 100}),
    event("shop-a", "a-3", "2024-03-10 10:20:00", "Order Completed", "s1", props={"order_id": "o1", "revenue": 100, "total": 110}),
    event("shop-a", "a-4", "2024-03-10 23:50:00", None, "s2", call="page"),
    event("shop-a", "a-5", "2024-03-10 23:55:00", "Product Added", "s2", cart_key="k2", props={"product_id": "p-2", "price": 30}),
    event("shop-a", "a-6", "2024-03-11 00:10:00", None, "s2", call="page"),
    event("shop-a", "a-7", "2024-03-11 09:00:00", "Product Added", "s3", cart_key="k3", props={"product_id": "p-3", "price": 25}),
    event("shop-a", "a-8", "2024-03-11 09:01:00", "Product Added", "s3", cart_key="k3", props={"product_id": "p-3", "price": 25}),
    event("shop-a", "a-9", "2024-03-11 09:10:00", "Order Completed", "s3", props={"order_id": "o2", "total": 50}),
    event("shop-a", "a-10", "2024-03-11 09:11:00", "Order Completed", "s3", props={"order_id": "o2", "total": 50}),
    event("shop-a", "a-11", "2024-03-11 09:30:00", None, "", call="identify"),
    event("shop-b", "b-1", "2024-03-10 12:00:00", "Product Added", "s1", cart_key="k1", props={"product_id": "p-1", "price": 100}),
    event("shop-b", "b-2", "2024-03-11 08:00:00", None, "s5", call="page"),
]
TRIGGERS = [
    trigger("shop-a", "t-a2", "2024-03-11 00:25:00", "k2"),
    trigger("shop-b", "t-b1", "2024-03-10 12:30:00", "k1"),
    trigger("shop-b", "t-b9", "2024-03-10 13:00:00", "k9"),
]
DEADLETTERS = [
    deadletter("shop-a", "dl-1", "2024-03-10 08:00:00", "bad_json", "{oops"),
    deadletter("shop-a", "dl-2", "2024-03-10 09:00:00", "bad_json", "[1,"),
    deadletter("shop-a", "dl-3", "2024-03-10 09:30:00", "missing_property", '{"event":"Order Completed"}'),
    deadletter("shop-b", "dl-4", "2024-03-11 07:00:00", "too_old", '{"event":"Cart Viewed"}'),
    deadletter(None, "dl-5", "2024-03-10 11:00:00", "bad_encoding", "\\xff"),
]

# (tenant, day): sessions, carts, orders, revenue, conversion_rate, cart_abandonment_rate, aov
EXPECTED_KPI = {
    ("shop-a", D1): (2, 2, 1, 100.0, 1 / 2, 1 / 2, 100.0),  # s1 converted; k2 abandoned, k1 not
    ("shop-a", D2): (1, 1, 1, 50.0, 1.0, 0.0, 50.0),  # o2 counted once
    ("shop-b", D1): (1, 1, 0, 0.0, 0.0, 1.0, 0.0),  # k9 is not a cart
    ("shop-b", D2): (1, 0, 0, 0.0, 0.0, 0.0, 0.0),  # zero denominators give 0
}
EXPECTED_DEADLETTERS = {
    ("shop-a", D1, "bad_json"): 2,
    ("shop-a", D1, "missing_property"): 1,
    ("shop-b", D2, "too_old"): 1,
    ("", D1, "bad_encoding"): 1,
}

KPI_SQL = (
    "SELECT tenant, day, sessions, carts, orders, revenue, conversion_rate, cart_abandonment_rate, aov "
    "FROM cx.kpi_daily ORDER BY tenant, day"
)


def write(ch: ClickHouse, events: list[dict], triggers: list[dict] = (), deadletters: list[dict] = ()) -> None:
    sink = ClickHouseSink(ch)
    sink.add_events(events)
    sink.add_triggers(triggers)
    sink.add_deadletters(deadletters)
    sink.flush()


def kpis(ch: ClickHouse) -> dict:
    return {(r[0], r[1]): tuple(r[2:]) for r in ch.execute(KPI_SQL)}


def deadletter_counts(ch: ClickHouse) -> dict:
    return {(r[0], r[1], r[2]): r[3] for r in ch.execute("SELECT tenant, day, reason, events FROM cx.deadletter_daily")}


def test_kpi_daily_matches_hand_computed_values(ch_backend: ClickHouse) -> None:
    write(ch_backend, EVENTS, TRIGGERS, DEADLETTERS)
    got = kpis(ch_backend)
    assert set(got) == set(EXPECTED_KPI)
    for key, expected in EXPECTED_KPI.items():
        assert got[key][:3] == expected[:3], key
        assert got[key][3:] == pytest.approx(expected[3:]), key


def _as(e: dict, *, user: str, anon: str | None) -> dict:
    """``e`` sent by a known customer: from a browser (``anon``) or from the shop's backend (None)."""
    return {**e, "user_id": user, "anonymous_id": anon}


def test_backend_order_converts_the_customers_latest_browser_session_within_30_minutes(
    ch_backend: ClickHouse,
) -> None:
    # shop-c, D1, three customers, each with a browsing session and a backend order (user id only):
    #   ana  s-a1 10:00 page, s-a2 10:40 page, 10:50 Product Added; backend order 11:15
    #        -> 25 min after s-a2's last event: s-a2 converted (the latest), s-a1 not
    #   ben  s-b  10:00 page; backend order 10:30:00 -> exactly 30 min: not converted
    #   cleo s-c  10:00 page, 10:29:59; backend order 10:45 -> 15 min 1 s after: converted
    # The backend's events are no sessions: 4 sessions, 2 converted; 3 orders.
    browser = [
        _as(event("shop-c", "c-1", "2024-03-10 10:00:00", None, "s-a1", call="page"), user="ana", anon="a-phone"),
        _as(event("shop-c", "c-2", "2024-03-10 10:40:00", None, "s-a2", call="page"), user="ana", anon="a-laptop"),
        _as(event("shop-c", "c-3", "2024-03-10 10:50:00", "Product Added", "s-a2", cart_key="a-laptop/k",
                  props={"product_id": "p", "price": 10}), user="ana", anon="a-laptop"),  # fmt: skip
        _as(event("shop-c", "c-4", "2024-03-10 10:00:00", None, "s-b", call="page"), user="ben", anon="b-phone"),
        _as(event("shop-c", "c-5", "2024-03-10 10:00:00", None, "s-c", call="page"), user="cleo", anon="c-phone"),
        _as(event("shop-c", "c-6", "2024-03-10 10:29:59", None, "s-c", call="page"), user="cleo", anon="c-phone"),
    ]
    backend = [
        _as(event("shop-c", f"o-{who}", at, "Order Completed", f"srv-{who}", props={"order_id": f"o-{who}", "total": 10}),
            user=who, anon=None)  # fmt: skip
        for who, at in (("ana", "2024-03-10 11:15:00"), ("ben", "2024-03-10 10:30:00"), ("cleo", "2024-03-10 10:45:00"))
    ]
    write(ch_backend, browser + backend)
    sessions, carts, orders, revenue, conversion_rate, _, _ = kpis(ch_backend)[("shop-c", D1)]
    assert (sessions, carts, orders, revenue) == (4, 1, 3, 30.0)
    assert conversion_rate == pytest.approx(2 / 4)


def test_deadletter_daily_counts_by_tenant_day_and_reason(ch_backend: ClickHouse) -> None:
    write(ch_backend, [], [], DEADLETTERS)
    assert deadletter_counts(ch_backend) == EXPECTED_DEADLETTERS


def test_replayed_rows_leave_every_view_unchanged(ch_backend: ClickHouse) -> None:
    write(ch_backend, EVENTS, TRIGGERS, DEADLETTERS)
    before = (kpis(ch_backend), deadletter_counts(ch_backend))
    # A crash after the insert but before the offset commit: the worker
    # replays, in other batch boundaries, and a retry writes a part twice.
    write(ch_backend, EVENTS[:5], TRIGGERS[:1], DEADLETTERS[:2])
    write(ch_backend, EVENTS[3:], TRIGGERS, DEADLETTERS)
    write(ch_backend, EVENTS[3:], TRIGGERS, DEADLETTERS)
    assert (kpis(ch_backend), deadletter_counts(ch_backend)) == before
    assert ch_backend.execute("SELECT count() FROM cx.events FINAL") == [(len(EVENTS),)]


def test_days_are_utc_on_both_sides_of_midnight(ch_backend: ClickHouse) -> None:
    # 23:59:59.500 on D1 and 00:00:00.000 on D2, UTC: one session each.
    write(
        ch_backend,
        [
            event("shop-t", "t-1", "2024-03-10 23:59:59.500", None, "late", call="page"),
            event("shop-t", "t-2", "2024-03-11 00:00:00.000", None, "early", call="page"),
        ],
    )
    rows = ch_backend.execute(
        "SELECT event_id, day, event_time, toDate(event_time), toHour(event_time) "
        "FROM cx.events FINAL ORDER BY event_id"
    )
    assert rows == [
        ("t-1", D1, datetime(2024, 3, 10, 23, 59, 59, tzinfo=timezone.utc), D1, 23),
        ("t-2", D2, datetime(2024, 3, 11, 0, 0, 0, tzinfo=timezone.utc), D2, 0),
    ]
    assert {k: v[0] for k, v in kpis(ch_backend).items()} == {("shop-t", D1): 1, ("shop-t", D2): 1}


# Runs in a child process whose local zone is UTC+14 (chdb takes the zone of
# its process): the day must still be the UTC day. Two guards keep it so,
# the connection's session_timezone and the DateTime('UTC') columns; this
# fails only when both are gone, as on a host set up the naive way.
HOSTILE_ZONE_SCRIPT = """
import sys, orjson
from sinks.client import connect
from sinks.migrate import migrate
from sinks.sink import ClickHouseSink
from tests.sinks.records import event
ch = connect(sys.argv[1])
migrate(ch)
sink = ClickHouseSink(ch)
sink.add_events([event("shop-t", "t-1", "2024-03-10 23:59:59.500", None, "late", call="page")])
sink.flush()
print(orjson.dumps({
    "process_zone": ch.execute("SELECT serverTimezone()")[0][0],
    "rows": ch.execute("SELECT toString(day), toString(toDate(event_time)), toHour(event_time) FROM cx.events FINAL"),
    "kpi": ch.execute("SELECT toString(day), sessions FROM cx.kpi_daily"),
}).decode())
"""


def test_chdb_in_a_process_far_from_utc_still_counts_utc_days(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", HOSTILE_ZONE_SCRIPT, f"chdb://{tmp_path / 'chdb'}"],
        env={**os.environ, "TZ": "Pacific/Kiritimati"},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = orjson.loads(done.stdout.strip().splitlines()[-1])
    assert out["process_zone"] == "Pacific/Kiritimati"  # the hostile zone is in force
    assert out["rows"] == [["2024-03-10", "2024-03-10", 23]]
    assert out["kpi"] == [["2024-03-10", 1]]


def test_free_text_and_contact_details_are_never_stored(ch_backend: ClickHouse) -> None:
    secrets = ["my card was declined", "never again", "jane@example.com", "+33612345678"]
    write(
        ch_backend,
        [
            event("shop-p", "p-1", "2024-03-10 10:00:00", "Support Message Sent", "s1",
                  props={"ticket_id": "t-1", "author": "customer", "text": secrets[0]}),
            event("shop-p", "p-2", "2024-03-10 10:05:00", "Survey Answered", "s1",
                  props={"survey": "csat", "score": 2, "comment": secrets[1], "email": secrets[2], "phone": secrets[3]}),
        ],  # fmt: skip
        deadletters=[
            deadletter("shop-p", "dl-p", "2024-03-10 10:06:00", "missing_property",
                       '{"traits":{"email":"jane@example.com"},"properties":{"text":"my card was declined"}}'),
        ],  # fmt: skip
    )
    # every String column of both tables, searched for every secret
    all_event_text = (
        "concat(tenant, event_id, type, event, anonymous_id, user_id, session_id, cart_key, order_id,"
        " checkout_id, product_id, currency, page_path, properties, email_hash, ip_hash)"
    )
    all_deadletter_text = "concat(tenant, dl_id, reason, detail, source, payload)"
    for secret in secrets:
        for table, text in (("cx.events", all_event_text), ("cx.deadletters", all_deadletter_text)):
            found = ch_backend.execute(f"SELECT count() FROM {table} WHERE position({text}, %(s)s) > 0", {"s": secret})
            assert found == [(0,)], (table, secret)
    # what is not private is still there
    kept = ch_backend.execute("SELECT properties FROM cx.events FINAL WHERE event_id = 'p-2'")
    assert kept == [('{"survey":"csat","score":2}',)]
