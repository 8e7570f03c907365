"""One partition's stream processing: the pure core the events agent drives.

The agent creates one ``PartitionProcessor`` per assigned partition of
``cx.events`` and calls, in offset order::

    proc.restore(stored_states)              # once, on assignment
    proc.process(offset, events, wall_ms)    # per Kafka record
    proc.tick(wall_ms, caught_up)            # when idle
    out = proc.drain()                       # rows, triggers, changed states

Determinism: per event, in offset order, the watermark advances first and
every deadline <= watermark fires; then the event is applied (activity on
a cart at or after its own deadline fires that cart first). Nothing
happens "at batch end", so the same events give the same rows and trigger
ids however they are batched and whenever ``drain()`` runs.

Crash safety: each visitor state records the offset of the last record
whose events it applied. The agent persists states only after ClickHouse
and the triggers topic acknowledged what ``drain()`` returned, so on replay
a visitor's events from a record at or below that offset were applied and
stored already and are skipped; other visitors' events in the same record
are applied normally.

The watermark is not persisted: after a restart it starts empty and is
rebuilt from the replayed and new events, so stored deadlines fire once
events (or idle ticks) carry it past them again; their trigger ids are the
same as before the crash. One difference a replay can show: an event later
than the allowed lateness that, before the crash, arrived after its cart's
deadline had fired may be replayed before the rebuilt watermark reaches that
deadline. Events within the allowed lateness behave the same in both runs.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Iterable

import orjson

from pipeline.detect.abandonment import abandon, abandon_for_customer, cancel_offers
from pipeline.detect.attribution import RECOVERIES_TABLE, recover
from pipeline.detect.carts import apply_activity, close_for_order, forget_stale, resolve_cart
from pipeline.detect.customer import STAGE_PREFIX
from pipeline.detect.customers import note_experience, note_order
from pipeline.detect.deadlines import DeadlineIndex
from pipeline.detect.dedup import event_hash, remember
from pipeline.detect.friction import FRICTION_TABLE, observe
from pipeline.detect.rules import Rules
from pipeline.detect.sessions import assign_session
from pipeline.detect.state import Cart, VisitorState, decode_state, encode_state
from pipeline.detect.support import apply_support
from pipeline.detect.support import note_order as note_support_order
from pipeline.detect.watermark import Watermark
from pipeline.wire.records import TooDeep, json_depth_exceeds, parse_bounded, visitor_key
from pipeline.vocabulary import (
    CARTS_OPEN_OR_CHANGE, CHECKOUT_PROGRESS, FRICTION_INPUTS, LOYALTY_FRICTION, ORDER_COMPLETED, SUPPORT_EVENTS,
    label, order_revenue,
)  # fmt: skip

__all__ = ["EventFailed", "Output", "PartitionProcessor", "LoadState", "watermark_key"]

LoadState = Callable[[str], "bytes | None"]
_CART_RELATED = CARTS_OPEN_OR_CHANGE | CHECKOUT_PROGRESS | {ORDER_COMPLETED}


@dataclass(slots=True)
class Output:
    """What accumulated since the last ``drain()``.

    ``rows``: stored-event dicts for ClickHouse (the event plus ``session_id``,
    ``cart_key`` ('' if none) and ``props``, the parsed properties);
    ``triggers``: trigger dicts; ``states``: changed visitor states, serialized,
    by visitor key; ``facts``: derived rows by ClickHouse table (each table
    registered in ``sinks.rows.FACT_TABLES``), e.g. friction signals;
    ``messages``: what identified visitors tell the customer stage, in the
    order sent (``detect.customer``; each carries its merge key).
    """

    rows: list[dict] = field(default_factory=list)
    triggers: list[dict] = field(default_factory=list)
    states: dict[str, bytes] = field(default_factory=dict)
    facts: dict[str, list[dict]] = field(default_factory=dict)
    messages: list[dict] = field(default_factory=list)  # for the customer stage (``detect.customer``)

    def fact(self, table: str, row: dict) -> None:
        self.facts.setdefault(table, []).append(row)


class EventFailed(Exception):
    """``process`` raised while applying the event at ``index`` of the record (None: before any event).

    The processor is then half-way through the record and must be rebuilt
    (``pipeline.detect.isolation`` does).
    """

    def __init__(self, index: int | None, error: BaseException) -> None:
        super().__init__(f"event {index}: {type(error).__name__}: {error}")
        self.index = index
        self.error = error


def watermark_key(source: int) -> str:
    """The table key of a partition's stored watermark and message position."""
    return f"{STAGE_PREFIX}w\x1f{source}"


def _json_object(value: object) -> dict:
    # The collector validated events; a malformed field still must not stop
    # the partition (the raw text stays in the stored row). Nesting past
    # MAX_JSON_DEPTH raises TooDeep: the event becomes a dead letter.
    if isinstance(value, dict):
        if json_depth_exceeds(value):
            raise TooDeep()
        return value
    if not value:
        return {}
    try:
        parsed = parse_bounded(value)  # type: ignore[arg-type]
    except orjson.JSONDecodeError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


class PartitionProcessor:
    """Sessions, de-duplication, carts, abandonment, offers, friction, support, customer value and attribution for one partition."""

    def __init__(self, rules: Rules, load_state: LoadState, *, cache_size: int = 10_000, partition: int = -1) -> None:
        """``load_state(key)`` returns a visitor's stored state bytes or None.

        ``partition`` is the Kafka partition this processor reads (-1: one
        partition only, or not known). A visitor's state remembers the
        partition and offset of the last record applied to it; a record is
        skipped as already applied only when it comes from that same
        partition at an offset not past it. ``load_state`` may return a
        state last written from another partition (the worker's table holds
        every partition's visitors): a visitor whose events move partitions,
        when partitions are added to the topic or when another producer
        chooses them, then has its events applied, not dropped.

        ``cache_size`` decoded states are kept between drains to avoid
        decoding hot visitors again; this relies on the agent storing every
        drained state before it next calls ``process`` or ``tick``.
        """
        self.rules = rules
        self.partition = partition
        self._load_state = load_state
        self._cache_size = cache_size
        self._cache: OrderedDict[str, VisitorState] = OrderedDict()
        self._dirty: dict[str, VisitorState] = {}
        self._watermark = Watermark(rules.allowed_lateness_ms, rules.idle_partition_ms)
        self._index = DeadlineIndex()
        self._out = Output()
        # Where the next message to the customer stage goes in this partition's order: (offset, index).
        self._pos = [-1, 0]
        self._floor: int | None = None  # the watermark before the current record or tick
        # The watermark and position are stored with the states (``drain``) and resumed from there, so
        # that after a restart this partition's messages keep the keys they had (``detect.merge``).
        stored = load_state(watermark_key(self.source))
        if stored is not None:
            wm, offset, index = orjson.loads(stored)
            self._watermark.value, self._pos = wm, [offset, index]
        self._stored_position: tuple | None = None if stored is None else (self._watermark.value, *self._pos)

    @property
    def source(self) -> int:
        """This partition's number among the customer stage's sources."""
        return max(self.partition, 0)

    def announcement(self) -> tuple[int, int, int, int] | None:
        """The promise the customer stage may rely on: every later message's key is at or above this.

        None before the first event (no watermark yet). ``watermark_ms`` never
        goes back and positions only grow, so the promise holds until the
        processor is rebuilt from the stored states (``__init__`` resumes the
        stored watermark and position).
        """
        wm = self._watermark.value
        if wm is None:
            return None
        return (wm, self.source, self._pos[0], self._pos[1])

    @property
    def watermark_ms(self) -> int | None:
        """The partition's event-time watermark; None before the first event."""
        return self._watermark.value

    def restore(self, items: Iterable[tuple[str, bytes]]) -> None:
        """Rebuild the deadline index from stored states; runs on partition assignment.

        A state that cannot be decoded raises: it would mean the table holds
        bytes this code did not write, and guessing would lose carts.
        """
        abandon_after_ms = self.rules.abandon_after_ms
        for key, data in items:
            if key.startswith(STAGE_PREFIX):
                continue  # the customer stage's and the watermark's entries
            self._index.schedule(key, decode_state(data).next_deadline(abandon_after_ms))

    def process(self, offset: int, events: list[dict], wall_ms: int) -> None:
        """Apply one Kafka record's events, in order; call in offset order.

        An exception here is a bug, or input no validation foresaw, and
        leaves this processor half-way through a record: it is raised as
        ``EventFailed`` naming the event, and the processor must be discarded
        (``pipeline.detect.isolation`` rebuilds one from the stored states).
        """
        applying: dict[str, bool] = {}  # per visitor: apply this record, or skip it as replayed
        if offset > self._pos[0]:
            self._pos = [offset, 0]
        self._floor = self._watermark.value  # what this partition may have promised before this record
        # Bound methods fetched once: this loop runs for every event.
        observe, index, get = self._watermark.observe, self._index, self._get
        event = None
        try:  # free unless something raises
            for event in events:
                t_ms = event["event_time_ms"]
                watermark_ms = observe(t_ms, wall_ms)
                if index.due(watermark_ms):
                    self._fire_due(watermark_ms, wall_ms)
                anonymous_id = event.get("anonymous_id")
                key = visitor_key(event["tenant"], anonymous_id, event.get("user_id"))
                state = get(key)
                if state is None:
                    state = VisitorState(tenant=event["tenant"], anonymous_id=anonymous_id or None)
                    self._remember(key, state)
                apply = applying.get(key)
                if apply is None:
                    apply = applying[key] = (
                        state.last_offset < offset or state.last_partition not in (-1, self.partition)
                    )
                if not apply:
                    continue
                h = event_hash(event["event_id"])
                if h in state.recent_ids:
                    continue  # a duplicate: no row, no state change
                self._apply(key, state, offset, event, h, wall_ms)
        except Exception as exc:
            failed = next((i for i, e in enumerate(events) if e is event), None)
            raise EventFailed(failed, exc) from exc

    def tick(self, wall_ms: int, caught_up: bool) -> None:
        """Idle call: a caught-up partition silent for ``idle_partition_ms`` follows the wall clock.

        With ``caught_up`` False (the consumer is behind, e.g. replaying)
        nothing happens: event time alone must decide then.
        """
        self._floor = self._watermark.value
        if caught_up and self._watermark.follow_wall_clock(wall_ms):
            assert self._watermark.value is not None
            self._fire_due(self._watermark.value, wall_ms)

    @property
    def pending(self) -> Output:
        """What accumulated since the last drain (``drain`` returns this object)."""
        return self._out

    @property
    def has_pending(self) -> bool:
        """True when something (rows, triggers, facts or a changed state) waits for ``drain``."""
        out = self._out
        return bool(self._dirty or out.rows or out.triggers or out.facts or out.messages)

    def watermark_copy(self) -> Watermark:
        """A copy of the partition's watermark (``pipeline.detect.isolation`` rebuilds with it)."""
        return copy.copy(self._watermark)

    def resume_watermark(self, watermark: Watermark) -> None:
        """Continue from a watermark copied earlier (a rebuilt processor; before any ``process``)."""
        self._watermark = copy.copy(watermark)

    def drain(self) -> Output:
        """Return and clear what accumulated since the last drain."""
        out = self._out
        out.states = {key: encode_state(state) for key, state in self._dirty.items()}
        position = (self._watermark.value, *self._pos)
        if position[0] is not None and position != self._stored_position:
            out.states[watermark_key(self.source)] = orjson.dumps(list(position))
            self._stored_position = position
        self._out, self._dirty = Output(), {}
        return out

    # -- internals ------------------------------------------------------------

    def _get(self, key: str) -> VisitorState | None:
        state = self._dirty.get(key)
        if state is not None:
            return state
        state = self._cache.get(key)
        if state is not None:
            self._cache.move_to_end(key)
            return state
        data = self._load_state(key)
        if data is None:
            return None
        state = decode_state(data)
        self._remember(key, state)
        return state

    def _remember(self, key: str, state: VisitorState) -> None:
        self._cache[key] = state
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)  # a dirty state stays reachable in _dirty

    def _changed(self, key: str, state: VisitorState) -> None:
        self._dirty[key] = state
        if state.carts:  # without carts there is no deadline to schedule
            self._index.schedule(key, state.next_deadline(self.rules.abandon_after_ms))

    def _send(self, kind: str, state: VisitorState, t_ms: int, **fields: object) -> None:
        """Tell the customer stage something about the visitor's customer (identified visitors only).

        The message's merge key is its event time, raised to the watermark
        this partition had before the current record or tick: no promise
        made before (``announcement``) can be above that, so the key keeps
        every promise, and the customer stage sees the messages of all
        devices in event time except for late ones.
        """
        assert state.user_id, "messages are about identified visitors"
        floor = self._floor
        pos = self._pos
        self._out.messages.append({
            "m": kind, "t": state.tenant, "c": state.user_id, "ts": t_ms, "vis": state.visitor_id,
            "k": [t_ms if floor is None or t_ms > floor else floor, self.source, pos[0], pos[1]], **fields,
        })  # fmt: skip
        pos[1] += 1

    def _fire_due(self, watermark_ms: int, wall_ms: int) -> None:
        """Fire every scheduled deadline <= the watermark, earliest first."""
        while (key := self._index.pop_due(watermark_ms)) is not None:
            state = self._get(key)
            if state is None:
                continue
            if self._abandon_due(state, watermark_ms, wall_ms):
                self._changed(key, state)
            else:  # a stale entry: the deadline moved later or went away
                self._index.schedule(key, state.next_deadline(self.rules.abandon_after_ms))

    def _abandon_due(self, state: VisitorState, until_ms: int, wall_ms: int) -> bool:
        """Abandon the visitor's carts whose deadline is <= ``until_ms``; True if any."""
        abandon_after_ms = self.rules.abandon_after_ms
        due = [(d, c) for c in state.carts if (d := c.deadline(abandon_after_ms)) is not None and d <= until_ms]
        for _, cart in sorted(due, key=lambda pair: pair[0]):
            self._abandon(state, cart, wall_ms)
        return bool(due)

    def _abandon(self, state: VisitorState, cart: Cart, wall_ms: int) -> None:
        if state.user_id:  # a customer: the customer stage decides, knowing every device
            draft, since_ms = abandon_for_customer(state, cart, self.rules)
            self._send("candidate", state, draft["event_time_ms"], trig=draft, since=since_ms)
            return
        self._out.triggers.append(abandon(state, cart, self.rules, wall_ms))

    def _order(self, state: VisitorState, props: dict, t_ms: int, session_id: str, wall_ms: int) -> None:
        """Any ``Order Completed`` of the visitor: cancel live offers, count the order, attribute it.

        The customer stage makes and cancels identified customers' offers;
        the device cancels those its own carts still record (states written
        before the customer stage decided them).
        """
        self._out.triggers.extend(cancel_offers(state, t_ms, session_id, self.rules, wall_ms))
        order_id = props.get("order_id")
        order_id = str(order_id) if isinstance(order_id, (str, int)) and not isinstance(order_id, bool) else ""
        if not order_id:
            return  # the collector requires order_id; without one the order cannot be counted once
        revenue = order_revenue(props)
        if not note_order(state.value, order_id, revenue, t_ms):
            return  # the same order again under a new message id
        for recovered in recover(state, order_id=order_id, revenue=revenue, order_ms=t_ms, rules=self.rules):
            self._out.fact(RECOVERIES_TABLE, recovered)
        if state.user_id:  # the customer stage counts it for the customer, cancels offers, closes carts
            self._send("order", state, t_ms, oid=order_id, rev=revenue, cart=label(props.get("cart_id")),
                       checkout=label(props.get("checkout_id")), session=session_id)

    def _apply(self, key: str, state: VisitorState, offset: int, event: dict, h: int, wall_ms: int) -> None:
        rules = self.rules
        t_ms = event["event_time_ms"]
        state.last_offset = offset
        state.last_partition = self.partition
        remember(state.recent_ids, h, rules.dedup_window)
        props = _json_object(event.get("properties"))
        session_id = assign_session(state, t_ms, event.get("session_hint"), rules.session_gap_ms)
        user_id = event.get("user_id")
        call = event.get("type")
        if user_id:
            linked, first = user_id != state.user_id, state.user_id is None
            state.user_id = user_id
            if first:  # the pains this device lived through before are the customer's too
                for pain, times in (("friction", state.value.friction_ms), ("support", state.value.support_ms)):
                    for pain_ms in times:
                        self._send("experience", state, pain_ms, x=pain, e=f"{state.visitor_id}:{pain}:{pain_ms}",
                                   h=True)
            if (linked or call in ("identify", "alias")) and state.anonymous_id:
                self._send("link", state, t_ms, v=state.anonymous_id)
        if call == "identify":
            consent = _json_object(event.get("traits")).get("consent_marketing")
            if isinstance(consent, bool):
                state.consent = consent
                if state.user_id:
                    self._send("consent", state, t_ms, val=consent)
        cart_key = ""
        name = event.get("event") if call == "track" else None
        if name in _CART_RELATED:
            cart = resolve_cart(state, name, props, rules)
            if cart is not None:
                cart_key = state.cart_key(cart)
                # Activity on this very cart at or after its pending deadline
                # proves the cart was left that long: it is abandoned first,
                # then the event applies (an order then recovers the cart; it
                # does not undo the abandonment). Any other event of the
                # visitor proves nothing: an order for the cart sent before
                # the deadline may still arrive within the allowed lateness,
                # so only the watermark fires the other carts.
                deadline = cart.deadline(rules.abandon_after_ms)
                if deadline is not None and deadline <= t_ms:
                    self._abandon(state, cart, wall_ms)
                if name == ORDER_COMPLETED:
                    close_for_order(state, cart, t_ms)
                else:
                    apply_activity(state, cart, name, props, t_ms, session_id, rules)
        if name in FRICTION_INPUTS or call == "page":
            facts, assist = observe(state, event, props, session_id, rules, wall_ms)
            for fact in facts:
                self._out.fact(FRICTION_TABLE, fact)
            if assist is not None:
                self._out.triggers.append(assist)
        if name == ORDER_COMPLETED:
            note_support_order(state, t_ms)
            self._order(state, props, t_ms, session_id, wall_ms)
        else:
            if name in SUPPORT_EVENTS:
                support = apply_support(state, event, name, props, rules, wall_ms)
                for table, fact in support.facts:
                    self._out.fact(table, fact)
                if support.trigger is not None:
                    self._out.triggers.append(support.trigger)
            if name is not None and note_experience(state.value, name, props, t_ms) and state.user_id:
                pain = "friction" if name in LOYALTY_FRICTION else "support"
                self._send("experience", state, t_ms, x=pain, e=event["event_id"])
        if state.carts:  # most visitors have none: skip the call
            forget_stale(state, max(t_ms, state.max_event_ms or t_ms), rules)
        self._changed(key, state)
        self._out.rows.append({**event, "session_id": session_id, "cart_key": cart_key, "props": props})
