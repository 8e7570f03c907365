"""Seeded traffic of a fictional French/English fashion & home shop, as Segment messages.

``generate(seed, visitors=..., start_ms=..., span_ms=...)`` returns the
messages (dicts exactly as analytics.js would send them) ordered by
timestamp, and ``Expected``, the ground truth the generator kept while
planning. ``iter_messages`` streams the same sequence without holding it.
Same arguments, same messages; nothing reads the wall clock.

How a stream is made
--------------------
People arrive over ``[start_ms, start_ms + span_ms]`` following a daily
curve (quiet at night, peaks at lunch and in the evening, UTC). Each
person's journey is planned in one go, and the journeys are merged by time.
Events planned after the end of the span are cut; the ground truth counts
only what was kept. Inside one browser visit no two events are more than a
few minutes apart, and a person's next visit starts at least 45 minutes
after the previous one ended: no planned gap sits near the 30-minute
session and cart-abandonment thresholds.

Per person: locale fr-FR 60% / en-GB 25% / en-US 15% (product names, page
titles and support texts in French or English); 12% have an account and log
in first (identify); the device sends ``cart_id`` on cart events for 85% of
devices (the others rely on "the visitor's one open cart").

First visit: 35% bounce (one page), 43% browse (2-8 pages; 3% of them sign
up to the newsletter: identify with consent), 22% shop. Browsing mixes home,
category pages (``Product List Viewed``), product pages (``Product
Viewed``) and searches (``Products Searched``; 18% of searches find
nothing, half of those are retried). Pages are read 12 s to 2.5 min.

Shopping: 1 product added, a second 35%, a third 15%; 4% of one-item carts
(with cart_id) are emptied again, never abandoned; cart viewed 70% (an item
removed 20% when two or more); checkout 50% (80% for a repeat customer).
Checkout: step 1 (guest checkout identifies: e-mail, consent_marketing
about 60% true), step 2 (shipping method), step 3 (payment). Leaves: 15% at
step 1, 10% at step 2 (5% and 3% when back for an abandoned cart), 35% after a denied coupon (coupons are tried 15%,
accepted 55%). ``Payment Failed`` 13%, again 35% of those (half of them
give up), at most three times. 5% go back from shipping to the cart and
check out again, 40% of those a second time (the third view of a step is a
checkout loop, as is a second denied coupon in a visit). Orders carry order_id, total, revenue
(85%; else the pipeline uses total), shipping (free from 60 EUR except
express), tax (20% VAT included), discount, coupon, products. Carts left
this way are abandoned: no activity for at least 45 minutes, often never.
About 63% of carts end abandoned; 22% of those owners come back 45 min to
8 h later, straight to the cart, and mostly order (recovered).

Returns: a customer who ordered comes back 2-30 h later (30%, then 15%),
from another device 30% of the time (new anonymousId, same userId, logs in).

Friction, per page: rage burst 2.5% (3-5 clicks on one non-interactive
selector within 1 s), dead click 2% (interactive, no response), a normal
click 12%, slow load 4% (``load_time_ms`` 4.2-9.5 s; others 0.3-2.8 s),
u-turn (back to the previous page 2-9 s after arriving, if nothing was
clicked meanwhile; going "back" to the very page shown is not one) on 4% of
browsing steps, about 2% of page views; errors after a click: size not
chosen on 2% of product pages, postcode on 6% of checkouts, server error 1%;
script error shown on 1% of category pages; every payment failure shows an
error 0.9-4.4 s after the pay click (an error click only within 1 s).

Support (server-side, userId only): a ticket for 12% of orders (1-20 h
later), for 15% of account holders about an order placed before the span,
and for 35% of customers after two payment failures (chat); agents
answer after a delay that depends on the channel; 60% are resolved at first
contact; 15% are reopened. Customer texts are calm or clearly negative
(25-45% by topic). Surveys: NPS 2-30 h after 20% of orders, CSAT after 50% and
CES after 20% of tickets, scores skewed low after an angry ticket.

Deliberately invalid (dead letters): 1.3% of pages fire a broken tag
(``Product Added`` without price, ``Products Searched`` without query,
``Element Clicked`` without selector: ``missing_property``) and 4% of
survey answers carry an out-of-range score (``wrong_type``): about 0.5% of
all messages.

``Expected.friction`` counts planned occurrences by the definitions of
``pipeline.detect.friction``: ``rage_click`` (bursts), ``dead_click``,
``error_click`` (an ``Error Shown`` within 1 s of a click),
``error_shown``, ``payment_failed`` (events), ``payment_failed_x2``
(checkouts with a second failure), ``zero_result_search``, ``slow_page``,
``u_turn``, ``checkout_loop``.
"""

from __future__ import annotations

import gc
import heapq
import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from pipeline.demo.catalog import load_shop
from pipeline.demo.journey import plan_person
from pipeline.demo.ledger import Expected, Tally
from pipeline.demo.visit import Plan

__all__ = ["Expected", "Tally", "Traffic", "generate", "iter_messages"]

HOUR_MS = 3_600_000
# Relative traffic per UTC hour: a European shop, busiest at lunch and in the evening.
HOURLY_WEIGHT = (3, 2, 1, 1, 1, 2, 3, 5, 6, 7, 7, 8, 9, 8, 7, 7, 7, 8, 10, 12, 13, 11, 8, 5)


@dataclass(frozen=True)
class Traffic:
    messages: list[dict]
    expected: Expected


def _arrivals(rng: random.Random, visitors: int, start_ms: int, span_ms: int) -> list[int]:
    """Sorted arrival times drawn from the daily curve (rejection sampling)."""
    top = max(HOURLY_WEIGHT)
    times = []
    while len(times) < visitors:
        t = start_ms + int(rng.random() * span_ms)
        if rng.random() * top < HOURLY_WEIGHT[(t // HOUR_MS) % 24]:
            times.append(t)
    times.sort()
    return times


def iter_messages(
    seed: int,
    *,
    visitors: int,
    start_ms: int,
    span_ms: int,
    tenant_write_key: str | None = None,
    tally: Tally | None = None,
) -> Iterator[dict]:
    """Yield the stream's messages in timestamp order, planning people as time reaches them.

    ``tally`` (optional) is filled while iterating; its ``expected()`` is the
    ground truth once the iterator is exhausted. ``tenant_write_key`` adds
    ``writeKey`` to every message, for senders that authenticate in the body.
    Memory holds only the messages planned but not yet due (return visits,
    tickets), not the stream.
    """
    if visitors < 0 or span_ms <= 0:
        raise ValueError("visitors must be >= 0 and span_ms > 0")
    plan = Plan(seed, load_shop(), end_ms=start_ms + span_ms, write_key=tenant_write_key, tally=tally or Tally())
    pending: list[tuple[int, int, dict]] = []
    seq = 0
    for t0 in _arrivals(plan.rng, visitors, start_ms, span_ms):
        # Nobody planned later can send anything before their arrival: what is due is final.
        while pending and pending[0][0] < t0:
            yield heapq.heappop(pending)[2]
        for ts, msg in plan_person(plan, t0):
            heapq.heappush(pending, (ts, seq, msg))
            seq += 1
    while pending:
        yield heapq.heappop(pending)[2]


def generate(
    seed: int,
    *,
    visitors: int,
    start_ms: int,
    span_ms: int,
    tenant_write_key: str | None = None,
) -> Traffic:
    """The whole stream in memory, with its ground truth."""
    tally = Tally()
    stream = iter_messages(
        seed, visitors=visitors, start_ms=start_ms, span_ms=span_ms, tenant_write_key=tenant_write_key, tally=tally
    )
    with _gc_paused():
        messages = list(stream)
    return Traffic(messages, tally.expected())


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a large stream is built.

    A million live message dicts make every full collection rescan them all,
    which more than doubles the time; messages hold no reference cycles, so
    nothing is left for the collector to find.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
