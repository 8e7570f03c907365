"""Worker dicts to ClickHouse row tuples, in the column order of ``sinks/ddl``.

Called by the worker for every stored event, trigger and dead letter, so
these functions are plain and allocation-light. Values follow the portable
schema: absent strings are ``''``, absent numbers ``0``, ``day`` is the UTC
date of the record's time, ``DateTime`` cells are epoch seconds.

Privacy (contract): free text never reaches ClickHouse. Keys named in
``PRIVATE_KEYS`` (support message ``text``, survey ``comment``, ``email``,
``phone``, ``ip``; any depth, any case) are dropped from the JSON stored in
``events.properties`` and ``deadletters.payload``. A dead-letter payload that
is not JSON cannot be scrubbed, so only its size is stored; the dead-letter
topic keeps the original for whoever may read it.
"""

from __future__ import annotations

from datetime import date, timedelta
from functools import lru_cache
from typing import Any, Callable

import orjson

__all__ = [
    "DEADLETTER_COLUMNS",
    "EVENT_COLUMNS",
    "FACT_TABLES",
    "PRIVATE_KEYS",
    "TRIGGER_COLUMNS",
    "day_of",
    "deadletter_row",
    "event_row",
    "scrub",
    "trigger_row",
]

PRIVATE_KEYS = frozenset({"text", "comment", "email", "phone", "ip"})
ORDER_COMPLETED = "Order Completed"

EVENT_COLUMNS = (
    "tenant", "event_id", "day", "event_time", "event_time_ms", "received_at", "type", "event",
    "anonymous_id", "user_id", "session_id", "cart_key", "order_id", "checkout_id", "product_id",
    "revenue", "currency", "page_path", "properties", "email_hash", "ip_hash",
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


def scrub(value: Any) -> Any:
    """A copy of a parsed JSON value without ``PRIVATE_KEYS`` at any depth."""
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items() if k.lower() not in PRIVATE_KEYS}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


# How a private key can appear in orjson output: orjson writes ASCII letters
# literally, so a key whose str.lower() is one of PRIVATE_KEYS shows up in
# the lower-cased bytes as the quoted name. The only non-ASCII character whose
# lower case holds one of the names' letters is U+0130, which lowers to "i"
# plus a combining dot: a key holding it never lowers to a name.
_PRIVATE_QUOTED = tuple(f'"{key}"'.encode() for key in sorted(PRIVATE_KEYS))


def _scrubbed_json(value: Any) -> str:
    """``orjson.dumps(scrub(value))`` as text, without walking values that hold no private key.

    Most properties hold none: their encoding is checked for the quoted key
    names (one C pass) and the Python walk runs only on a possible hit.
    """
    data = orjson.dumps(value)
    lowered = data.lower()
    if any(key in lowered for key in _PRIVATE_QUOTED):
        data = orjson.dumps(scrub(value))
    return data.decode()


def _text(value: Any) -> str:
    """An id-like property as text: numbers become their digits; absent or nested is ''."""
    if value is None or isinstance(value, (dict, list)):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


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
    return _text(traits.get("email_hash")) if isinstance(traits, dict) else ""


def event_row(ev: dict) -> tuple:
    """Row for ``cx.events`` from a worker event dict (with ``session_id``, ``cart_key``, ``props``)."""
    props = ev.get("props") or {}
    name = ev.get("event") or ""
    t_ms = ev["event_time_ms"]
    revenue = 0.0
    if name == ORDER_COMPLETED:
        # Contract: revenue is `revenue` when sent, else `total`.
        sent = props.get("revenue")
        revenue = _amount(sent if sent is not None else props.get("total"))
    page_path = ev.get("page_path") or (_text(props.get("path")) if ev.get("type") == "page" else "")
    return (
        ev["tenant"],
        ev["event_id"],
        day_of(t_ms),
        t_ms // 1000,
        t_ms,
        ev["received_at_ms"] // 1000,
        ev["type"],
        name,
        ev.get("anonymous_id") or "",
        ev.get("user_id") or "",
        ev.get("session_id") or "",
        ev.get("cart_key") or "",
        _text(props.get("order_id")),
        _text(props.get("checkout_id")),
        _text(props.get("product_id")),
        revenue,
        _text(props.get("currency")),
        page_path,
        _scrubbed_json(props),
        _email_hash(ev.get("traits")),
        ev.get("ip_hash") or "",
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
    try:
        parsed = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return ""
    if not isinstance(parsed, (dict, list)):
        return ""
    return orjson.dumps(scrub(parsed)).decode()


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
