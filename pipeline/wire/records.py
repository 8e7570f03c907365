"""Records cxstream writes to Kafka, as pydantic models mirroring ``schemas/*.avsc``.

The Avro schemas are the source of truth; ``tests/test_schemas.py`` checks
that every model's fields match its schema and round-trips each record.

On the hot path the worker handles events as plain dicts decoded by orjson
(the collector already validated them); these models are for the edges.
"""

from __future__ import annotations

import hashlib
import json
import operator
import re
from typing import Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = [
    "Action",
    "CallType",
    "DeadLetter",
    "DeadLetterReason",
    "Event",
    "Offer",
    "Trigger",
    "TriggerItem",
    "TriggerKind",
    "dead_letter",
    "encode_batch",
    "error_detail",
    "decode_batch",
    "decode_batch_checked",
    "BadRecord",
    "MAX_JSON_DEPTH",
    "TooDeep",
    "json_depth_exceeds",
    "parse_bounded",
    "stable_id",
    "truncate_depth",
    "visitor_key",
]

CallType = Literal["track", "page", "identify", "screen", "group", "alias"]
TriggerKind = Literal["cart_abandoned", "checkout_friction", "support_risk", "offer_cancelled"]
Action = Literal["offer", "assist", "none"]
Channel = Literal["email", "sms", "onsite"]

DeadLetterReason = Literal[
    "bad_json",  # body or event is not JSON / not a JSON object
    "bad_encoding",  # bytes are not UTF-8
    "unknown_type",  # `type` is not one of Segment's calls
    "schema_violation",  # envelope fields of the wrong type, no user or anonymous id
    "missing_property",  # catalog event without a required property
    "wrong_type",  # catalog property of the wrong type or out of range
    "oversize",  # one event over 32 KB
    "too_old",  # event time more than max_event_age before receipt
    "too_far_future",  # event time more than max_event_future after receipt
    "processing_error",  # the worker could not process it (a bug, reported, not lost)
    "store_rejected",  # ClickHouse refused the row for good (a value its column cannot hold)
    "duplicate_id_conflict",  # event_id already stored for the tenant with other content (pipeline.detect.ids)
]


# The deepest nesting of JSON containers (objects and arrays) the pipeline
# accepts in one message, one event's properties or traits, and one
# dead-letter payload it stores: ``{"a": [1]}`` is 2 deep. Deeper input is a
# dead letter, checked where it enters (the collector's ``ingest``, the
# worker's property parsing, ``sinks.rows``), so that no recursive code of
# the pipeline or its libraries (orjson writes at most 254 levels, Python's
# own recursion stops near 1000) meets more.
MAX_JSON_DEPTH = 250


class TooDeep(ValueError):
    """A JSON value nested deeper than ``MAX_JSON_DEPTH``."""

    def __init__(self, limit: int = MAX_JSON_DEPTH) -> None:
        super().__init__(f"JSON nested deeper than {limit} levels")


def json_depth_exceeds(value: object, limit: int = MAX_JSON_DEPTH) -> bool:
    """True if ``value`` (parsed JSON) nests containers deeper than ``limit``; iterative, stops early."""
    if not isinstance(value, (dict, list)):
        return False
    stack = [(value, 1)]
    pop, push = stack.pop, stack.append
    while stack:
        node, depth = pop()
        if depth > limit:
            return True
        for child in node.values() if isinstance(node, dict) else node:
            if isinstance(child, (dict, list)):
                push((child, depth + 1))
    return False


def parse_bounded(text: str | bytes, limit: int = MAX_JSON_DEPTH) -> object:
    """``orjson.loads`` that raises TooDeep past ``limit`` (JSONDecodeError for text that is not JSON).

    Text with at most ``limit`` opening brackets cannot nest deeper: two C
    counts spare the walk for almost every value.
    """
    value = orjson.loads(text)
    if isinstance(value, (dict, list)):
        if isinstance(text, str):
            opened = text.count("{") + text.count("[")
        else:
            opened = text.count(b"{") + text.count(b"[")
        if opened > limit and json_depth_exceeds(value, limit):
            raise TooDeep(limit)
    return value


def truncate_depth(value: object, limit: int = MAX_JSON_DEPTH) -> object:
    """A copy of ``value`` whose containers below ``limit`` levels are replaced by a short text.

    For a dead letter's payload: the input as far as it can be written, and
    where it was cut.
    """
    cut = f"<nested deeper than {limit} levels>"
    if not json_depth_exceeds(value, limit):
        return value
    return _truncate_iter(value, limit, cut)


def _truncate_iter(value: object, limit: int, cut: str) -> object:
    # Iterative copy: the input may be nested past Python's recursion limit.
    def shell(node: object) -> object:
        return {} if isinstance(node, dict) else []

    root = shell(value)
    stack = [(value, root, 1)]
    while stack:
        node, out, depth = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for k, v in items:
            if isinstance(v, (dict, list)):
                if depth + 1 > limit:
                    child: object = cut
                else:
                    child = shell(v)
                    stack.append((v, child, depth + 1))
            else:
                child = v
            if isinstance(out, dict):
                out[k] = child
            else:
                out.append(child)
    return root


def stable_id(*parts: object) -> str:
    """A deterministic 32-hex id from parts: the same inputs give the same id on any replay."""
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        h.update(str(part).encode("utf-8", "backslashreplace"))
        h.update(b"\x1f")
    return h.hexdigest()


def visitor_key(tenant: str, anonymous_id: str | None, user_id: str | None) -> str:
    """Partitioning key: one visitor's events stay in order in one partition.

    The anonymous id wins when present (it is stable across the identify call
    that adds a user id); server-side events with only a user id key on it.
    """
    return f"{tenant}\x1f{anonymous_id or user_id or ''}"


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Event(_Record):
    event_id: str
    tenant: str
    type: CallType
    event: str | None = None
    anonymous_id: str | None = None
    user_id: str | None = None
    event_time_ms: int
    received_at_ms: int
    sent_at_ms: int | None = None
    session_hint: str | None = None
    page_path: str | None = None
    page_url: str | None = None
    page_referrer: str | None = None
    user_agent: str | None = None
    locale: str | None = None
    ip_hash: str | None = None
    properties: str = "{}"
    traits: str = "{}"
    context: str = "{}"


class TriggerItem(_Record):
    product_id: str
    name: str | None = None
    price: float
    quantity: int


class Offer(_Record):
    code: str
    discount_pct: int
    expires_at: int
    channel: Channel


class Trigger(_Record):
    """The record on ``cx.triggers`` (times in epoch ms; see ``pipeline.wire.triggers``)."""

    trigger_id: str
    kind: TriggerKind
    tenant: str
    customer_id: str | None = None
    anonymous_id: str | None = None
    session_id: str | None = None
    cart_id: str | None = None
    cart_value: float = 0.0
    currency: str | None = None
    items: list[TriggerItem] = Field(default_factory=list)
    event_time: int
    emitted_at: int
    reasons: list[str] = Field(default_factory=list)
    friction_score: int = 0
    action: Action
    offer: Offer | None = None
    holdout: bool = False
    experiment: str = "default"
    ref_trigger_id: str | None = None


class DeadLetter(_Record):
    dl_id: str
    tenant: str | None = None
    reason: DeadLetterReason
    detail: str = ""
    payload: str
    received_at_ms: int
    source: Literal["collector", "worker"]


def dead_letter(
    *,
    tenant: str | None,
    reason: DeadLetterReason,
    detail: str,
    payload: bytes | str,
    received_at_ms: int,
    source: Literal["collector", "worker"] = "collector",
    id_parts: tuple = (),
) -> DeadLetter:
    """Build a dead letter whose id is stable for the same input (or for ``id_parts`` when given)."""
    text = payload.decode("utf-8", "backslashreplace") if isinstance(payload, bytes) else payload
    return DeadLetter(
        dl_id=stable_id(*id_parts) if id_parts else stable_id(tenant, reason, text, received_at_ms),
        tenant=tenant,
        reason=reason,
        detail=detail[:1000],
        payload=text,
        received_at_ms=received_at_ms,
        source=source,
    )


_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def error_detail(exc: BaseException) -> str:
    """What went wrong, for a dead letter's ``detail``: the kind of error and where, never the value.

    An exception's own text often quotes its input (pydantic's
    ``input_value=...``, ``int()``'s "invalid literal ... 'x'", a KeyError's
    key), and a dead letter's detail is stored in the clear. So only texts
    known to quote nothing are kept: a BadRecord's, a JSON decoder's
    position, a pydantic error's field path (names and indexes only) and
    error types. Anything else is named by its type alone.
    """
    if isinstance(exc, BadRecord):
        return str(exc)
    if isinstance(exc, json.JSONDecodeError):  # orjson's too: a position, no input
        return f"{type(exc).__name__}: {exc}"
    if isinstance(exc, ValidationError):
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        parts = []
        for error in errors[:3]:
            loc = ".".join(
                str(part) if isinstance(part, int) or _FIELD_NAME.fullmatch(str(part)) else "?" for part in error["loc"]
            )
            parts.append(f"{loc or '(root)'}: {error['type']}")
        more = f" and {len(errors) - 3} more" if len(errors) > 3 else ""
        return f"ValidationError: {'; '.join(parts)}{more}"
    return type(exc).__name__


def encode_batch(events: list[dict]) -> bytes:
    """Encode an EventBatch record (JSON form of ``schemas/event_batch.avsc``)."""
    return orjson.dumps({"events": events})


def decode_batch(value: bytes) -> list[dict]:
    """Decode an EventBatch record into its list of event dicts."""
    return orjson.loads(value)["events"]


class BadRecord(ValueError):
    """A record on the events topic that is not an EventBatch the collector wrote."""

    def __init__(self, reason: DeadLetterReason, detail: str) -> None:
        super().__init__(detail)
        self.reason: DeadLetterReason = reason


# What the worker reads of every event without a default (see ``schemas/event.avsc``).
_REQUIRED = (("tenant", str), ("event_id", str), ("type", str), ("event_time_ms", int), ("received_at_ms", int))
_REQUIRED_VALUES = operator.itemgetter(*(name for name, _ in _REQUIRED))
_REQUIRED_TYPES = tuple(kind for _, kind in _REQUIRED)


def decode_batch_checked(value: bytes | None) -> list[dict]:
    """``decode_batch`` for records from anywhere: raises BadRecord unless it is a well-formed EventBatch.

    The collector only writes well-formed records; anything else on the
    topic (another producer, a corrupted record) must become a dead letter,
    not stop the partition.
    """
    try:
        events = orjson.loads(value or b"")["events"]
    except (orjson.JSONDecodeError, TypeError, KeyError) as exc:
        reason: DeadLetterReason = "bad_json" if isinstance(exc, orjson.JSONDecodeError) else "schema_violation"
        raise BadRecord(reason, f"not an EventBatch record: {type(exc).__name__}: {exc}") from None
    if not isinstance(events, list):
        raise BadRecord("schema_violation", "not an EventBatch record: 'events' is not a list")
    try:  # the common case in one C-heavy pass per event: exact types, so no bool for an int
        if all(tuple(map(type, _REQUIRED_VALUES(event))) == _REQUIRED_TYPES for event in events):
            return events
    except (KeyError, TypeError):
        pass
    for i, event in enumerate(events):  # find and name the first problem
        if not isinstance(event, dict):
            raise BadRecord("schema_violation", f"event {i} is not an object")
        for name, kind in _REQUIRED:
            field_value = event.get(name)
            if not isinstance(field_value, kind) or isinstance(field_value, bool):
                raise BadRecord("schema_violation", f"event {i}: {name} is missing or not {kind.__name__}")
    return events
