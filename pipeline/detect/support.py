"""Support experience: tickets, message sentiment, surveys and the ``support_risk`` trigger; pure.

The processor calls ``apply_support`` for the four support events of the
catalog (``vocabulary.SUPPORT_EVENTS``) and ``note_order`` for every ``Order
Completed``. ``apply_support`` updates the visitor's tickets and returns
what to write and send:

- ``cx.support_tickets``: the ticket's whole state after every change, with
  a growing ``version`` (ReplacingMergeTree keeps the latest), once its
  ``Support Ticket Opened`` was seen (the opening fixes the ticket's day);
- ``cx.support_messages``: per message, its author and, for a customer
  message with text, the sentiment score and label; the text goes nowhere;
- ``cx.surveys``: per valid answer, the score and the links to its ticket
  and order; a comment only as its sentiment.

``support_risk`` (``action: assist``, priority routing for the helpdesk)
fires when

- a customer message on an open ticket is clearly negative (score <=
  ``rules.support_risk_sentiment``): once per ticket opening (a ticket the
  customer reopens by writing after its resolution can fire again); or
- an NPS answer of 0-6 (a detractor) arrives at most
  ``rules.support_recent_order_ms`` after the latest ``Order Completed``
  seen under this key (reason ``recent_order``); or, failing that, names an
  ``order_id`` never seen under this key (reason ``post_purchase``: the
  helpdesk sends the survey under the customer's id while the browser's
  order is under its anonymous id, so the order's time is not known here).
  A detractor naming an order seen under this key, whose latest order is
  older than the window, does not fire.

Like every trigger, a customer in the holdout of the trigger's experiment
(``rules.experiment_for("support_risk")``) gets ``action: none``.
Trigger ids come from the ticket and its opening, or from the survey's event
id: replays give the same ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.detect.dedup import event_hash
from pipeline.detect.offers import decide_assist
from pipeline.detect.rules import Rules
from pipeline.detect.state import VisitorState
from pipeline.detect.tickets import SURVEY_KINDS, Ticket
from pipeline.wire.records import stable_id
from pipeline.sentiment import Sentiment, lang_of_locale, score
from pipeline.vocabulary import (
    SUPPORT_MESSAGE_SENT, SUPPORT_TICKET_OPENED, SUPPORT_TICKET_RESOLVED, SURVEY_ANSWERED, label,
)  # fmt: skip

__all__ = [
    "SupportOutput",
    "apply_support",
    "note_order",
]

TICKETS_TABLE = "cx.support_tickets"
MESSAGES_TABLE = "cx.support_messages"
SURVEYS_TABLE = "cx.surveys"
NPS_DETRACTOR_MAX = 6
_LABELS = ("negative", "neutral", "positive")


@dataclass(slots=True)
class SupportOutput:
    facts: list[tuple[str, dict]] = field(default_factory=list)  # (table, row dict)
    trigger: dict | None = None


def note_order(state: VisitorState, t_ms: int) -> None:
    """Remember the latest order's event time (for the detractor-after-order rule)."""
    if state.last_order_ms is None or t_ms > state.last_order_ms:
        state.last_order_ms = t_ms


def _find(state: VisitorState, ticket_id: str) -> Ticket | None:
    for ticket in state.tickets:
        if ticket.ticket_id == ticket_id:
            return ticket
    return None


def _ticket(state: VisitorState, ticket_id: str, rules: Rules) -> Ticket:
    ticket = _find(state, ticket_id)
    if ticket is None:
        ticket = Ticket(ticket_id=ticket_id)
        state.tickets.append(ticket)
        if len(state.tickets) > rules.max_tickets:
            # Forget the least recently active ticket, preferring a closed one.
            victim = min(state.tickets[:-1], key=lambda t: (t.is_open, t.last_ms))
            state.tickets.remove(victim)
    return ticket


def _forget_stale(state: VisitorState, now_ms: int, rules: Rules) -> None:
    cutoff = now_ms - rules.ticket_retention_ms
    state.tickets = [t for t in state.tickets if t.last_ms >= cutoff or (t.is_open and t.opened_ms is not None)]


def _ticket_row(state: VisitorState, ticket: Ticket, customer_id: str) -> dict:
    return {
        "tenant": state.tenant,
        "ticket_id": ticket.ticket_id,
        "version": ticket.version,
        "opened_ms": ticket.opened_ms,
        "updated_ms": ticket.last_ms,
        "customer_id": customer_id,
        "channel": ticket.channel,
        "topic": ticket.topic,
        "order_id": ticket.order_id,
        "first_response_ms": ticket.first_response_ms,
        "resolution_ms": ticket.resolution_ms,
        "resolutions": ticket.resolutions,
        "reopened": ticket.reopened,
        "agent_replies": ticket.agent_msgs,
        "contacts": ticket.customer_msgs,
        "negative_messages": ticket.negative_msgs,
        "fcr": ticket.fcr,
        "csat": ticket.csat,
        "nps": ticket.nps,
        "ces": ticket.ces,
    }


def _trigger(
    state: VisitorState, trigger_id: str, customer_id: str, t_ms: int, reasons: list[str], rules: Rules, wall_ms: int
) -> dict:
    decision = decide_assist(
        rules, kind="support_risk", tenant=state.tenant, subject=customer_id or state.anonymous_id or ""
    )
    return {
        "trigger_id": trigger_id,
        "kind": "support_risk",
        "tenant": state.tenant,
        "customer_id": customer_id or None,
        "anonymous_id": state.anonymous_id,
        "session_id": None,
        "cart_id": None,
        "cart_key": "",
        "cart_value": 0.0,
        "currency": None,
        "items": [],
        "event_time_ms": t_ms,
        "emitted_at_ms": wall_ms,
        "reasons": reasons,
        "friction_score": 0,
        "action": decision.action,
        "offer": None,
        "holdout": decision.holdout,
        "experiment": decision.experiment,
        "ref_trigger_id": None,
    }


def apply_support(
    state: VisitorState, event: dict, name: str, props: dict, rules: Rules, wall_ms: int
) -> SupportOutput:
    """Apply one support event (``name`` in ``vocabulary.SUPPORT_EVENTS``, properties validated by the collector)."""
    out = SupportOutput()
    t_ms = event["event_time_ms"]
    customer_id = event.get("user_id") or state.user_id or ""
    ticket_id = label(props.get("ticket_id"))
    if name == SURVEY_ANSWERED:
        ticket = _find(state, ticket_id) if ticket_id else None
        _survey(state, event, props, ticket, customer_id, rules, wall_ms, out)
    else:
        ticket = _ticket(state, ticket_id, rules)
        if name == SUPPORT_TICKET_OPENED:
            if ticket.opened_ms is None:  # the first opening fixes the ticket's day
                ticket.opened_ms = t_ms
            ticket.channel = ticket.channel or label(props.get("channel"))
            ticket.topic = ticket.topic or label(props.get("topic"))
            ticket.order_id = ticket.order_id or label(props.get("order_id"))
        elif name == SUPPORT_MESSAGE_SENT:
            _message(state, event, props, ticket, customer_id, rules, wall_ms, out)
        elif name == SUPPORT_TICKET_RESOLVED:
            ticket.resolutions += 1
            ticket.resolved_ms = t_ms if ticket.resolved_ms is None else max(ticket.resolved_ms, t_ms)
            ticket.waiting = False
            if props.get("reopened") is True:
                ticket.reopened_flag = True
    if ticket is not None:
        ticket.version += 1
        ticket.last_ms = max(ticket.last_ms, t_ms)
        if ticket.opened_ms is not None:
            out.facts.append((TICKETS_TABLE, _ticket_row(state, ticket, customer_id)))
    _forget_stale(state, max(t_ms, state.max_event_ms or t_ms), rules)
    return out


def _sentiment(props: dict, name: str, event: dict) -> Sentiment | None:
    """The sentiment of a message's ``text`` or a survey's ``comment``; None when there is none.

    The collector sends ``<name>_sentiment`` (score, label, lang) instead of
    the text; events from before that (a replay of older records) still
    carry the text, scored here the same way.
    """
    found = props.get(f"{name}_sentiment")
    if isinstance(found, dict):
        value, label, lang = found.get("score"), found.get("label"), found.get("lang")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and label in _LABELS:
            return Sentiment(float(value), label, lang if lang in ("fr", "en") else "en")
        return None
    text = props.get(name)
    if isinstance(text, str) and text.strip():
        return score(text, lang_of_locale(event.get("locale")))
    return None


def _message(
    state: VisitorState,
    event: dict,
    props: dict,
    ticket: Ticket,
    customer_id: str,
    rules: Rules,
    wall_ms: int,
    out: SupportOutput,
) -> None:
    t_ms = event["event_time_ms"]
    author = label(props.get("author"))
    row = {
        "tenant": state.tenant,
        "message_id": event["event_id"],
        "event_time_ms": t_ms,
        "ticket_id": ticket.ticket_id,
        "customer_id": customer_id,
        "author": author,
        "lang": "",
        "sentiment": 0.0,
        "sentiment_label": "",
    }
    if author == "agent":
        ticket.agent_msgs += 1
        if ticket.first_agent_ms is None or t_ms < ticket.first_agent_ms:
            ticket.first_agent_ms = t_ms
        out.facts.append((MESSAGES_TABLE, row))
        return
    ticket.customer_msgs += 1
    if ticket.resolved_ms is not None and not ticket.waiting and t_ms > ticket.resolved_ms:
        ticket.waiting = True  # the customer is back: the ticket is open again
        ticket.openings += 1
        ticket.risk_fired = False
    sentiment = _sentiment(props, "text", event)
    if sentiment is not None:
        row.update(lang=sentiment.lang, sentiment=sentiment.score, sentiment_label=sentiment.label)
        if sentiment.label == "negative":
            ticket.negative_msgs += 1
        if sentiment.score <= rules.support_risk_sentiment and ticket.is_open and not ticket.risk_fired:
            ticket.risk_fired = True
            reasons = ["negative_sentiment"] + (["ticket_reopened"] if ticket.openings else [])
            trigger_id = stable_id("support_risk", state.tenant, ticket.ticket_id, ticket.openings)
            out.trigger = _trigger(state, trigger_id, customer_id, t_ms, reasons, rules, wall_ms)
    out.facts.append((MESSAGES_TABLE, row))


def _survey(
    state: VisitorState,
    event: dict,
    props: dict,
    ticket: Ticket | None,
    customer_id: str,
    rules: Rules,
    wall_ms: int,
    out: SupportOutput,
) -> None:
    t_ms = event["event_time_ms"]
    kind = label(props.get("survey"))
    raw_score = props.get("score")
    if isinstance(raw_score, bool) or not isinstance(raw_score, (int, float)) or raw_score != raw_score:
        # The collector's catalog requires a numeric score; a record from
        # elsewhere without one is stored as an event, with no survey row.
        return
    value = float(raw_score)
    order_id = label(props.get("order_id"))
    row = {
        "tenant": state.tenant,
        "survey_id": event["event_id"],
        "event_time_ms": t_ms,
        "customer_id": customer_id,
        "survey": kind,
        "score": value,
        "ticket_id": label(props.get("ticket_id")),
        "order_id": order_id,
        "has_comment": False,
        "comment_sentiment": 0.0,
        "comment_label": "",
    }
    sentiment = _sentiment(props, "comment", event)
    if sentiment is not None:
        row.update(has_comment=True, comment_sentiment=sentiment.score, comment_label=sentiment.label)
    out.facts.append((SURVEYS_TABLE, row))
    if ticket is not None and kind in SURVEY_KINDS:
        ticket.note_survey(kind, value, t_ms)
    if kind == "nps" and value <= NPS_DETRACTOR_MAX:
        why = _detractor_order(state, order_id, t_ms, rules)
        if why is not None:
            trigger_id = stable_id("support_risk", state.tenant, "nps", event["event_id"])
            out.trigger = _trigger(state, trigger_id, customer_id, t_ms, ["nps_detractor", why], rules, wall_ms)


def _detractor_order(state: VisitorState, order_id: str, t_ms: int, rules: Rules) -> str | None:
    """Why a detractor answer at ``t_ms`` follows a recent order, or None when it does not.

    ``recent_order``: the latest ``Order Completed`` under this key is at
    most ``support_recent_order_ms`` before the answer (both ends included).
    ``post_purchase``: otherwise, the answer names an ``order_id`` never
    seen under this key (it was placed under another key, e.g. the
    browser's anonymous id), so its time is unknown here: a survey about a
    given order is a post-purchase survey. A named order seen under this
    key (one of its last 8 order ids, ``customers.ORDER_IDS_KEPT``) is no later than the
    latest order: when that one is outside the window, so is the named one,
    and nothing fires.
    """
    last = state.last_order_ms
    if last is not None and 0 <= t_ms - last <= rules.support_recent_order_ms:
        return "recent_order"
    if order_id and event_hash(order_id) not in state.value.order_ids:
        return "post_purchase"
    return None
