"""The customer stage: promises made per person, whatever device or backend spoke; pure.

The device stage (``processor.PartitionProcessor``) keeps one state per
visitor key and does the per-device work: sessions, carts, friction,
tickets. Once a visitor state knows its customer id (an ``identify``, an
``alias``, any event with a user id, or a server-side event that has only
the user id), the device stage sends what a per-person promise needs to
this stage, keyed by tenant and customer id:

``link``        the visitor (anonymous id) belongs to the customer
``consent``     ``consent_marketing`` from an identify, with its event time
``order``       an ``Order Completed`` (order id, revenue, the cart or checkout it names)
``experience``  a friction or support pain (for the loyalty score); on the
                first identification, the ones the device lived through before
``candidate``   a ``cart_abandoned`` trigger whose action is still to decide

Messages from all device partitions are put in one order by
``merge.StreamMerge`` before they are applied, so the decisions below read
event time, not which worker ran faster. Applying a released message:

- ``consent``: the latest consent in event time wins, on every device;
- ``order``: counted once per order id for the customer (a browser and a
  backend sending the same order count one); every live offer or assist of
  the customer is cancelled (``offer_cancelled``), from whichever device it
  came;
- ``candidate``: if an order of the customer names the cart (``cart_id``)
  or its checkout, or names no cart, and falls between the cart's last
  activity and its deadline, the cart was bought: no trigger, and the
  conversion is reported (``conversions``). Otherwise the offer decision
  (``offers.decide_offer``) runs on the customer's consent, offer cap,
  orders and loyalty, and the trigger is emitted with its action;
- ``experience`` and ``link`` update the customer's memory.

Re-sent messages (a device partition replayed after a crash) change
nothing: candidates are remembered by trigger id, orders by order id,
pains by the event id that caused them, consent by its event time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import orjson

from pipeline.detect.abandonment import cancellation
from pipeline.detect.attribution import RECOVERIES_TABLE
from pipeline.detect.customers import SCORES_TABLE, loyalty_score, note_order, score_fact
from pipeline.detect.dedup import event_hash, pack_hashes, remember, unpack_hashes
from pipeline.detect.merge import Held, StreamMerge
from pipeline.detect.offers import decide_offer
from pipeline.detect.rules import Rules
from pipeline.detect.state import CustomerValue

__all__ = [
    "bad_message",
    "CustomerOutput",
    "CustomerProcessor",
    "CustomerState",
    "customer_key",
    "decode_customer",
    "each_message",
    "encode_customer",
]

VISITORS_KEPT = 20  # linked anonymous ids remembered per customer, most recent last
ORDERS_KEPT = 8  # recent orders remembered for closing carts
DECIDED_KEPT = 32  # recent candidate trigger ids
PAINS_KEPT = 32  # recent event ids of friction and support pains
CACHED_CUSTOMERS = 10_000  # decoded customer states kept between drains
LoadCustomer = Callable[[str], "bytes | None"]


# Keys of the customer stage in the worker's table start with this byte, which no visitor key has
# (a visitor key starts with its tenant's name).
STAGE_PREFIX = "\x1e"
CUSTOMER_PREFIX = STAGE_PREFIX + "c\x1f"  # then the tenant and the customer id


def customer_key(tenant: str, customer_id: str) -> str:
    """The customer stage's key (also the Kafka key on ``cx.customers``): one customer, one partition."""
    return f"{CUSTOMER_PREFIX}{tenant}\x1f{customer_id}"


def merge_key(partition: int) -> str:
    """The table key of a customer partition's merge (held messages and the sources' promises)."""
    return f"{STAGE_PREFIX}m\x1f{partition}"


def encode_merge(merge: StreamMerge) -> bytes:
    return orjson.dumps({
        "a": merge.announced, "h": [[list(h.key), h.message] for h in merge.held()], "i": sorted(merge.idle),
    })  # fmt: skip


def restore_merge(merge: StreamMerge, data: bytes) -> None:
    d = orjson.loads(data)
    announced = [tuple(a) if a is not None else None for a in d["a"]]
    merge.restore(announced, [Held(tuple(k), m) for k, m in d["h"]], set(d["i"]))  # type: ignore[arg-type]


@dataclass(slots=True)
class CustomerState:
    """What the customer stage remembers of one customer."""

    tenant: str
    customer_id: str
    visitors: list[str] = field(default_factory=list)
    consent: bool | None = None
    consent_ms: int | None = None
    last_offer_ms: int | None = None
    # Live offers and assists: the trigger fields an ``offer_cancelled`` repeats, with "expires_ms".
    offers: list[dict] = field(default_factory=list)
    # Recent orders as [event time, cart id or "", checkout id or ""].
    orders: list[list] = field(default_factory=list)
    decided: list[int] = field(default_factory=list)  # hashes of candidate trigger ids applied
    pains: list[int] = field(default_factory=list)  # hashes of event ids of pains applied
    value: CustomerValue = field(default_factory=CustomerValue)
    # The latest cart_abandoned decision a later order may recover (``detect.attribution``):
    # [trigger id, event time, holdout, experiment, action, discount pct, anonymous id].
    attribution: list | None = None


@dataclass(slots=True)
class CustomerOutput:
    triggers: list[dict] = field(default_factory=list)
    conversions: list[dict] = field(default_factory=list)  # carts bought elsewhere before their deadline
    states: dict[str, bytes] = field(default_factory=dict)
    facts: dict[str, list[dict]] = field(default_factory=dict)  # by ClickHouse table, as ``processor.Output``

    def fact(self, table: str, row: dict) -> None:
        self.facts.setdefault(table, []).append(row)


def encode_customer(s: CustomerState) -> bytes:
    v = s.value
    out: dict = {"t": s.tenant, "c": s.customer_id}
    for key, value in (("vi", s.visitors), ("of", s.offers), ("or", s.orders)):
        if value:
            out[key] = value
    for key, value in (("cn", s.consent), ("cm", s.consent_ms), ("lo", s.last_offer_ms)):
        if value is not None:
            out[key] = value
    if s.decided:
        out["d"] = pack_hashes(s.decided)
    if s.pains:
        out["p"] = pack_hashes(s.pains)
    if s.attribution is not None:
        out["at"] = s.attribution
    if not v.is_empty():
        out["v"] = [v.orders, v.revenue, v.first_order_ms, v.last_order_ms, pack_hashes(v.order_ids),
                    v.friction_ms, v.support_ms]  # fmt: skip
    return orjson.dumps(out)


def decode_customer(data: bytes) -> CustomerState:
    d = orjson.loads(data)
    value = CustomerValue()
    if "v" in d:
        orders, revenue, first_ms, last_ms, order_ids, friction_ms, support_ms = d["v"]
        value = CustomerValue(orders, revenue, first_ms, last_ms, unpack_hashes(order_ids), friction_ms, support_ms)
    return CustomerState(
        tenant=d["t"],
        customer_id=d["c"],
        visitors=d.get("vi", []),
        consent=d.get("cn"),
        consent_ms=d.get("cm"),
        last_offer_ms=d.get("lo"),
        offers=d.get("of", []),
        orders=d.get("or", []),
        decided=unpack_hashes(d["d"]) if "d" in d else [],
        pains=unpack_hashes(d["p"]) if "p" in d else [],
        value=value,
        attribution=d.get("at"),
    )


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_key(v: object, sources: int) -> bool:
    return isinstance(v, list) and len(v) == 4 and all(_is_int(x) for x in v) and 0 <= v[1] < sources


_FIELDS: dict[str, dict[str, tuple[type, ...]]] = {
    "link": {"v": (str,)},
    "consent": {"val": (bool,)},
    "order": {"oid": (str,), "rev": (int, float)},
    "experience": {"x": (str,), "e": (str,)},
    "candidate": {"trig": (dict,), "since": (int,)},
}
_DRAFT = {"trigger_id": str, "kind": str, "event_time_ms": int, "cart_key": str, "cart_value": (int, float),
          "checkouts": list}  # fmt: skip


def each_message(m: dict) -> list[dict]:
    """The messages a valid record carries, in order: several device partitions' promises
    (``watermarks``) as one ``watermark`` each, with its receive time ``r`` when given."""
    if m["m"] != "watermarks":
        return [m]
    received = m.get("rs") or [None] * len(m["ks"])
    return [{"m": "watermark", "k": k} if r is None else {"m": "watermark", "k": k, "r": r} for k, r in zip(m["ks"], received)]


def bad_message(m: object, sources: int) -> str | None:
    """What is wrong with a ``cx.customers`` record's message, or None (the worker dead-letters the rest)."""
    if not isinstance(m, dict):
        return "not a JSON object"
    kind = m.get("m")
    if kind == "watermark":
        return None if _is_key(m.get("k"), sources) else "a watermark needs k = [ms, source, offset, index]"
    if kind == "watermarks":
        keys, received = m.get("ks"), m.get("rs")
        if not isinstance(keys, list) or not 1 <= len(keys) <= sources or not all(_is_key(k, sources) for k in keys):
            return f"watermarks needs ks = 1 to {sources} keys [ms, source, offset, index]"
        if received is not None and (
            not isinstance(received, list) or len(received) != len(keys)
            or not all(r is None or _is_int(r) for r in received)
        ):  # fmt: skip
            return "watermarks: rs must give one receive time (or null) per key"
        return None
    if kind == "idle":
        src = m.get("src")
        return None if _is_int(src) and 0 <= src < sources else f"idle needs src within 0..{sources - 1}"
    if kind not in _FIELDS:
        return f"unknown kind {str(kind)[:40]!r}"
    for name, types in (("t", (str,)), ("c", (str,)), ("ts", (int,)), ("vis", (str,)), *_FIELDS[kind].items()):
        value = m.get(name)
        if not isinstance(value, types) or (types == (int,) and isinstance(value, bool)):
            return f"{kind}: field {name} missing or of the wrong type"
    if not _is_key(m.get("k"), sources):
        return f"{kind}: k must be [ms, source, offset, index]"
    if kind == "experience" and m["x"] not in ("friction", "support"):
        return "experience: x must be friction or support"
    if kind == "candidate":
        for name, types in _DRAFT.items():
            value = m["trig"].get(name)
            if not isinstance(value, types) or isinstance(value, bool):
                return f"candidate: trig.{name} missing or of the wrong type"
    return None


class CustomerProcessor:
    """One partition of the customer stage: the merge, then the per-customer rules."""

    def __init__(self, rules: Rules, load_state: LoadCustomer, *, sources: int, partition: int = 0) -> None:
        """``sources``: the partitions of ``cx.events``; ``partition``: the one of ``cx.customers`` this reads.

        The merge resumes from what ``load_state`` holds for the partition.
        """
        self.rules = rules
        self.partition = partition
        self.merge = StreamMerge(sources)
        stored = load_state(merge_key(partition))
        if stored is not None:
            restore_merge(self.merge, stored)
        self._load_state = load_state
        self._states: dict[str, CustomerState] = {}
        self._dirty: dict[str, None] = {}  # changed customers, in the order they changed
        self._merge_changed = False
        self._out = CustomerOutput()

    @property
    def pending(self) -> CustomerOutput:
        """What accumulated since the last drain."""
        return self._out

    def add(self, message: dict, wall_ms: int) -> None:
        """One message from the device stage: a promise (``watermark``), an ``idle`` source, or one to hold."""
        kind = message["m"]
        if kind == "watermark":
            released = self.merge.announce(tuple(message["k"]))  # type: ignore[arg-type]
        elif kind == "idle":
            released = self.merge.set_idle(message["src"])
        else:
            released = self.merge.add(tuple(message["k"]), message)  # type: ignore[arg-type]
        self._merge_changed = True
        self._apply_all(released, wall_ms)

    def drain(self) -> CustomerOutput:
        out = self._out
        out.states = {key: encode_customer(self._states[key]) for key in self._dirty}
        if self._merge_changed:
            out.states[merge_key(self.partition)] = encode_merge(self.merge)
        self._out, self._dirty, self._merge_changed = CustomerOutput(), {}, False
        if len(self._states) > CACHED_CUSTOMERS:
            self._states.clear()  # all stored by now: they are read back from the table when needed
        return out

    # -- internals ------------------------------------------------------------

    def _apply_all(self, released: list[Held], wall_ms: int) -> None:
        for held in released:
            message = held.message
            key = customer_key(message["t"], message["c"])
            state = self._states.get(key)
            if state is None:
                data = self._load_state(key)
                state = decode_customer(data) if data is not None else CustomerState(message["t"], message["c"])
                self._states[key] = state
            if _APPLY[message["m"]](self, state, message, wall_ms):
                self._dirty[key] = None

    def _score(self, state: CustomerState, m: dict, now_ms: int) -> None:
        """A ``cx.customer_scores`` row: the customer's score at ``now_ms``, over every device."""
        self._out.fact(SCORES_TABLE, score_fact(state.tenant, state.customer_id, m["vis"], state.value, now_ms, self.rules))

    def _link(self, state: CustomerState, m: dict, wall_ms: int) -> bool:
        visitor = m["v"]
        self._score(state, m, m["ts"])
        if state.visitors and state.visitors[-1] == visitor:
            return False
        if visitor in state.visitors:
            state.visitors.remove(visitor)
        state.visitors.append(visitor)
        del state.visitors[:-VISITORS_KEPT]
        return True

    def _consent(self, state: CustomerState, m: dict, wall_ms: int) -> bool:
        if state.consent_ms is not None and m["ts"] < state.consent_ms:
            return False  # an older answer than the one kept
        state.consent, state.consent_ms = m["val"], m["ts"]
        return True

    def _experience(self, state: CustomerState, m: dict, wall_ms: int) -> bool:
        h = event_hash(m["e"])
        if h in state.pains:
            return False
        remember(state.pains, h, PAINS_KEPT)
        times = state.value.friction_ms if m["x"] == "friction" else state.value.support_ms
        times.append(m["ts"])
        times.sort()
        del times[:-PAINS_KEPT]
        if not m.get("h"):  # a pain from before the visitor was identified is history, not news
            self._score(state, m, m["ts"])
        return True

    def _order(self, state: CustomerState, m: dict, wall_ms: int) -> bool:
        t_ms = m["ts"]
        if not note_order(state.value, m["oid"], m["rev"], t_ms):
            return False  # the same order again (a resend, or the browser and the backend both sent it)
        state.orders.append([t_ms, m.get("cart") or "", m.get("checkout") or ""])
        state.orders.sort(key=lambda o: o[0])
        del state.orders[:-ORDERS_KEPT]
        self._recover(state, m)
        self._score(state, m, t_ms)
        for offer in state.offers:
            if t_ms >= offer["expires_ms"]:
                continue
            base = {k: v for k, v in offer.items() if k not in ("trigger_id", "expires_ms")}
            self._out.triggers.append(cancellation(base, offer["trigger_id"], t_ms, m.get("session"), wall_ms))
        state.offers.clear()  # each live offer is spent by the order; an expired one needs no cancel
        return True

    def _recover(self, state: CustomerState, m: dict) -> None:
        """A new order recovers the pending cart_abandoned decision (rules of ``detect.attribution``)."""
        pending, t_ms = state.attribution, m["ts"]
        if pending is None or t_ms < pending[1]:
            return
        state.attribution = None
        trigger_id, trigger_ms, holdout, experiment, action, discount_pct, anonymous_id = pending
        if t_ms - trigger_ms >= self.rules.attribution_window_ms:
            return
        self._out.fact(RECOVERIES_TABLE, {
            "tenant": state.tenant, "trigger_id": trigger_id, "kind": "cart_abandoned",
            "trigger_time_ms": trigger_ms, "order_time_ms": t_ms, "customer_id": state.customer_id,
            "anonymous_id": anonymous_id, "order_id": m["oid"], "revenue": m["rev"], "holdout": holdout,
            "experiment": experiment, "action": action, "discount_pct": discount_pct,
        })  # fmt: skip

    def _bought_before(self, state: CustomerState, draft: dict, since_ms: int, deadline_ms: int) -> list | None:
        """The customer's order that bought this cart before its deadline, if any."""
        for order in state.orders:
            t_ms, cart_id, checkout_id = order
            if not since_ms <= t_ms <= deadline_ms:
                continue
            names_nothing = not cart_id and not checkout_id
            if names_nothing or (cart_id and cart_id == draft.get("cart_id")) or checkout_id in draft["checkouts"]:
                return order
        return None

    def _candidate(self, state: CustomerState, m: dict, wall_ms: int) -> bool:
        draft = m["trig"]
        h = event_hash(draft["trigger_id"])
        if h in state.decided:
            return False
        remember(state.decided, h, DECIDED_KEPT)
        since_ms, deadline_ms = m["since"], draft["event_time_ms"]
        bought = self._bought_before(state, draft, since_ms, deadline_ms)
        if bought is not None:
            self._out.conversions.append({
                "tenant": state.tenant, "customer_id": state.customer_id, "cart_key": draft["cart_key"],
                "ordered_at_ms": bought[0], "deadline_ms": deadline_ms,
            })  # fmt: skip
            return True
        rules = self.rules
        decision = decide_offer(
            rules,
            kind=draft["kind"],
            tenant=state.tenant,
            trigger_id=draft["trigger_id"],
            customer_id=state.customer_id,
            anonymous_id=draft.get("anonymous_id"),
            consent=state.consent,
            last_offer_ms=state.last_offer_ms,
            last_order_ms=state.value.last_order_ms,
            since_ms=since_ms,
            loyalty=loyalty_score(state.value, deadline_ms, rules),
            cart_value=draft["cart_value"],
            event_time_ms=deadline_ms,
        )
        trigger = {k: v for k, v in draft.items() if k != "checkouts"}
        trigger.update(
            customer_id=state.customer_id,
            emitted_at_ms=wall_ms,
            action=decision.action,
            offer=decision.offer,
            holdout=decision.holdout,
            experiment=decision.experiment,
        )
        self._out.triggers.append(trigger)
        self._score(state, m, deadline_ms)  # the score the decision used
        offer = decision.offer or {}
        state.attribution = [trigger["trigger_id"], deadline_ms, decision.holdout, decision.experiment,
                             decision.action, int(offer.get("discount_pct") or 0), draft.get("anonymous_id") or ""]
        if decision.contacts:
            state.last_offer_ms = deadline_ms
            state.offers = [o for o in state.offers if o["expires_ms"] > deadline_ms]
            keep = ("tenant", "customer_id", "anonymous_id", "cart_id", "cart_key", "cart_value", "currency",
                    "items", "experiment")  # fmt: skip
            state.offers.append({
                **{k: trigger[k] for k in keep}, "trigger_id": trigger["trigger_id"],
                "expires_ms": deadline_ms + rules.offer_valid_ms,
            })  # fmt: skip
        return True


_APPLY = {
    "link": CustomerProcessor._link,
    "consent": CustomerProcessor._consent,
    "experience": CustomerProcessor._experience,
    "order": CustomerProcessor._order,
    "candidate": CustomerProcessor._candidate,
}
