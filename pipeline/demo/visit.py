"""Emitting Segment messages: one browser visit's clock, page and identity.

A ``Visit`` is one browser session of one device. It owns the clock of that
session (event time, ms) and builds each message exactly as analytics.js
would send it. Every emit goes through ``Plan.emit``, which drops events
after the end of the span and counts what it keeps; callers record ground
truth only when an emit returned True.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from functools import lru_cache
from time import gmtime, strftime
from typing import Any

from pipeline.demo.catalog import Shop
from pipeline.demo.ledger import CartTrace, Tally

__all__ = ["Cart", "Customer", "Device", "Person", "Plan", "SeededRandom", "Visit", "iso_ms"]

P_CONSENT = 0.6
P_SLOW_PAGE = 0.04


@lru_cache(maxsize=16384)
def _minute_prefix(minute: int) -> str:
    return strftime("%Y-%m-%dT%H:%M:", gmtime(minute * 60))


_SECONDS = tuple(f"{s:02d}." for s in range(60))
_MILLIS = tuple(f"{ms:03d}Z" for ms in range(1000))


def iso_ms(ts_ms: int) -> str:
    """ISO-8601 UTC with milliseconds and Z, as analytics.js sends.

    Built from cached pieces: formatting a datetime per message would be
    the generator's largest single cost.
    """
    minute, rem = divmod(ts_ms, 60_000)
    s, ms = divmod(rem, 1000)
    return _minute_prefix(minute) + _SECONDS[s] + _MILLIS[ms]


class SeededRandom(random.Random):
    """``random.Random`` with randint and choice computed from ``random()`` alone.

    Faster than the stdlib's rejection sampling, and a stream then depends
    only on the Mersenne Twister output, which Python keeps stable.
    """

    def randint(self, a: int, b: int) -> int:
        return a + int(self.random() * (b - a + 1))

    def choice(self, seq):
        return seq[int(self.random() * len(seq))]


@dataclass(slots=True)
class Customer:
    user_id: str
    email: str
    consent: bool


@dataclass(slots=True)
class Cart:
    """A cart being planned; ``trace`` holds only what was emitted."""

    trace: CartTrace
    cart_id: str | None  # None: the shop front does not send cart_id for this device
    lines: dict[str, list] = field(default_factory=dict)  # product_id -> [Product, quantity]
    closed: bool = False  # ordered or emptied: a later visit starts a new cart

    @property
    def items(self) -> int:
        return sum(q for _, q in self.lines.values())

    @property
    def value_cents(self) -> int:
        return sum(p.price_cents * q for p, q in self.lines.values())


@dataclass(slots=True)
class Device:
    anonymous_id: str
    user_agent: str
    ip: str
    sends_cart_id: bool
    user_id: str | None = None  # persisted by the SDK after an identify
    open_cart: Cart | None = None


@dataclass(slots=True)
class Person:
    locale: str
    lang: str
    customer: Customer | None = None
    has_account: bool = False  # logs in at the start of the first visit
    orders: list[tuple[int, str]] = field(default_factory=list)  # (event time, order_id)
    payment_troubles: list[int] = field(default_factory=list)  # times of a second Payment Failed
    carts: list[Cart] = field(default_factory=list)


class Plan:
    """Shared by all visitors of one stream: randomness, shop data, span, ground truth."""

    def __init__(self, seed: int, shop: Shop, *, end_ms: int, write_key: str | None, tally: Tally) -> None:
        self.rng = SeededRandom(seed)
        self.shop = shop
        self.end_ms = end_ms
        self.write_key = write_key
        self.tally = tally
        self.out: list[tuple[int, dict]] = []  # the current visitor's messages
        self._bits = self.rng.getrandbits
        # messageIds: UUID-shaped, a prefix unique to (seed, write key) and a counter;
        # two tenants fed from one seed still never share an id.
        h = hashlib.blake2b(f"{seed}/{write_key}".encode(), digest_size=10).hexdigest()
        self._id_prefix = f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-"
        self._id_count = 0
        self._customers = 0

    def uuid(self) -> str:
        h = f"{self._bits(128):032x}"
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"

    def short_id(self, prefix: str) -> str:
        return f"{prefix}{self._bits(48):012x}"

    def customer(self, person: Person, *, consent: bool | None = None) -> Customer:
        """The person's account, created on first need (about 60% consent to marketing)."""
        if person.customer is None:
            rng, raw = self.rng, self.shop.raw
            self._customers += 1  # in the address: two customers never share an e-mail
            email = (f"{rng.choice(raw['first_names'])}.{rng.choice(raw['last_names'])}"
                     f"{self._customers}@{rng.choice(raw['email_domains'])}")
            consent = rng.random() < P_CONSENT if consent is None else consent
            person.customer = Customer(user_id=self.short_id("cus_"), email=email, consent=consent)
        return person.customer

    def emit(self, ts: int, msg: dict, invalid: str | None = None) -> bool:
        """Keep ``msg`` at event time ``ts`` unless it falls after the span; count it."""
        if ts > self.end_ms:
            return False
        self._id_count += 1
        msg["messageId"] = f"{self._id_prefix}{self._id_count:012x}"
        msg["timestamp"] = iso_ms(ts)
        if self.write_key is not None:
            msg["writeKey"] = self.write_key
        self.out.append((ts, msg))
        self.tally.messages += 1
        if invalid is not None:
            self.tally.invalid[invalid] += 1
        return True

    def server_track(self, ts: int, person: Person, event: str, props: dict, invalid: str | None = None) -> bool:
        """A server-side call (helpdesk, survey tool): userId only, no browser context."""
        assert person.customer is not None
        msg = {
            "type": "track",
            "event": event,
            "properties": props,
            "userId": person.customer.user_id,
            "context": {"locale": person.locale},
        }
        return self.emit(ts, msg, invalid)


class Visit:
    """One browser session of one device; ``t`` is its event-time clock in ms."""

    def __init__(self, plan: Plan, person: Person, device: Device, t_ms: int, referrer: str) -> None:
        self.plan = plan
        self.rng = plan.rng
        self.person = person
        self.device = device
        self.lang = person.lang
        self.t = t_ms
        self.last_emit_ms: int | None = None
        self.referrer = referrer  # the landing page's referrer, then the previous page's url
        self.page_ctx: dict[str, Any] = {}
        self.page_path = ""
        self.page_title = ""
        self.page_started = t_ms
        self.prev: tuple[str, str, str | None] | None = None  # (path, title, search) before this page
        self.step_views: dict[int, int] = {}  # checkout step -> views in this visit (checkout loops)
        self.coupons_denied = 0

    # -- clock ---------------------------------------------------------------
    def wait(self, lo_ms: int, hi_ms: int) -> None:
        self.t += self.rng.randint(lo_ms, hi_ms)

    def to_next_page(self) -> None:
        """Advance to the next navigation: pages are read 12 s to 2.5 min.

        The 12 s floor keeps ordinary back-navigation from looking like a
        u-turn; only planned u-turns come back sooner.
        """
        dwell = min(12_000 + int(self.rng.expovariate(1 / 30_000)), 150_000)
        self.t = max(self.t + self.rng.randint(1_000, 8_000), self.page_started + dwell)

    # -- messages --------------------------------------------------------------
    def _context(self) -> dict[str, Any]:
        d = self.device
        return {"page": dict(self.page_ctx), "userAgent": d.user_agent, "ip": d.ip, "locale": self.person.locale}

    def _emit(self, msg: dict, invalid: str | None = None) -> bool:
        # Strictly increasing times inside a visit keep its order unambiguous.
        if self.last_emit_ms is not None and self.t <= self.last_emit_ms:
            self.t = self.last_emit_ms + 1
        msg["anonymousId"] = self.device.anonymous_id
        if self.device.user_id is not None:
            msg["userId"] = self.device.user_id
        if not self.plan.emit(self.t, msg, invalid):
            return False
        if self.last_emit_ms is None:
            self.plan.tally.sessions += 1
            self.plan.tally.devices.add(self.device.anonymous_id)
        self.last_emit_ms = self.t
        return True

    def page(self, path: str, title: str, *, search: str | None = None, slow: bool | None = None) -> bool:
        """Navigate to ``path`` now; the previous page becomes the referrer."""
        rng = self.rng
        if slow is None:
            slow = rng.random() < P_SLOW_PAGE
        r = rng.random()
        # Skewed towards fast loads (median about 0.9 s, at most 2.8 s); slow pages 4.2-9.5 s.
        load = 4_200 + int(5_300 * r) if slow else 300 + int(2_500 * r * r)
        query = f"?q={search.replace(' ', '+')}" if search else ""
        url = self.plan.shop.base_url + path + query
        full_title = f"{title} | {self.plan.shop.name}"
        if self.page_path:
            self.prev = (self.page_path, self.page_title, self.page_ctx.get("search"))
        self.page_ctx = {"path": path, "url": url, "referrer": self.referrer, "title": full_title}
        if query:
            self.page_ctx["search"] = query
        self.page_path, self.page_title = path, title
        self.page_started = self.t
        props = {"path": path, "url": url, "referrer": self.referrer, "title": full_title, "load_time_ms": load}
        msg = {"type": "page", "name": title, "properties": props, "context": self._context()}
        self.referrer = url
        ok = self._emit(msg)
        if ok and slow:
            self.plan.tally.friction["slow_page"] += 1
        return ok

    def track(self, event: str, props: dict, invalid: str | None = None) -> bool:
        msg = {"type": "track", "event": event, "properties": props, "context": self._context()}
        return self._emit(msg, invalid)

    def identify(self, customer: Customer) -> bool:
        """The SDK's identify: from now on every message of this device carries the userId."""
        self.device.user_id = customer.user_id
        traits = {"email": customer.email, "consent_marketing": customer.consent, "locale": self.person.locale}
        ok = self._emit({"type": "identify", "traits": traits, "context": self._context()})
        if ok:
            tally = self.plan.tally
            tally.identified_devices.add(self.device.anonymous_id)
            tally.customers[customer.user_id] = customer.consent
        return ok
