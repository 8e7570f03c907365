"""Worker dicts to ClickHouse row tuples, in the column order of ``sinks/ddl``.

Called by the worker for every stored event, trigger and dead letter, so
these functions are plain and allocation-light. Values follow the portable
schema: absent strings are ``''``, absent numbers ``0``, ``day`` is the UTC
date of the record's time, ``DateTime`` cells are epoch seconds.

Privacy (docs/privacy.md): free text never reaches ClickHouse. Keys named in
``PRIVATE_KEYS`` (support message ``text``, survey ``comment``, ``email``,
``phone``, ``ip``; any depth, any case) are dropped from the JSON stored in
``events.properties`` and ``deadletters.payload``. A dead-letter payload also
loses ``topic`` (``DEADLETTER_PRIVATE_KEYS``): a stored event's ticket topic
is a validated slug, but a rejected event's may be the free text that got
it rejected. What arrives here is already scrubbed: the collector passes
every dead letter's payload through its scrubber (``Scrubber.payload``:
personal keys hashed in JSON; in text that is not JSON, emails, phones and
``"personal-key": "value"`` pairs hashed), and the worker's own dead letters
carry events the collector wrote. A payload that is not JSON (or nests past
``MAX_JSON_DEPTH``) is not stored, only its size: this guard cannot parse
it. The dead-letter topic keeps the collector's scrubbed text, not the
original.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from functools import lru_cache
from typing import Any, Callable

import orjson

from pipeline.detect.ids import fingerprint, version
from pipeline.wire.records import MAX_JSON_DEPTH, TooDeep, parse_bounded
from pipeline.vocabulary import ORDER_COMPLETED, label, order_revenue

__all__ = [
    "DEADLETTER_COLUMNS",
    "DELIVERY_COLUMNS",
    "delivery_row",
    "DEADLETTER_PRIVATE_KEYS",
    "EVENT_COLUMNS",
    "FACT_TABLES",
    "FRICTION_COLUMNS",
    "PRIVATE_KEYS",
    "TRIGGER_COLUMNS",
    "day_of",
    "deadletter_row",
    "event_row",
    "friction_row",
    "scrub",
    "SUPPORT_MESSAGE_COLUMNS",
    "SUPPORT_TICKET_COLUMNS",
    "SURVEY_COLUMNS",
    "support_message_row",
    "support_ticket_row",
    "survey_row",
    "trigger_row",
]

PRIVATE_KEYS = frozenset({"text", "comment", "email", "phone", "ip"})
DEADLETTER_PRIVATE_KEYS = PRIVATE_KEYS | {"topic"}

EVENT_COLUMNS = (
    "tenant", "event_id", "day", "event_time", "event_time_ms", "received_at", "type", "event",
    "anonymous_id", "user_id", "session_id", "cart_key", "order_id", "checkout_id", "product_id",
    "revenue", "currency", "page_path", "properties", "email_hash", "ip_hash", "context", "payload_hash", "ver",
)  # fmt: skip
TRIGGER_COLUMNS = (
    "tenant", "trigger_id", "kind", "day", "event_time", "event_time_ms", "emitted_at",
    "customer_id", "anonymous_id", "session_id", "cart_key", "cart_id", "cart_value", "currency",
    "action", "holdout", "experiment", "reasons", "friction_score", "offer_code", "discount_pct",
    "offer_expires_at", "channel", "ref_trigger_id", "items",
)  # fmt: skip
DEADLETTER_COLUMNS = (
    "tenant", "dl_id", "day", "received_at", "reason", "detail", "source", "payload", "payload_bytes",
)  # fmt: skip

# Derived facts the detectors emit besides events and triggers, by table:
# (columns, dict -> row tuple). Each feature registers its table here and
# creates it in its own migration; the worker routes ``Output.facts`` by name.
FACT_TABLES: dict[str, tuple[tuple[str, ...], Callable[[dict], tuple]]] = {}

_EPOCH = date(1970, 1, 1)
_DAY_MS = 86_400_000


def day_of(ms: int) -> date:
    """The UTC date of an epoch-millisecond instant (no time zone database involved)."""
    return _date_of_day(ms // _DAY_MS)


@lru_cache(maxsize=64)
def _date_of_day(days: int) -> date:
    # A stream spans few days: one date object per day, not one per row.
    return _EPOCH + timedelta(days=days)


def scrub(value: Any, keys: frozenset[str] = PRIVATE_KEYS, _depth: int = 0) -> Any:
    """A copy of a parsed JSON value without ``keys`` (any case) at any depth.

    Raises TooDeep past ``MAX_JSON_DEPTH`` levels (input is checked before
    it gets here; this bound keeps the recursion finite whatever comes).
    """
    if _depth >= MAX_JSON_DEPTH and isinstance(value, (dict, list)):
        raise TooDeep()
    if isinstance(value, dict):
        return {k: scrub(v, keys, _depth + 1) for k, v in value.items() if k.lower() not in keys}
    if isinstance(value, list):
        return [scrub(v, keys, _depth + 1) for v in value]
    return value


# How a private key can appear in orjson output: orjson writes ASCII letters
# literally, so a key whose str.lower() is one of PRIVATE_KEYS shows up in
# the lower-cased bytes as the quoted name. The only non-ASCII character whose
# lower case holds one of the names' letters is U+0130, which lowers to "i"
# plus a combining dot: a key holding it never lowers to a name.
# One regular expression finds any of the quoted names in one pass (a
# substring test per name took three times as long).
_PRIVATE_QUOTED = re.compile(b"|".join(re.escape(f'"{key}"'.encode()) for key in sorted(PRIVATE_KEYS)))


def _scrubbed_json(value: Any) -> str:
    """``orjson.dumps(scrub(value))`` as text, without walking values that hold no private key.

    Most properties hold none: their encoding is searched for the quoted key
    names (C passes) and the Python walk runs only on a possible hit.
    """
    data = orjson.dumps(value)
    if _PRIVATE_QUOTED.search(data.lower()) is not None:
        data = orjson.dumps(scrub(value))
    return data.decode()


def _scrubbed_text(json_text: str | None) -> str:
    """``_scrubbed_json`` for a value that is JSON text already (an event's ``context``)."""
    if not json_text:
        return "{}"
    if _PRIVATE_QUOTED.search(json_text.lower().encode()) is None:
        return json_text
    return _scrubbed_json(orjson.loads(json_text))


def _amount(value: Any) -> float:
    if isinstance(value, bool) or value is None:
        return 0.0
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def _clamp_u8(value: Any) -> int:
    return max(0, min(255, int(value or 0)))


def _email_hash(traits_json: str | None) -> str:
    # Most events carry "{}" traits: skip the parse unless the key is there.
    if not traits_json or '"email_hash"' not in traits_json:
        return ""
    traits = orjson.loads(traits_json)
    return label(traits.get("email_hash")) if isinstance(traits, dict) else ""


def event_row(ev: dict) -> tuple:
    """Row for ``cx.events`` from a worker event dict (with ``session_id``, ``cart_key``, ``props``).

    ``payload_hash`` is the event's fingerprint (``pipeline.detect.ids``):
    the worker sets it on the event when it checks the id; computed here
    otherwise. ``ver`` makes the first-received row win (0008_events_first_wins.sql).
    """
    get = ev.get  # runs for every stored event: one attribute lookup instead of ten
    props = get("props") or {}
    prop = props.get
    name = get("event") or ""
    t_ms = ev["event_time_ms"]
    revenue = 0.0
    if name == ORDER_COMPLETED:
        revenue = order_revenue(props)  # `revenue`, else `total` (docs/clickhouse.md, kpi_daily)
    page_path = get("page_path") or (label(prop("path")) if get("type") == "page" else "")
    fp = get("payload_hash") or fingerprint(ev)
    return (
        ev["tenant"],
        ev["event_id"],
        _date_of_day(t_ms // _DAY_MS),  # day_of, without its call
        t_ms // 1000,
        t_ms,
        ev["received_at_ms"] // 1000,
        ev["type"],
        name,
        get("anonymous_id") or "",
        get("user_id") or "",
        get("session_id") or "",
        get("cart_key") or "",
        label(prop("order_id")),
        label(prop("checkout_id")),
        label(prop("product_id")),
        revenue,
        label(prop("currency")),
        page_path,
        _scrubbed_json(props),
        _email_hash(get("traits")),
        get("ip_hash") or "",
        _scrubbed_text(get("context")),  # the SDK's app/device/os/... (0007_events_context.sql)
        fp,
        version(ev["received_at_ms"], fp),
    )


def _ms(record: dict, name: str) -> int:
    # Inside the pipeline times are `<name>_ms`; the Kafka record calls them `<name>`.
    value = record.get(f"{name}_ms")
    return int(value if value is not None else record.get(name) or 0)


def trigger_row(tr: dict) -> tuple:
    """Row for ``cx.triggers`` from a trigger dict (pipeline form, or the Kafka record plus ``cart_key``)."""
    t_ms = _ms(tr, "event_time")
    offer = tr.get("offer") or {}
    return (
        tr["tenant"],
        tr["trigger_id"],
        tr["kind"],
        day_of(t_ms),
        t_ms // 1000,
        t_ms,
        _ms(tr, "emitted_at") // 1000,
        tr.get("customer_id") or "",
        tr.get("anonymous_id") or "",
        tr.get("session_id") or "",
        tr.get("cart_key") or "",
        tr.get("cart_id") or "",
        _amount(tr.get("cart_value")),
        tr.get("currency") or "",
        tr["action"],
        1 if tr.get("holdout") else 0,
        tr.get("experiment") or "",
        [str(r) for r in tr.get("reasons") or ()],
        _clamp_u8(tr.get("friction_score")),
        offer.get("code") or "",
        _clamp_u8(offer.get("discount_pct")),
        _ms(offer, "expires_at") // 1000,
        offer.get("channel") or "",
        tr.get("ref_trigger_id") or "",
        orjson.dumps(tr.get("items") or []).decode(),
    )


def _scrubbed_payload(payload: str) -> str:
    # Past MAX_JSON_DEPTH a payload is like one that is not JSON: only its
    # size is stored (scrub and orjson.dumps would have to recurse that deep).
    try:
        parsed = parse_bounded(payload)
    except (orjson.JSONDecodeError, TooDeep):
        return ""
    if not isinstance(parsed, (dict, list)):
        return ""
    return orjson.dumps(scrub(parsed, DEADLETTER_PRIVATE_KEYS)).decode()


def deadletter_row(dl: dict) -> tuple:
    """Row for ``cx.deadletters`` from a dead-letter dict (``schemas/deadletter.avsc``)."""
    received_ms = dl["received_at_ms"]
    payload = dl.get("payload") or ""
    return (
        dl.get("tenant") or "",
        dl["dl_id"],
        day_of(received_ms),
        received_ms // 1000,
        dl["reason"],
        dl.get("detail") or "",
        dl.get("source") or "",
        _scrubbed_payload(payload),
        len(payload.encode("utf-8", "backslashreplace")),
    )


FRICTION_COLUMNS = (
    "tenant", "friction_id", "day", "event_time", "event_time_ms", "session_id", "anonymous_id",
    "customer_id", "signal", "page", "detail",
)  # fmt: skip


def friction_row(fr: dict) -> tuple:
    """Row for ``cx.friction`` from a fact of ``pipeline.detect.friction`` (one signal occurrence)."""
    t_ms = fr["event_time_ms"]
    return (
        fr["tenant"],
        fr["friction_id"],
        day_of(t_ms),
        t_ms // 1000,
        t_ms,
        fr["session_id"],
        fr.get("anonymous_id") or "",
        fr.get("customer_id") or "",
        fr["signal"],
        fr.get("page") or "",
        fr.get("detail") or "",
    )


FACT_TABLES["cx.friction"] = (FRICTION_COLUMNS, friction_row)
# -- support (detect.support): tickets, messages, surveys -----------------------

SUPPORT_TICKET_COLUMNS = (
    "tenant", "ticket_id", "version", "day", "opened_at", "opened_ms", "updated_at", "customer_id",
    "channel", "topic", "order_id", "has_response", "first_response_s", "resolved", "resolution_s",
    "resolutions", "reopened", "agent_replies", "contacts", "negative_messages", "fcr",
    "has_csat", "csat_score", "has_nps", "nps_score", "has_ces", "ces_score",
)  # fmt: skip
SUPPORT_MESSAGE_COLUMNS = (
    "tenant", "message_id", "day", "event_time", "event_time_ms", "ticket_id", "customer_id", "author",
    "lang", "sentiment", "sentiment_label",
)  # fmt: skip
SURVEY_COLUMNS = (
    "tenant", "survey_id", "day", "event_time", "event_time_ms", "customer_id", "survey", "score",
    "ticket_id", "order_id", "has_comment", "comment_sentiment", "comment_label",
)  # fmt: skip


def _u16(value: int) -> int:
    return max(0, min(65_535, int(value)))


def _optional_s(ms: int | None) -> tuple[int, float]:
    """(flag, seconds) for a duration that may be absent."""
    return (0, 0.0) if ms is None else (1, ms / 1000)


def support_ticket_row(t: dict) -> tuple:
    """Row for ``cx.support_tickets`` from a ticket dict of ``detect.support``; ``day`` is the opening's."""
    opened_ms = t["opened_ms"]
    has_response, first_response_s = _optional_s(t.get("first_response_ms"))
    resolved, resolution_s = _optional_s(t.get("resolution_ms"))
    scores = []
    for kind in ("csat", "nps", "ces"):
        value = t.get(kind)
        scores += [0, 0.0] if value is None else [1, float(value)]
    return (
        t["tenant"],
        t["ticket_id"],
        int(t["version"]),
        day_of(opened_ms),
        opened_ms // 1000,
        opened_ms,
        int(t.get("updated_ms") or opened_ms) // 1000,
        t.get("customer_id") or "",
        t.get("channel") or "",
        t.get("topic") or "",
        t.get("order_id") or "",
        has_response,
        first_response_s,
        resolved,
        resolution_s,
        _u16(t.get("resolutions") or 0),
        1 if t.get("reopened") else 0,
        _u16(t.get("agent_replies") or 0),
        _u16(t.get("contacts") or 0),
        _u16(t.get("negative_messages") or 0),
        1 if t.get("fcr") else 0,
        *scores,
    )


def support_message_row(m: dict) -> tuple:
    """Row for ``cx.support_messages``: sentiment only; a ``text`` key in ``m`` is never read."""
    t_ms = m["event_time_ms"]
    return (
        m["tenant"],
        m["message_id"],
        day_of(t_ms),
        t_ms // 1000,
        t_ms,
        m.get("ticket_id") or "",
        m.get("customer_id") or "",
        m.get("author") or "",
        m.get("lang") or "",
        float(m.get("sentiment") or 0.0),
        m.get("sentiment_label") or "",
    )


def survey_row(s: dict) -> tuple:
    """Row for ``cx.surveys``: the score and links; a comment only as its sentiment."""
    t_ms = s["event_time_ms"]
    return (
        s["tenant"],
        s["survey_id"],
        day_of(t_ms),
        t_ms // 1000,
        t_ms,
        s.get("customer_id") or "",
        s["survey"],
        float(s["score"]),
        s.get("ticket_id") or "",
        s.get("order_id") or "",
        1 if s.get("has_comment") else 0,
        float(s.get("comment_sentiment") or 0.0),
        s.get("comment_label") or "",
    )


FACT_TABLES.update(
    {
        "cx.support_tickets": (SUPPORT_TICKET_COLUMNS, support_ticket_row),
        "cx.support_messages": (SUPPORT_MESSAGE_COLUMNS, support_message_row),
        "cx.surveys": (SURVEY_COLUMNS, survey_row),
    }
)
# -- offers: attribution and customer value (sinks/ddl/0004_offers.sql) --------

RECOVERY_COLUMNS = (
    "tenant", "trigger_id", "kind", "day", "trigger_time", "trigger_time_ms", "order_time", "order_time_ms",
    "customer_id", "anonymous_id", "order_id", "revenue", "holdout", "experiment", "action", "discount_pct",
)  # fmt: skip
SCORE_COLUMNS = (
    "tenant", "customer_id", "visitor_id", "scored_at", "scored_at_ms", "loyalty_score", "orders", "revenue",
)  # fmt: skip


def recovery_row(rec: dict) -> tuple:
    """Row for ``cx.recoveries``; ``day`` is the trigger's UTC day, so a trigger and its recovery share a day."""
    trigger_ms, order_ms = rec["trigger_time_ms"], rec["order_time_ms"]
    return (
        rec["tenant"],
        rec["trigger_id"],
        rec["kind"],
        day_of(trigger_ms),
        trigger_ms // 1000,
        trigger_ms,
        order_ms // 1000,
        order_ms,
        rec.get("customer_id") or "",
        rec.get("anonymous_id") or "",
        rec.get("order_id") or "",
        _amount(rec.get("revenue")),
        1 if rec.get("holdout") else 0,
        rec.get("experiment") or "",
        rec.get("action") or "",
        _clamp_u8(rec.get("discount_pct")),
    )


def score_row(sc: dict) -> tuple:
    """Row for ``cx.customer_scores``: one visitor's loyalty score of a customer at a moment."""
    t_ms = sc["scored_at_ms"]
    return (
        sc["tenant"],
        sc["customer_id"],
        sc.get("visitor_id") or "",
        t_ms // 1000,
        t_ms,
        max(0, min(100, int(sc["loyalty_score"]))),
        int(sc.get("orders") or 0),
        _amount(sc.get("revenue")),
    )


FACT_TABLES["cx.recoveries"] = (RECOVERY_COLUMNS, recovery_row)
FACT_TABLES["cx.customer_scores"] = (SCORE_COLUMNS, score_row)

# -- deliveries (cxstream deliver, pipeline.deliver): one row per trigger and destination

DELIVERY_COLUMNS = (
    "tenant", "trigger_id", "destination", "kind", "action", "day", "status", "attempts", "last_status",
    "last_error", "latency_ms", "first_attempt_at", "first_attempt_ms", "last_attempt_at", "last_attempt_ms",
)  # fmt: skip


def delivery_row(d: dict) -> tuple:
    """Row for ``cx.deliveries`` from a delivery outcome (``pipeline.deliver.outcome``)."""
    first, last = int(d["first_attempt_ms"]), int(d["last_attempt_ms"])
    return (
        d.get("tenant") or "",
        d["trigger_id"],
        d["destination"],
        d.get("kind") or "",
        d.get("action") or "",
        day_of(first),
        d["status"],
        min(int(d["attempts"]), 65_535),
        min(max(int(d.get("last_status") or 0), 0), 65_535),
        (d.get("last_error") or "")[:1000],
        min(max(int(d.get("latency_ms") or 0), 0), 4_294_967_295),
        first // 1000,
        first,
        last // 1000,
        last,
    )


FACT_TABLES["cx.deliveries"] = (DELIVERY_COLUMNS, delivery_row)


CONVERSION_COLUMNS = ("tenant", "cart_key", "customer_id", "day", "ordered_at", "ordered_at_ms", "deadline_ms")


def conversion_row(c: dict) -> tuple:
    """Row for ``cx.cart_conversions``: a cart the customer bought elsewhere before its deadline."""
    t_ms = c["ordered_at_ms"]
    return (c["tenant"], c["cart_key"], c["customer_id"], day_of(t_ms), t_ms // 1000, t_ms, c["deadline_ms"])


FACT_TABLES["cx.cart_conversions"] = (CONVERSION_COLUMNS, conversion_row)
