"""Ground truth of a generated stream, kept by the planner as it emits.

The planner knows which cart every event belongs to, which events are
deliberately invalid and which visit is a new browser session; it records
only what it actually emitted (events after the end of the span are cut),
so the counts describe the stream exactly. Nothing here parses messages.

Planned gaps between two events of one browser visit stay under
``MAX_IN_VISIT_GAP_MS``; a later visit starts at least ``MIN_RETURN_GAP_MS``
after the previous one ended. Nothing is planned near the 30-minute
thresholds (cart inactivity, session gap), so the counts do not depend on
how a pipeline rounds or compares at the boundary; ``CartTrace.outcome``
raises if the planner ever breaks that promise.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

__all__ = ["ABANDON_AFTER_MS", "CartTrace", "Expected", "Tally"]

MINUTE_MS = 60_000
ABANDON_AFTER_MS = 30 * MINUTE_MS
MAX_IN_VISIT_GAP_MS = 20 * MINUTE_MS
MIN_RETURN_GAP_MS = 45 * MINUTE_MS


@dataclass(frozen=True)
class Expected:
    """What a correct pipeline must find in one generated stream (one tenant).

    ``abandoned_carts`` is the final count, once event time has passed every
    cart's deadline; ``settle_ms`` is that moment (the latest deadline), so a
    test knows how far its watermark must go before comparing. The counts
    assume the stream is sent while its events are inside the collector's
    accepted window (at most 7 days old); older events are dead letters too.
    """

    messages: int
    invalid: int  # deliberately invalid events: the dead letters to expect
    invalid_by_reason: dict[str, int]  # "missing_property" / "wrong_type" -> count
    visitors: int  # distinct anonymousIds (browser devices)
    identified_visitors: int  # distinct anonymousIds that sent an identify call
    identified_customers: int  # distinct userIds named by an identify call
    consenting_customers: int  # of those, with consent_marketing true
    browser_sessions: int  # planned visits; helpdesk events (userId only) are not in it
    carts: int
    orders: int
    abandoned_carts: int
    recovered_carts: int  # abandoned, then ordered on a later visit
    emptied_carts: int  # every item removed: never abandoned
    revenue: float  # EUR, sum of `revenue` when sent, else `total`
    settle_ms: int | None
    tickets: int
    fcr_tickets: int  # resolved with one agent reply, the customer not back (FCR, docs/detection.md)
    reopened_tickets: int  # resolved a second time after the customer came back
    surveys: dict[str, int]  # valid answers per survey kind
    friction: dict[str, int]  # planned occurrences, see storefront's docstring


@dataclass(slots=True)
class CartTrace:
    """One cart's emitted activity: (event time, items held afterwards), then its order."""

    key: str
    steps: list[tuple[int, int]] = field(default_factory=list)
    order_ms: int | None = None

    def outcome(self) -> tuple[bool, int | None]:
        """(abandoned, deadline_ms of the first abandonment) from the emitted steps."""
        for i, (t, items) in enumerate(self.steps):
            nxt = self.steps[i + 1][0] if i + 1 < len(self.steps) else self.order_ms
            if nxt is not None and MAX_IN_VISIT_GAP_MS < nxt - t < MIN_RETURN_GAP_MS:
                raise AssertionError(f"cart {self.key}: planned gap {nxt - t} ms is too close to the threshold")
            if items > 0 and (nxt is None or nxt - t >= ABANDON_AFTER_MS):
                return True, t + ABANDON_AFTER_MS
        return False, None


class Tally:
    """Counters the planner fills while emitting; ``expected()`` freezes them."""

    def __init__(self) -> None:
        self.messages = 0
        self.invalid: Counter[str] = Counter()
        self.devices: set[str] = set()
        self.identified_devices: set[str] = set()
        self.customers: dict[str, bool] = {}  # userId -> consent_marketing
        self.sessions = 0
        self.carts = self.orders = self.abandoned = self.recovered = self.emptied = 0
        self.revenue_cents = 0
        self.settle_ms: int | None = None
        self.tickets = self.fcr_tickets = self.reopened_tickets = 0
        self.surveys: Counter[str] = Counter()
        self.friction: Counter[str] = Counter()

    def close_cart(self, cart: CartTrace) -> None:
        """Count a cart once its visitor's plan is complete (no more events can join it)."""
        if not cart.steps:
            return  # its first Product Added fell after the end of the span
        self.carts += 1
        abandoned, deadline = cart.outcome()
        if abandoned:
            self.abandoned += 1
            self.recovered += cart.order_ms is not None
            self.settle_ms = deadline if self.settle_ms is None else max(self.settle_ms, deadline)
        if cart.steps[-1][1] == 0:
            self.emptied += 1

    def expected(self) -> Expected:
        return Expected(
            messages=self.messages,
            invalid=sum(self.invalid.values()),
            invalid_by_reason=dict(sorted(self.invalid.items())),
            visitors=len(self.devices),
            identified_visitors=len(self.identified_devices),
            identified_customers=len(self.customers),
            consenting_customers=sum(self.customers.values()),
            browser_sessions=self.sessions,
            carts=self.carts,
            orders=self.orders,
            abandoned_carts=self.abandoned,
            recovered_carts=self.recovered,
            emptied_carts=self.emptied,
            revenue=self.revenue_cents / 100,
            settle_ms=self.settle_ms,
            tickets=self.tickets,
            fcr_tickets=self.fcr_tickets,
            reopened_tickets=self.reopened_tickets,
            surveys=dict(sorted(self.surveys.items())),
            friction=dict(sorted(self.friction.items())),
        )
