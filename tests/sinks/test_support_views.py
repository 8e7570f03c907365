"""``cx.support_daily`` on both backends: hand-computed KPIs, ticket versions, replays, empty days."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pytest

from sinks.client import ClickHouse
from sinks.sink import ClickHouseSink
from tests.sinks.records import ms

D1, D2 = date(2024, 3, 10), date(2024, 3, 11)
S = 1000


def ticket(tenant: str, ticket_id: str, opened: str, version: int = 1, **fields: object) -> dict:
    """A ticket dict as ``detect.support`` emits it; durations in ms, absent ones None."""
    return {
        "tenant": tenant,
        "ticket_id": ticket_id,
        "version": version,
        "opened_ms": ms(opened),
        "updated_ms": ms(opened),
        "customer_id": "u-1",
        "channel": "chat",
        "topic": "delivery",
        "order_id": "",
        "first_response_ms": None,
        "resolution_ms": None,
        "resolutions": 0,
        "reopened": False,
        "agent_replies": 0,
        "contacts": 1,
        "negative_messages": 0,
        "fcr": False,
        "csat": None,
        "nps": None,
        "ces": None,
        **fields,
    }


def message(tenant: str, message_id: str, at: str, author: str, label: str) -> dict:
    return {
        "tenant": tenant,
        "message_id": message_id,
        "event_time_ms": ms(at),
        "ticket_id": "t1",
        "customer_id": "u-1",
        "author": author,
        "lang": "fr" if label else "",
        "sentiment": {"negative": -0.6, "neutral": 0.0, "positive": 0.5, "": 0.0}[label],
        "sentiment_label": label,
    }


def survey(tenant: str, survey_id: str, at: str, kind: str, score: float, ticket_id: str = "") -> dict:
    return {
        "tenant": tenant,
        "survey_id": survey_id,
        "event_time_ms": ms(at),
        "customer_id": "u-1",
        "survey": kind,
        "score": score,
        "ticket_id": ticket_id,
        "order_id": "" if ticket_id else "o-1",
        "has_comment": False,
        "comment_sentiment": 0.0,
        "comment_label": "",
    }


def resolved(first_s: float, resolution_s: float, replies: int, *, reopened: bool = False) -> dict:
    return {
        "first_response_ms": first_s * S,
        "resolution_ms": resolution_s * S,
        "resolutions": 2 if reopened else 1,
        "reopened": reopened,
        "agent_replies": replies,
        "fcr": replies == 1 and not reopened,
    }


# shop-a, D1: five tickets opened.
#   t1 chat   first response 120 s, resolved after 1,800 s, 1 reply         -> FCR
#   t2 email  first response 3,600 s, resolved after 10,800 s, 2 replies     -> not FCR
#   t3 phone  first response 30 s, resolved after 3,600 s, 1 reply, reopened -> not FCR
#   t4 email  no agent reply yet, not resolved: out of first response and FCR
#   t5 chat   v1: first response 900 s, open; v3 (latest): first response 600 s
#             (the helpdesk's clock corrected), resolved after 1,200 s, 1 reply -> FCR
#   responded: 30, 120, 600, 3600 (sorted), n = 4
#     avg    = 4350 / 4 = 1087.5
#     median = h = 3 * 0.5 = 1.5 -> 120 + 0.5 * (600 - 120) = 360
#     p90    = h = 3 * 0.9 = 2.7 -> 600 + 0.7 * (3600 - 600) = 2700
#   resolved 4, FCR 2 -> fcr_rate 0.5; reopened 1; resolution avg (1800+10800+3600+1200)/4 = 4350
#   customer messages with text: 2 negative, 1 neutral, 1 positive -> share 0.5
#     (an agent message and a customer message without text have no label: not counted)
#   csat 5, 4, 2 -> 2/3; nps 10, 9, 8, 6 -> (2 - 1) / 4 = +25; ces 2, 5, 7 -> 14/3
#     (the scale boundaries: csat 4 is satisfied; nps 9 promotes, 8 is passive, 6 detracts)
#     the nps answers have no ticket (post-purchase surveys): counted all the same
# shop-a, D2: t6 no reply; t7 one reply after 45 s (one value: median = p90 = 45); no surveys.
# shop-b, D1: ticket "t1" (the same id as shop-a's: tenants stay apart), reply after 10 s.
TICKETS = [
    ticket("shop-a", "t1", "2024-03-10 10:00:00", 2, **resolved(120, 1800, 1), csat=5.0),
    ticket("shop-a", "t1", "2024-03-10 10:00:00", 1, first_response_ms=120 * S, agent_replies=1),
    ticket("shop-a", "t2", "2024-03-10 11:00:00", 4, channel="email", **resolved(3600, 10800, 2), csat=2.0),
    ticket("shop-a", "t3", "2024-03-10 12:00:00", 5, channel="phone", **resolved(30, 3600, 1, reopened=True)),
    ticket("shop-a", "t4", "2024-03-10 13:00:00", 1, channel="email"),
    ticket("shop-a", "t5", "2024-03-10 15:00:00", 1, first_response_ms=900 * S, agent_replies=1),
    ticket("shop-a", "t5", "2024-03-10 15:00:00", 3, **resolved(600, 1200, 1)),
    ticket("shop-a", "t6", "2024-03-11 09:00:00", 1),
    ticket("shop-a", "t7", "2024-03-11 23:59:00", 2, first_response_ms=45 * S, agent_replies=1),
    ticket("shop-b", "t1", "2024-03-10 08:00:00", 2, first_response_ms=10 * S, agent_replies=1),
]
MESSAGES = [
    message("shop-a", "m1", "2024-03-10 10:00:10", "customer", "negative"),
    message("shop-a", "m2", "2024-03-10 10:05:00", "customer", "neutral"),
    message("shop-a", "m3", "2024-03-10 11:00:00", "customer", "positive"),
    message("shop-a", "m4", "2024-03-10 23:59:59", "customer", "negative"),
    message("shop-a", "m5", "2024-03-10 10:02:00", "agent", ""),
    message("shop-a", "m6", "2024-03-10 10:03:00", "customer", ""),
]
SURVEYS = [
    survey("shop-a", "s1", "2024-03-10 11:00:00", "csat", 5, "t1"),
    survey("shop-a", "s2", "2024-03-10 12:00:00", "csat", 4, "t9"),
    survey("shop-a", "s3", "2024-03-10 15:00:00", "csat", 2, "t2"),
    survey("shop-a", "s4", "2024-03-10 16:00:00", "nps", 10),
    survey("shop-a", "s5", "2024-03-10 16:00:00", "nps", 9),
    survey("shop-a", "s6", "2024-03-10 16:00:00", "nps", 8),
    survey("shop-a", "s7", "2024-03-10 16:00:00", "nps", 6),
    survey("shop-a", "s8", "2024-03-10 17:00:00", "ces", 2, "t1"),
    survey("shop-a", "s9", "2024-03-10 17:00:00", "ces", 5, "t2"),
    survey("shop-a", "s10", "2024-03-10 17:00:00", "ces", 7, "t3"),
]

COLUMNS = (
    "tickets", "first_response_s_avg", "first_response_s_median", "first_response_s_p90", "fcr_rate",
    "csat", "nps", "ces_avg", "negative_sentiment_share", "responded_tickets", "resolved_tickets",
    "fcr_tickets", "reopened_tickets", "resolution_s_avg", "customer_messages", "negative_messages",
    "csat_answers", "nps_answers", "ces_answers",
)  # fmt: skip
EXPECTED = {
    ("shop-a", D1): dict(
        tickets=5, first_response_s_avg=1087.5, first_response_s_median=360.0, first_response_s_p90=2700.0,
        fcr_rate=0.5, csat=2 / 3, nps=25.0, ces_avg=14 / 3, negative_sentiment_share=0.5,
        responded_tickets=4, resolved_tickets=4, fcr_tickets=2, reopened_tickets=1, resolution_s_avg=4350.0,
        customer_messages=4, negative_messages=2, csat_answers=3, nps_answers=4, ces_answers=3,
    ),
    ("shop-a", D2): dict(
        tickets=2, first_response_s_avg=45.0, first_response_s_median=45.0, first_response_s_p90=45.0,
        fcr_rate=0.0, csat=0.0, nps=0.0, ces_avg=0.0, negative_sentiment_share=0.0,
        responded_tickets=1, resolved_tickets=0, fcr_tickets=0, reopened_tickets=0, resolution_s_avg=0.0,
        customer_messages=0, negative_messages=0, csat_answers=0, nps_answers=0, ces_answers=0,
    ),
    ("shop-b", D1): dict(
        tickets=1, first_response_s_avg=10.0, first_response_s_median=10.0, first_response_s_p90=10.0,
        fcr_rate=0.0, csat=0.0, nps=0.0, ces_avg=0.0, negative_sentiment_share=0.0,
        responded_tickets=1, resolved_tickets=0, fcr_tickets=0, reopened_tickets=0, resolution_s_avg=0.0,
        customer_messages=0, negative_messages=0, csat_answers=0, nps_answers=0, ces_answers=0,
    ),
}  # fmt: skip


def write(ch: ClickHouse, tickets: list[dict], messages: list[dict], surveys: list[dict]) -> None:
    sink = ClickHouseSink(ch)
    sink.add_facts("cx.support_tickets", tickets)
    sink.add_facts("cx.support_messages", messages)
    sink.add_facts("cx.surveys", surveys)
    sink.flush()


def support_daily(ch: ClickHouse) -> dict:
    sql = f"SELECT tenant, day, {', '.join(COLUMNS)} FROM cx.support_daily ORDER BY tenant, day"
    return {(r[0], r[1]): dict(zip(COLUMNS, r[2:])) for r in ch.execute(sql)}


def assert_matches(got: dict, expected: dict) -> None:
    assert set(got) == set(expected)
    for key, values in expected.items():
        for column, value in values.items():
            assert got[key][column] == pytest.approx(value), (key, column)


def test_support_daily_matches_hand_computed_values(ch_backend: ClickHouse) -> None:
    write(ch_backend, TICKETS, MESSAGES, SURVEYS)
    assert_matches(support_daily(ch_backend), EXPECTED)


def test_latest_ticket_version_wins_whatever_the_insert_order(ch_backend: ClickHouse) -> None:
    # t5's version 1 (first response 900 s) is written after version 3.
    write(ch_backend, [TICKETS[6]], [], [])
    write(ch_backend, [TICKETS[5]], [], [])
    rows = ch_backend.execute(
        "SELECT version, first_response_s, resolved, fcr FROM cx.support_tickets FINAL WHERE ticket_id = 't5'"
    )
    assert rows == [(3, 600.0, 1, 1)]


def test_replayed_support_rows_leave_support_daily_unchanged(ch_backend: ClickHouse) -> None:
    write(ch_backend, TICKETS, MESSAGES, SURVEYS)
    write(ch_backend, TICKETS[:4], MESSAGES[2:], SURVEYS[:3])
    write(ch_backend, TICKETS, MESSAGES, SURVEYS)
    assert_matches(support_daily(ch_backend), EXPECTED)
    assert ch_backend.execute("SELECT count() FROM cx.support_tickets FINAL") == [(8,)]


def test_interpolated_percentiles_agree_with_quantile_on_small_days(ch_backend: ClickHouse) -> None:
    # Below 8,192 values ClickHouse's quantile() interpolates the same way; the view's own
    # computation stays exact above that. Response times 30, 120, 600, 3600 s on D1.
    write(ch_backend, TICKETS, [], [])
    (row,) = ch_backend.execute(
        "SELECT quantile(0.5)(first_response_s), quantile(0.9)(first_response_s) FROM cx.support_tickets FINAL "
        "WHERE tenant = 'shop-a' AND day = '2024-03-10' AND has_response = 1"
    )
    assert row == pytest.approx((360.0, 2700.0))


def test_a_day_with_only_surveys_has_zero_tickets_and_its_scores(ch_backend: ClickHouse) -> None:
    write(ch_backend, [], [], [survey("shop-c", "x1", "2024-03-12 08:00:00", "nps", 0)])
    got = support_daily(ch_backend)
    assert got[("shop-c", date(2024, 3, 12))]["tickets"] == 0
    assert got[("shop-c", date(2024, 3, 12))]["nps"] == pytest.approx(-100.0)
    assert got[("shop-c", date(2024, 3, 12))]["first_response_s_p90"] == 0.0


def test_documented_example_queries_run_and_read_the_data(ch_backend: ClickHouse) -> None:
    page = (Path(__file__).resolve().parents[2] / "docs" / "detection.md").read_text(encoding="utf-8")
    start = page.index("\n## Support\n")
    end = page.find("\n## ", start + 1)
    doc = page[start : end if end != -1 else len(page)]
    queries = re.findall(r"```sql\n(.*?)```", doc, flags=re.S)
    assert len(queries) == 4
    write(ch_backend, TICKETS, MESSAGES, SURVEYS)
    for sql in queries:
        # The examples name the demo shop and the last week; point them at this data.
        sql = sql.replace("'demo-shop'", "'shop-a'").replace("today() - 7", "toDate('2024-03-01')")
        assert ch_backend.execute(sql), sql
