"""Support tickets, message sentiment, surveys and ``support_risk``; expected values by hand.

Helpdesk events carry the customer's userId only (``anon=None``), as the
demo's helpdesk integration sends them; ``T0`` is the ticket's opening.
"""

from __future__ import annotations

import orjson
import pytest

from pipeline.collector.catalog import CATALOG, PropertyError, check_properties
from pipeline.detect import Rules
from pipeline.detect.state import decode_state, encode_state
from pipeline.detect.support import MESSAGES_TABLE, SURVEYS_TABLE, TICKETS_TABLE
from pipeline.vocabulary import SUPPORT_TICKET_OPENED
from pipeline.wire.records import stable_id
from sinks.rows import FACT_TABLES, event_row
from pipeline.detect.customer import STAGE_PREFIX
from tests.detect.helpers import DAY, EXACT, HOUR, MIN, T0, Harness, ev, order

USER = "u-1"
SEC = 1000


class SupportHarness(Harness):
    """Reads the support fact rows, by table."""

    def tickets(self) -> list[dict]:
        return self.facts.get(TICKETS_TABLE, [])

    def latest(self, ticket_id: str = "t-1") -> dict:
        """The ticket's row with the highest version (what ReplacingMergeTree keeps)."""
        return max((r for r in self.tickets() if r["ticket_id"] == ticket_id), key=lambda r: r["version"])


def helpdesk(name: str, t_ms: int, user: str = USER, locale: str | None = None, **props: object) -> dict:
    event = ev(name, t_ms, anon=None, user=user, props=props)
    event["locale"] = locale
    return event


def opened(t_ms: int, ticket: str = "t-1", channel: str = "chat", **props: object) -> dict:
    return helpdesk("Support Ticket Opened", t_ms, ticket_id=ticket, channel=channel, **props)


def msg(t_ms: int, author: str, text: str | None = None, ticket: str = "t-1", locale: str | None = "fr-FR") -> dict:
    props = {"ticket_id": ticket, "author": author}
    if text is not None:
        props["text"] = text
    return helpdesk("Support Message Sent", t_ms, locale=locale, **props)


def resolved(t_ms: int, ticket: str = "t-1", reopened: bool | None = None) -> dict:
    props: dict = {"ticket_id": ticket}
    if reopened is not None:
        props["reopened"] = reopened
    return helpdesk("Support Ticket Resolved", t_ms, **props)


def answered(t_ms: int, survey: str, score: float, **props: object) -> dict:
    return helpdesk("Survey Answered", t_ms, survey=survey, score=score, **props)


CALM = "Bonjour, où en est ma commande ?"
ANGRY = "Colis jamais reçu, c'est inadmissible."


# -- per-ticket KPIs -----------------------------------------------------------


def test_first_response_is_opening_to_first_agent_message() -> None:
    h = SupportHarness()
    # T0 opened; T0+1m customer; T0+5m first agent reply; T0+20m second agent reply.
    h.each(opened(T0), msg(T0 + MIN, "customer", CALM), msg(T0 + 5 * MIN, "agent"), msg(T0 + 20 * MIN, "agent"))
    row = h.latest()
    assert row["first_response_ms"] == 5 * MIN
    assert row["agent_replies"] == 2 and row["contacts"] == 1
    assert row["resolution_ms"] is None and row["fcr"] is False


def test_ticket_with_no_agent_reply_yet_has_no_first_response() -> None:
    h = SupportHarness()
    h.each(opened(T0), msg(T0 + MIN, "customer", CALM), msg(T0 + 2 * HOUR, "customer", CALM))
    row = h.latest()
    assert row["first_response_ms"] is None
    assert row["contacts"] == 2 and row["agent_replies"] == 0 and row["fcr"] is False


def test_resolved_with_one_agent_reply_is_a_first_contact_resolution() -> None:
    h = SupportHarness()
    # T0 opened; +30s customer; +2m agent; +10m resolved -> resolution 600 s, FCR.
    h.each(opened(T0), msg(T0 + 30 * SEC, "customer", CALM), msg(T0 + 2 * MIN, "agent"), resolved(T0 + 10 * MIN))
    row = h.latest()
    assert (row["first_response_ms"], row["resolution_ms"]) == (2 * MIN, 10 * MIN)
    assert row["fcr"] is True and row["reopened"] is False and row["resolutions"] == 1


def test_two_agent_replies_is_not_a_first_contact_resolution() -> None:
    h = SupportHarness()
    h.each(
        opened(T0), msg(T0 + MIN, "customer", CALM), msg(T0 + 3 * MIN, "agent"),
        msg(T0 + HOUR, "customer", CALM), msg(T0 + 2 * HOUR, "agent"), resolved(T0 + 3 * HOUR),
    )  # fmt: skip
    row = h.latest()
    assert row["fcr"] is False and row["resolution_ms"] == 3 * HOUR and row["agent_replies"] == 2


def test_resolution_flagged_reopened_is_not_a_first_contact_resolution() -> None:
    h = SupportHarness()
    h.each(opened(T0), msg(T0 + MIN, "agent"), resolved(T0 + 5 * MIN, reopened=True))
    row = h.latest()
    assert row["reopened"] is True and row["fcr"] is False and row["resolution_ms"] == 5 * MIN


def test_customer_writing_after_resolution_reopens_the_ticket_until_resolved_again() -> None:
    h = SupportHarness()
    # T0 opened; +1m agent; +10m resolved (FCR so far); +2h customer writes: open again,
    # not resolved; +3h resolved a second time: resolution 3 h, reopened, not FCR.
    h.each(opened(T0), msg(T0 + MIN, "agent"), resolved(T0 + 10 * MIN))
    assert h.latest()["fcr"] is True
    h.each(msg(T0 + 2 * HOUR, "customer", CALM))
    row = h.latest()
    assert row["resolution_ms"] is None and row["fcr"] is False
    h.each(resolved(T0 + 3 * HOUR))
    row = h.latest()
    assert row["resolution_ms"] == 3 * HOUR and row["reopened"] is True and row["resolutions"] == 2
    assert row["fcr"] is False


def test_messages_before_the_opening_event_count_once_it_arrives() -> None:
    h = SupportHarness()
    # The helpdesk delivered the agent reply (T0+4m) before the opening (T0): no row yet.
    h.each(msg(T0 + 4 * MIN, "agent"))
    assert h.tickets() == []
    h.each(opened(T0))
    assert h.latest()["first_response_ms"] == 4 * MIN
    assert h.latest()["opened_ms"] == T0


def test_each_change_writes_a_higher_version_and_the_opening_day_never_moves() -> None:
    h = SupportHarness()
    h.each(opened(T0, order_id="o-7", topic="refund"), msg(T0 + MIN, "agent"), resolved(T0 + 23 * HOUR))
    versions = [r["version"] for r in h.tickets()]
    assert versions == [1, 2, 3]
    assert {r["opened_ms"] for r in h.tickets()} == {T0}
    assert h.latest()["order_id"] == "o-7" and h.latest()["topic"] == "refund"


# -- topic: a category slug, checked by the collector ---------------------------


def opened_props(topic: object) -> dict:
    return {"ticket_id": "t-1", "channel": "chat", "topic": topic}


@pytest.mark.parametrize(
    ("topic", "stored"),
    [
        ("refund", "refund"),
        ("late_delivery-2", "late_delivery-2"),
        (" Delivery ", "delivery"),  # helpdesks differ in case, as for channel
        ("x" * 40, "x" * 40),
        ("", ""),  # empty: no topic
    ],
)
def test_ticket_topic_slug_is_accepted_and_stored_lower_case(topic: str, stored: str) -> None:
    assert check_properties(CATALOG[SUPPORT_TICKET_OPENED], opened_props(topic))["topic"] == stored


@pytest.mark.parametrize(
    "topic",
    [
        "x" * 41,  # too long
        "late delivery",  # a space: free text
        "Mme Dupont, 12 rue des Lilas",
        "remboursé",  # accents are outside the slug alphabet
        "a/b",
    ],
)
def test_ticket_topic_that_is_not_a_slug_is_a_wrong_type_dead_letter_not_echoing_the_text(topic: str) -> None:
    with pytest.raises(PropertyError) as info:
        check_properties(CATALOG[SUPPORT_TICKET_OPENED], opened_props(topic))
    assert info.value.reason == "wrong_type"
    assert info.value.detail.startswith("topic must be a slug")
    assert topic.strip().lower() not in info.value.detail


def test_ticket_topic_of_another_type_is_wrong_type() -> None:
    with pytest.raises(PropertyError) as info:
        check_properties(CATALOG[SUPPORT_TICKET_OPENED], opened_props(7))
    assert info.value.reason == "wrong_type"


# -- surveys -------------------------------------------------------------------


def test_survey_with_a_ticket_is_linked_to_it() -> None:
    h = SupportHarness()
    h.each(opened(T0), msg(T0 + MIN, "agent"), resolved(T0 + 5 * MIN), answered(T0 + HOUR, "csat", 4, ticket_id="t-1"))
    assert h.latest()["csat"] == 4.0 and h.latest()["nps"] is None
    (row,) = h.facts[SURVEYS_TABLE]
    assert (row["survey"], row["score"], row["ticket_id"]) == ("csat", 4.0, "t-1")


def test_linked_survey_is_the_latest_answer_in_event_time_not_in_arrival_order() -> None:
    h = SupportHarness()
    # CSAT 2 answered at T0+2h arrives first; CSAT 5 answered earlier (T0+1h) arrives late: 2 stays.
    h.each(opened(T0), answered(T0 + 2 * HOUR, "csat", 2, ticket_id="t-1"))
    h.each(answered(T0 + HOUR, "csat", 5, ticket_id="t-1"))
    assert h.latest()["csat"] == 2.0
    # NPS: 9 at T0+3h, then 4 at T0+5h, then a late 10 from T0+4h: 4 is the latest answer.
    h.each(
        answered(T0 + 3 * HOUR, "nps", 9, ticket_id="t-1"),
        answered(T0 + 5 * HOUR, "nps", 4, ticket_id="t-1"),
        answered(T0 + 4 * HOUR, "nps", 10, ticket_id="t-1"),
    )
    assert (h.latest()["csat"], h.latest()["nps"]) == (2.0, 4.0)
    # Every answer is still a survey row of its own.
    assert [r["score"] for r in h.facts[SURVEYS_TABLE]] == [2.0, 5.0, 9.0, 4.0, 10.0]


def test_linked_survey_times_survive_the_state_round_trip() -> None:
    h = SupportHarness()
    # The stored state keeps the kept answer's time: a late, older answer after a restart still loses.
    h.each(opened(T0), answered(T0 + 2 * HOUR, "ces", 6, ticket_id="t-1"))
    restarted = SupportHarness(table=dict(h.table))
    restarted.offset = h.offset  # the next record, after the stored ones
    restarted.each(answered(T0 + HOUR, "ces", 1, ticket_id="t-1"))
    assert restarted.latest()["ces"] == 6.0
    (ticket,) = decode_state(restarted.table[next(iter(restarted.table))]).tickets
    assert (ticket.ces, ticket.ces_ms) == (6.0, T0 + 2 * HOUR)


def test_survey_without_a_ticket_is_stored_alone() -> None:
    h = SupportHarness()
    h.each(answered(T0, "nps", 9, order_id="o-1"))
    assert h.tickets() == []
    (row,) = h.facts[SURVEYS_TABLE]
    assert (row["survey"], row["score"], row["ticket_id"], row["order_id"]) == ("nps", 9.0, "", "o-1")


def test_survey_comment_is_kept_only_as_its_sentiment() -> None:
    h = SupportHarness()
    h.each(answered(T0, "csat", 1, comment="Service nul, jamais de réponse"))
    (row,) = h.facts[SURVEYS_TABLE]
    assert row["has_comment"] is True and row["comment_label"] == "negative"
    assert "nul" not in orjson.dumps(row).decode()


# -- sentiment rows ------------------------------------------------------------


def test_customer_message_row_has_sentiment_and_agent_row_has_none() -> None:
    h = SupportHarness()
    h.each(opened(T0), msg(T0 + MIN, "customer", ANGRY), msg(T0 + 2 * MIN, "agent", "Je suis désolée, je regarde."))
    customer, agent = h.facts[MESSAGES_TABLE]
    assert customer["sentiment_label"] == "negative" and customer["lang"] == "fr" and customer["sentiment"] < -0.4
    assert agent["sentiment_label"] == "" and agent["author"] == "agent"
    assert h.latest()["negative_messages"] == 1


def test_message_language_comes_from_the_locale_else_from_the_text() -> None:
    h = SupportHarness()
    h.each(opened(T0), msg(T0 + MIN, "customer", "Still no refund after 3 weeks", locale=None))
    assert h.facts[MESSAGES_TABLE][0]["lang"] == "en"
    assert h.facts[MESSAGES_TABLE][0]["sentiment_label"] == "negative"


def test_message_text_reaches_no_row_and_no_column() -> None:
    h = SupportHarness()
    secret = "Colis jamais reçu, appelez-moi au 0612345678"
    h.each(
        opened(T0), msg(T0 + MIN, "customer", secret), answered(T0 + HOUR, "csat", 1, ticket_id="t-1", comment=secret)
    )
    stored = [event_row(r) for r in h.rows]
    for table, rows in h.facts.items():
        _, to_row = FACT_TABLES[table]
        stored += [to_row(r) for r in rows]
    dumped = repr(stored)
    assert "0612345678" not in dumped and "jamais" not in dumped


# -- support_risk --------------------------------------------------------------


def test_clearly_negative_message_on_an_open_ticket_fires_support_risk_once() -> None:
    h = SupportHarness()
    # T0 opened; +1m angry; +3m angry again (same opening: no second trigger).
    triggers = h.each(opened(T0), msg(T0 + MIN, "customer", ANGRY), msg(T0 + 3 * MIN, "customer", ANGRY))
    (trigger,) = triggers
    assert trigger["kind"] == "support_risk" and trigger["action"] == "assist"
    assert trigger["reasons"] == ["negative_sentiment"]
    assert trigger["customer_id"] == USER and trigger["event_time_ms"] == T0 + MIN
    assert trigger["trigger_id"] == stable_id("support_risk", "shop-a", "t-1", 0)
    assert trigger["offer"] is None and trigger["holdout"] is False


def test_calm_or_mildly_negative_message_does_not_fire() -> None:
    h = SupportHarness()
    mild = "Il manque la facture."
    assert h.each(opened(T0), msg(T0 + MIN, "customer", CALM), msg(T0 + 2 * MIN, "customer", mild)) == []


def test_angry_customer_reopening_a_resolved_ticket_fires_again() -> None:
    h = SupportHarness()
    # T0 opened, +1m angry (fires, opening 0), +5m agent, +10m resolved,
    # +2h angry again: the ticket is open again (opening 1): fires, reason ticket_reopened.
    first = h.each(opened(T0), msg(T0 + MIN, "customer", ANGRY), msg(T0 + 5 * MIN, "agent"), resolved(T0 + 10 * MIN))
    second = h.each(msg(T0 + 2 * HOUR, "customer", "Still no refund after 3 weeks"))
    assert len(first) == 1 and len(second) == 1
    assert second[0]["reasons"] == ["negative_sentiment", "ticket_reopened"]
    assert second[0]["trigger_id"] == stable_id("support_risk", "shop-a", "t-1", 1) != first[0]["trigger_id"]


def server_order(t_ms: int) -> dict:
    """An ``Order Completed`` sent server-side with the userId only: order id ``o-<t_ms>``, under USER's key."""
    return order(t_ms, anon=None) | {"user_id": USER}


def test_detractor_nps_after_a_recent_order_fires() -> None:
    h = SupportHarness()
    # The same key ordered at T0; NPS 3 at T0+2d.
    h.each(server_order(T0))
    (trigger,) = h.each(answered(T0 + 2 * DAY, "nps", 3))
    assert trigger["reasons"] == ["nps_detractor", "recent_order"] and trigger["action"] == "assist"
    assert trigger["event_time_ms"] == T0 + 2 * DAY


def test_detractor_nps_exactly_at_the_end_of_the_order_window_fires() -> None:
    h = SupportHarness()
    # Window 30 d = 2,592,000,000 ms, both ends included: order T0, NPS 0 at T0 + 30 d.
    h.each(server_order(T0))
    (trigger,) = h.each(answered(T0 + 30 * DAY, "nps", 0))
    assert trigger["reasons"] == ["nps_detractor", "recent_order"]


def test_detractor_nps_one_ms_past_the_order_window_does_not_fire() -> None:
    h = SupportHarness()
    h.each(server_order(T0))
    assert h.each(answered(T0 + 30 * DAY + 1, "nps", 0)) == []


def test_detractor_nps_long_after_the_order_or_passive_nps_does_not_fire() -> None:
    h = SupportHarness()
    # Order at T0; NPS 7 (passive) at T0+1d; NPS 2 at T0+31d (past the 30-day window), no order_id.
    h.each(server_order(T0))
    assert h.each(answered(T0 + DAY, "nps", 7), answered(T0 + 31 * DAY, "nps", 2)) == []


def test_detractor_nps_naming_an_order_known_here_as_old_does_not_fire() -> None:
    h = SupportHarness()
    # Order o-T0 at T0 under this key; NPS 2 about o-T0 at T0+31d: its time is known and outside the window.
    h.each(server_order(T0))
    assert h.each(answered(T0 + 31 * DAY, "nps", 2, order_id=f"o-{T0}")) == []


def test_detractor_nps_naming_an_order_this_key_never_saw_fires_as_post_purchase() -> None:
    h = SupportHarness()
    # No order under this key: the named order o-9 is under the browser's anonymous id, time unknown here.
    (trigger,) = h.each(answered(T0, "nps", 6, order_id="o-9"))
    assert trigger["reasons"] == ["nps_detractor", "post_purchase"]
    assert trigger["trigger_id"] == stable_id("support_risk", "shop-a", "nps", f"{USER}:Survey Answered:{T0}")


def test_detractor_nps_naming_another_order_than_the_old_one_known_here_fires_as_post_purchase() -> None:
    h = SupportHarness()
    # This key's only order o-T0 is 40 days old; the NPS names o-9, which this key never saw.
    h.each(server_order(T0))
    (trigger,) = h.each(answered(T0 + 40 * DAY, "nps", 4, order_id="o-9"))
    assert trigger["reasons"] == ["nps_detractor", "post_purchase"]


def test_detractor_nps_without_any_order_does_not_fire() -> None:
    h = SupportHarness()
    assert h.each(answered(T0, "nps", 1)) == []


def test_customer_in_the_holdout_gets_action_none() -> None:
    h = SupportHarness(Rules(allowed_lateness_ms=0, holdout_pct=100.0))
    (trigger,) = h.each(opened(T0), msg(T0 + MIN, "customer", ANGRY))
    assert trigger["action"] == "none" and trigger["holdout"] is True


def test_support_risk_uses_its_own_experiment_and_that_experiments_holdout() -> None:
    # The default experiment holds out nobody; support_risk is in "sr-v1", which holds out everyone.
    rules = Rules(
        allowed_lateness_ms=0,
        holdout_pct=0.0,
        experiment_by_kind=(("support_risk", "sr-v1"),),
        experiment_holdouts=(("sr-v1", 100.0),),
    )
    h = SupportHarness(rules)
    (trigger,) = h.each(opened(T0), msg(T0 + MIN, "customer", ANGRY))
    assert (trigger["experiment"], trigger["holdout"], trigger["action"]) == ("sr-v1", True, "none")


def test_support_risk_outside_its_experiments_holdout_assists_under_that_experiment() -> None:
    # The default experiment holds out everyone; "sr-v1" nobody: support_risk follows "sr-v1".
    rules = Rules(
        allowed_lateness_ms=0,
        holdout_pct=100.0,
        experiment_by_kind=(("support_risk", "sr-v1"),),
        experiment_holdouts=(("sr-v1", 0.0),),
    )
    h = SupportHarness(rules)
    (trigger,) = h.each(opened(T0), msg(T0 + MIN, "customer", ANGRY))
    assert (trigger["experiment"], trigger["holdout"], trigger["action"]) == ("sr-v1", False, "assist")


def test_risk_threshold_is_a_rule() -> None:
    h = SupportHarness(Rules(allowed_lateness_ms=0, holdout_pct=0.0, support_risk_sentiment=-0.95))
    assert h.each(opened(T0), msg(T0 + MIN, "customer", ANGRY)) == []


# Scores of the lexicon for two labeled-set messages (label negative at -0.3 or below).
MILD_NEGATIVE = "Personne n'est capable de me dire où est mon colis."  # -0.3612
JUST_PAST = "Je n'ai jamais eu mon remboursement malgré vos promesses."  # -0.4019


def test_message_labelled_negative_but_above_the_risk_threshold_does_not_fire() -> None:
    h = SupportHarness()  # threshold -0.4
    assert h.each(opened(T0), msg(T0 + MIN, "customer", MILD_NEGATIVE)) == []
    (row,) = h.facts[MESSAGES_TABLE]
    assert (row["sentiment"], row["sentiment_label"]) == (-0.3612, "negative")
    assert h.latest()["negative_messages"] == 1


def test_message_just_below_the_default_risk_threshold_fires() -> None:
    h = SupportHarness()
    (trigger,) = h.each(opened(T0), msg(T0 + MIN, "customer", JUST_PAST))
    assert h.facts[MESSAGES_TABLE][0]["sentiment"] == -0.4019
    assert trigger["reasons"] == ["negative_sentiment"]


def test_message_exactly_at_the_risk_threshold_fires_and_one_ten_thousandth_above_does_not() -> None:
    # "at or below": a score equal to the threshold fires (scores have four decimals).
    at = SupportHarness(Rules(allowed_lateness_ms=0, holdout_pct=0.0, support_risk_sentiment=-0.3612))
    assert len(at.each(opened(T0), msg(T0 + MIN, "customer", MILD_NEGATIVE))) == 1
    above = SupportHarness(Rules(allowed_lateness_ms=0, holdout_pct=0.0, support_risk_sentiment=-0.3613))
    assert above.each(opened(T0), msg(T0 + MIN, "customer", MILD_NEGATIVE)) == []


@pytest.mark.parametrize("written", [5 * MIN, 10 * MIN], ids=["before", "at"])
def test_negative_message_written_no_later_than_the_resolution_finds_the_ticket_closed_and_does_not_fire(
    written: int,
) -> None:
    h = SupportHarness()
    # T0 opened; +1m agent; +10m resolved; then an angry message written at +5m (delivered late) or
    # at +10m, the resolution's own millisecond: not after the resolution, so it does not reopen.
    h.each(opened(T0), msg(T0 + MIN, "agent"), resolved(T0 + 10 * MIN))
    assert h.each(msg(T0 + written, "customer", ANGRY)) == []
    row = h.latest()
    assert row["resolution_ms"] == 10 * MIN and row["contacts"] == 1 and row["negative_messages"] == 1
    assert row["fcr"] is True and row["reopened"] is False


def test_negative_message_one_ms_after_the_resolution_reopens_the_ticket_and_fires() -> None:
    h = SupportHarness()
    h.each(opened(T0), msg(T0 + MIN, "agent"), resolved(T0 + 10 * MIN))
    (trigger,) = h.each(msg(T0 + 10 * MIN + 1, "customer", ANGRY))
    assert trigger["reasons"] == ["negative_sentiment", "ticket_reopened"]
    assert trigger["trigger_id"] == stable_id("support_risk", "shop-a", "t-1", 1)
    assert h.latest()["resolution_ms"] is None and h.latest()["fcr"] is False


# -- state -----------------------------------------------------------------------


def test_tickets_survive_the_state_round_trip_and_stay_small() -> None:
    h = SupportHarness()
    h.each(opened(T0), msg(T0 + MIN, "customer", ANGRY), msg(T0 + 2 * MIN, "agent"), resolved(T0 + 5 * MIN),
           answered(T0 + HOUR, "csat", 2, ticket_id="t-1"))  # fmt: skip
    (data,) = [v for k, v in h.table.items() if not k.startswith(STAGE_PREFIX)]
    state = decode_state(data)
    assert encode_state(state) == data
    (ticket,) = state.tickets
    assert (ticket.first_response_ms, ticket.resolution_ms) == (2 * MIN, 5 * MIN)
    assert (ticket.csat, ticket.risk_fired) == (2.0, True)
    assert len(data) < 400


def test_a_customer_keeps_at_most_max_tickets_preferring_to_forget_closed_ones() -> None:
    h = SupportHarness(Rules(allowed_lateness_ms=0, holdout_pct=0.0, max_tickets=2))
    # t-a open; t-b resolved; t-c opened: t-b (closed) is forgotten, t-a (open) stays.
    h.each(opened(T0, "t-a"), opened(T0 + MIN, "t-b"), resolved(T0 + 2 * MIN, "t-b"), opened(T0 + 3 * MIN, "t-c"))
    (data,) = [v for k, v in h.table.items() if not k.startswith(STAGE_PREFIX)]
    assert [t.ticket_id for t in decode_state(data).tickets] == ["t-a", "t-c"]


def test_replay_after_a_crash_writes_the_same_rows_and_trigger_ids() -> None:
    events = [opened(T0), msg(T0 + MIN, "customer", ANGRY), msg(T0 + 2 * MIN, "agent"), resolved(T0 + 5 * MIN)]
    first = SupportHarness()
    first.each(*events)
    # A crash before the states were stored: a fresh worker replays the same records.
    second = SupportHarness()
    second.each(*events)
    assert second.facts == first.facts
    assert [t["trigger_id"] for t in second.triggers] == [t["trigger_id"] for t in first.triggers]
    # A replay over stored states skips the records already applied: nothing new.
    again = SupportHarness(table=dict(first.table))
    again.each(*events)
    assert again.facts == {} and again.triggers == []
