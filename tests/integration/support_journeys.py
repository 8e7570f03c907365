"""Scripted helpdesk traffic with hand-computed ``support_daily`` numbers and triggers.

Server-side calls with a userId only, as a helpdesk integration sends them.
Times are minutes after 10:00 UTC on day D = yesterday.

    u-s1 fr-FR  tk-1 chat opened @0; customer "Colis jamais reçu, c'est inadmissible." @1
                (negative -> support_risk); agent @3 (first response 180 s); resolved @20
                -> FCR; CSAT 5 @30 and CES 2 @31 about tk-1
    u-s2 en-GB  tk-2 email opened @0; customer "Hi, could you tell me where my order is?" @0.5
                (neutral); agent @60 (3,600 s); customer "Thanks, all sorted now!" @70
                (positive); agent @80; resolved @90 -> two replies: not FCR; CSAT 2 @100
    u-s3 fr-FR  tk-3 phone opened @5; customer "Bonjour, le suivi n'a pas bougé depuis trois
                jours, est-ce normal ?" @6 (neutral); agent @6.5 (90 s); resolved @10;
                customer "Toujours pas remboursé après trois semaines, c'est du vol." @120
                (negative, after the resolution: the ticket is open again -> support_risk,
                reasons negative_sentiment + ticket_reopened); agent @130; resolved
                reopened=true @140 -> reopened: not FCR
    u-s4 en-US  tk-4 social opened @30; customer "Still no refund after 3 weeks." @31
                (negative -> support_risk); a customer message without text @32 (no
                sentiment); no agent reply yet: out of the first-response figures
    u-s5        NPS 3 about order o-5 @50, no ticket, no order under u-s5's key -> detractor
                after an order whose time is not known here: support_risk, post_purchase
    u-s6/7/8    NPS 10 @51, NPS 8 @52, NPS 9 @53 (no order named: no trigger either way)
    u-s9        CSAT 6 @60 with a comment: outside 1-5 -> dead letter wrong_type, not counted

Hand-computed for day D:
    tickets 4; first responses 90, 180, 3600 s (sorted, n = 3)
        avg (90 + 180 + 3600) / 3 = 1290; median h = 1 -> 180; p90 h = 1.8 -> 180 + 0.8 * 3420 = 2916
    resolved 3 (tk-1, tk-2, tk-3), FCR 1 (tk-1) -> fcr_rate 1/3; reopened 1
    csat 5, 2 -> 1/2; nps 3, 10, 8, 9 -> (2 promoters - 1 detractor) / 4 = +25; ces 2
    customer messages with text 6, negative 3 -> negative_sentiment_share 0.5
    triggers: support_risk x4, all action assist (holdout share 0 in this run)
"""

from __future__ import annotations

import datetime as dt

__all__ = ["EXPECTED", "SECRET_TEXTS", "support_messages"]

EXPECTED = {
    "tickets": 4,
    "first_response_s_avg": 1290.0,
    "first_response_s_median": 180.0,
    "first_response_s_p90": 2916.0,
    "fcr_rate": 1 / 3,
    "csat": 0.5,
    "nps": 25.0,
    "ces_avg": 2.0,
    "negative_sentiment_share": 0.5,
    "responded_tickets": 3,
    "resolved_tickets": 3,
    "fcr_tickets": 1,
    "reopened_tickets": 1,
    "customer_messages": 6,
    "negative_messages": 3,
    "csat_answers": 2,
    "nps_answers": 4,
    "ces_answers": 1,
}
EXPECTED_TRIGGERS = {  # customer id -> reasons
    "u-s1": ["negative_sentiment"],
    "u-s3": ["negative_sentiment", "ticket_reopened"],
    "u-s4": ["negative_sentiment"],
    "u-s5": ["nps_detractor", "post_purchase"],
}

ANGRY_FR = "Colis jamais reçu, c'est inadmissible."
REOPEN_FR = "Toujours pas remboursé après trois semaines, c'est du vol."
SECRET_TEXTS = [
    ANGRY_FR,
    "Hi, could you tell me where my order is?",
    "Thanks, all sorted now!",
    "Bonjour, le suivi n'a pas bougé depuis trois jours, est-ce normal ?",
    REOPEN_FR,
    "Still no refund after 3 weeks.",
    "Le livreur est passé, réponse de l'agent Martine au 0612345678",  # an agent message
    "Widget cassé, score impossible",  # the dead letter's comment
]


def _ts(day: dt.date, minute: float) -> str:
    t = dt.datetime(day.year, day.month, day.day, 10, tzinfo=dt.timezone.utc) + dt.timedelta(minutes=minute)
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def support_messages(tenant: str, day: dt.date) -> list[dict]:
    """The traffic above as Segment batch messages."""
    n = iter(range(1, 1000))

    def track(user: str, minute: float, event: str, props: dict, locale: str | None = None) -> dict:
        msg = {
            "type": "track",
            "event": event,
            "userId": user,
            "properties": props,
            "timestamp": _ts(day, minute),
            "messageId": f"{tenant}-s{next(n)}",
        }
        if locale:
            msg["context"] = {"locale": locale}
        return msg

    def opened(user: str, minute: float, ticket: str, channel: str, locale: str) -> dict:
        return track(user, minute, "Support Ticket Opened", {"ticket_id": ticket, "channel": channel}, locale)

    def said(user: str, minute: float, ticket: str, author: str, text: str | None, locale: str) -> dict:
        props = {"ticket_id": ticket, "author": author}
        if text is not None:
            props["text"] = text
        return track(user, minute, "Support Message Sent", props, locale)

    def resolved(user: str, minute: float, ticket: str, reopened: bool = False) -> dict:
        return track(user, minute, "Support Ticket Resolved", {"ticket_id": ticket, "reopened": reopened})

    def survey(user: str, minute: float, kind: str, score: float, **props: object) -> dict:
        return track(user, minute, "Survey Answered", {"survey": kind, "score": score, **props})

    agent_fr = SECRET_TEXTS[6]
    return [
        opened("u-s1", 0, "tk-1", "chat", "fr-FR"),
        said("u-s1", 1, "tk-1", "customer", ANGRY_FR, "fr-FR"),
        said("u-s1", 3, "tk-1", "agent", agent_fr, "fr-FR"),
        resolved("u-s1", 20, "tk-1"),
        survey("u-s1", 30, "csat", 5, ticket_id="tk-1"),
        survey("u-s1", 31, "ces", 2, ticket_id="tk-1"),
        opened("u-s2", 0, "tk-2", "email", "en-GB"),
        said("u-s2", 0.5, "tk-2", "customer", SECRET_TEXTS[1], "en-GB"),
        said("u-s2", 60, "tk-2", "agent", "Sorry for the wait, it ships today.", "en-GB"),
        said("u-s2", 70, "tk-2", "customer", SECRET_TEXTS[2], "en-GB"),
        said("u-s2", 80, "tk-2", "agent", "Glad to help.", "en-GB"),
        resolved("u-s2", 90, "tk-2"),
        survey("u-s2", 100, "csat", 2, ticket_id="tk-2"),
        opened("u-s3", 5, "tk-3", "phone", "fr-FR"),
        said("u-s3", 6, "tk-3", "customer", SECRET_TEXTS[3], "fr-FR"),
        said("u-s3", 6.5, "tk-3", "agent", agent_fr, "fr-FR"),
        resolved("u-s3", 10, "tk-3"),
        said("u-s3", 120, "tk-3", "customer", REOPEN_FR, "fr-FR"),
        said("u-s3", 130, "tk-3", "agent", agent_fr, "fr-FR"),
        resolved("u-s3", 140, "tk-3", reopened=True),
        opened("u-s4", 30, "tk-4", "social", "en-US"),
        said("u-s4", 31, "tk-4", "customer", SECRET_TEXTS[5], "en-US"),
        said("u-s4", 32, "tk-4", "customer", None, "en-US"),
        survey("u-s5", 50, "nps", 3, order_id="o-5"),
        survey("u-s6", 51, "nps", 10),
        survey("u-s7", 52, "nps", 8),
        survey("u-s8", 53, "nps", 9),
        survey("u-s9", 60, "csat", 6, comment=SECRET_TEXTS[7]),
    ]
