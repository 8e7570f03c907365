"""Helpdesk and survey events, sent server-side with the customer's userId only.

Tickets follow their own clock from the moment the customer writes; agents
answer after a channel-dependent delay; some tickets are resolved at first
contact, some need a second exchange, some are reopened. Surveys follow
orders (NPS) and resolved tickets (CSAT, CES). A few survey answers carry an
out-of-range score (a broken widget): those are the ``wrong_type`` dead
letters, and they are not counted as answers. Customer messages are worded
in one of several ways (``support.json`` ``variants``), calm or clearly
angry as planned.
"""

from __future__ import annotations

import random

from pipeline.demo.visit import Person, Plan

__all__ = ["plan_support"]

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS

P_TICKET_PER_ORDER = 0.12
P_TICKET_PAST_ORDER = 0.15  # an account holder writes about an order from before the span
P_TICKET_AFTER_PAYMENT_TROUBLE = 0.35
P_NPS_PER_ORDER = 0.20
P_FIRST_CONTACT_RESOLUTION = 0.6
P_REOPEN = 0.15
P_CSAT = 0.5
P_CES = 0.2
P_BROKEN_SURVEY = 0.04

FIRST_RESPONSE_MS = {  # channel -> (min, max) agent response delay
    "chat": (20_000, 8 * MINUTE_MS),
    "phone": (30_000, 3 * MINUTE_MS),
    "social": (5 * MINUTE_MS, 5 * HOUR_MS),
    "email": (20 * MINUTE_MS, 8 * HOUR_MS),
}
ORDER_TOPICS = ("delivery", "delivery", "refund", "damaged", "size", "size")
ANGRY_TOPICS = {"delivery", "refund", "payment"}

# Score weights (index = score - lowest score): happy customers vs. angry ones.
NPS_HAPPY = (2, 1, 1, 2, 2, 4, 8, 12, 16, 22, 30)  # 20% detractors, 52% promoters: NPS +32
NPS_ANGRY = (12, 8, 10, 12, 12, 12, 10, 10, 6, 4, 4)
CSAT_HAPPY = (5, 5, 10, 30, 50)
CSAT_ANGRY = (30, 25, 20, 15, 10)
CES_HAPPY = (2, 3, 5, 10, 20, 30, 30)
CES_ANGRY = (20, 20, 20, 15, 10, 10, 5)
SURVEYS = {  # kind -> (lowest score, happy weights, angry weights, an out-of-range score)
    "nps": (0, NPS_HAPPY, NPS_ANGRY, 11),
    "csat": (1, CSAT_HAPPY, CSAT_ANGRY, 6),
    "ces": (1, CES_HAPPY, CES_ANGRY, 0),
}


def _survey(plan: Plan, person: Person, t: int, kind: str, angry: bool, ref: dict) -> None:
    rng = plan.rng
    low, happy, unhappy, out_of_range = SURVEYS[kind]
    weights = unhappy if angry else happy
    if rng.random() < P_BROKEN_SURVEY:
        broken = {"survey": kind, "score": out_of_range, **ref}
        plan.server_track(t, person, "Survey Answered", broken, invalid="wrong_type")
        return
    score = low + rng.choices(range(len(weights)), weights)[0]
    props = {"survey": kind, "score": score, **ref}
    if rng.random() < 0.3:
        good = score >= low + (len(weights) * 2) // 3
        props["comment"] = rng.choice(plan.shop.support["survey_comments"][person.lang]["good" if good else "bad"])
    if plan.server_track(t, person, "Survey Answered", props):
        plan.tally.surveys[kind] += 1


def _message(plan: Plan, person: Person, t: int, ticket_id: str, author: str, text: str) -> bool:
    variants = plan.shop.support["variants"].get(text)
    if variants:
        # The wording comes from a generator of its own, seeded by the message:
        # the planner's sequence, and so every time and id of the stream, is
        # the same as without variants.
        text = random.Random(f"{ticket_id}|{author}|{t}").choice([text, *variants])
    props = {"ticket_id": ticket_id, "author": author, "text": text}
    return plan.server_track(t, person, "Support Message Sent", props)


def _ticket(plan: Plan, person: Person, t: int, topic: str, order_id: str | None, channel: str | None = None) -> None:
    rng: random.Random = plan.rng
    texts = plan.shop.support
    lang = person.lang
    channel = channel or rng.choice(texts["channels"])
    angry = rng.random() < (0.45 if topic in ANGRY_TOPICS else 0.25)
    ticket_id = plan.short_id("tkt_")
    props = {"ticket_id": ticket_id, "channel": channel, "topic": topic}
    if order_id is not None:
        props["order_id"] = order_id
    if not plan.server_track(t, person, "Support Ticket Opened", props):
        return
    plan.tally.tickets += 1
    t += rng.randint(5_000, 90_000)
    opening = rng.choice(texts["topics"][topic][lang]["angry" if angry else "calm"])
    _message(plan, person, t, ticket_id, "customer", opening)
    t += rng.randint(*FIRST_RESPONSE_MS[channel])
    _message(plan, person, t, ticket_id, "agent", rng.choice(texts["agent"][lang]))
    one_exchange = True
    if rng.random() >= P_FIRST_CONTACT_RESOLUTION:
        one_exchange = False
        t += rng.randint(5 * MINUTE_MS, 6 * HOUR_MS)
        _message(plan, person, t, ticket_id, "customer", rng.choice(texts["customer_followup"][lang]))
        t += rng.randint(*FIRST_RESPONSE_MS[channel])
        _message(plan, person, t, ticket_id, "agent", rng.choice(texts["agent"][lang]))
    t += rng.randint(MINUTE_MS, 30 * MINUTE_MS)
    resolved = plan.server_track(t, person, "Support Ticket Resolved", {"ticket_id": ticket_id, "reopened": False})
    came_back = False
    if rng.random() < P_REOPEN:
        angry = True
        t += rng.randint(30 * MINUTE_MS, 6 * HOUR_MS)
        came_back = _message(plan, person, t, ticket_id, "customer", texts["customer_followup"][lang][-1])
        t += rng.randint(*FIRST_RESPONSE_MS[channel])
        _message(plan, person, t, ticket_id, "agent", rng.choice(texts["agent"][lang]))
        t += rng.randint(MINUTE_MS, 30 * MINUTE_MS)
        if plan.server_track(t, person, "Support Ticket Resolved", {"ticket_id": ticket_id, "reopened": True}):
            plan.tally.reopened_tickets += 1
    # First-contact resolution as the pipeline defines it: resolved, one agent
    # reply, and the customer did not come back (inside the span).
    plan.tally.fcr_tickets += resolved and one_exchange and not came_back
    if rng.random() < P_CSAT:
        _survey(plan, person, t + rng.randint(5 * MINUTE_MS, 3 * HOUR_MS), "csat", angry, {"ticket_id": ticket_id})
    if rng.random() < P_CES:
        _survey(plan, person, t + rng.randint(5 * MINUTE_MS, 3 * HOUR_MS), "ces", angry, {"ticket_id": ticket_id})


def plan_support(plan: Plan, person: Person, arrival_ms: int) -> None:
    """Tickets and surveys that follow this person's orders and payment troubles.

    Runs once the person's visits are planned; events after the span are cut
    like any other (``Plan.emit``).
    """
    if person.customer is None:
        return
    rng = plan.rng
    if person.has_account and rng.random() < P_TICKET_PAST_ORDER:
        past_order = plan.short_id("ord_")  # placed before the span: not in this stream
        t = arrival_ms + rng.randint(5 * MINUTE_MS, 6 * HOUR_MS)
        _ticket(plan, person, t, rng.choice(ORDER_TOPICS), past_order)
    for t in person.payment_troubles:
        if rng.random() < P_TICKET_AFTER_PAYMENT_TROUBLE:
            _ticket(plan, person, t + rng.randint(MINUTE_MS, 6 * MINUTE_MS), "payment", None, channel="chat")
    for t, order_id in person.orders:
        if rng.random() < P_TICKET_PER_ORDER:
            _ticket(plan, person, t + rng.randint(HOUR_MS, 20 * HOUR_MS), rng.choice(ORDER_TOPICS), order_id)
        if rng.random() < P_NPS_PER_ORDER:
            _survey(plan, person, t + rng.randint(2 * HOUR_MS, 30 * HOUR_MS), "nps", False, {"order_id": order_id})
