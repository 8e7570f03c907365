"""One Segment message -> one Event dict (``schemas/event.avsc``), or a dead-letter decision.

Pure: no I/O; the receive time is an argument. Runs once per message in
the collector's request handler: the envelope is validated first by the
pydantic model ``SegmentMessage`` (``pipeline.collector.envelope``), then
the event's properties by the catalog.

Clock skew is corrected as Segment does: the event time is ``timestamp +
(receivedAt - sentAt)``, where ``sentAt`` is the message's own, else the
batch's; without ``sentAt`` the timestamp is taken as is, without
``timestamp`` the event time is the receive time. RudderStack SDKs send
``originalTimestamp`` instead of ``timestamp``; it is read the same way.

Privacy: ``context.ip`` becomes ``ip_hash``; an ``email`` in traits (the
call's and ``context.traits``) or in top-level properties becomes
``email_hash``. Hashes are sha256 hex of salt + the lower-cased, stripped
value, so the same address gives the same hash across events.

What the SDK says about where an event came from is kept in ``context``
(JSON text): the parts named in ``CONTEXT_KEPT`` (``app``, ``device``,
``os``, ``network``, ``library``, ``screen``, ``timezone``, ``campaign``),
as mobile and browser SDKs send them, for analysts. ``device.advertisingId``
is dropped: it is a cross-app identifier of the person, not of the device.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

import orjson

from pipeline.collector.envelope import EnvelopeError, SegmentMessage, validate_envelope
from pipeline.collector.catalog import CATALOG, IDENTIFY_TRAITS, PAGE, EventSpec, PropertyError, check_properties
from pipeline.records import DeadLetterReason, stable_id
from pipeline.settings import Settings

__all__ = [
    "DeadLetterDecision",
    "NormalizeRules",
    "hash_pii",
    "normalize",
    "parse_time_ms",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
# Fields that change when an SDK retries the same message; left out of the
# content hash that stands in for a missing messageId.
_VOLATILE = ("sentAt", "writeKey")


@dataclass(frozen=True, slots=True)
class DeadLetterDecision:
    """Why a message cannot become an event: a ``DeadLetterReason`` and a human detail."""

    reason: DeadLetterReason
    detail: str


@dataclass(frozen=True, slots=True)
class NormalizeRules:
    """The settings ``normalize`` needs, so the pure code does not take all of ``Settings``."""

    max_event_age_ms: int
    max_event_future_ms: int
    pii_salt: str

    @classmethod
    def from_settings(cls, settings: Settings) -> NormalizeRules:
        return cls(
            max_event_age_ms=settings.max_event_age_ms,
            max_event_future_ms=settings.max_event_future_ms,
            pii_salt=settings.pii_salt,
        )


class _Reject(Exception):
    def __init__(self, reason: DeadLetterReason, detail: str) -> None:
        self.decision = DeadLetterDecision(reason, detail)


def hash_pii(value: object, salt: str) -> str:
    """Salted sha256 hex of a personal value, lower-cased and stripped first."""
    return hashlib.sha256((salt + str(value).strip().lower()).encode("utf-8")).hexdigest()


def parse_time_ms(text: str) -> int:
    """ISO-8601 text -> epoch ms (floor). ``Z`` or an offset; no zone means UTC.

    Raises ValueError for anything that is not ISO-8601.
    """
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _MS


@lru_cache(maxsize=64)
def _parse_batch_sent_at(text: str) -> int:
    # Every message of a batch shares this text: parse it once, not per message.
    return parse_time_ms(text)


def _time_value(name: str, value: object, parse: Callable[[str], int] = parse_time_ms) -> int | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Reject("schema_violation", f"{name} must be an ISO-8601 string, got {type(value).__name__}")
    try:
        return parse(value)
    except (ValueError, OverflowError):
        raise _Reject("schema_violation", f"{name} is not ISO-8601: {value[:64]!r}") from None


def _text(value: object) -> str | None:
    """A context string; numbers are stringified, other shapes are ignored (not worth a dead letter)."""
    if isinstance(value, str):
        return value or None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return None


# Context parts kept in the event's ``context`` (Segment's and RudderStack's
# names): the SDK's own description of the app, device and connection.
CONTEXT_KEPT = ("app", "device", "os", "network", "library", "screen", "timezone", "campaign")
_DROPPED_DEVICE_KEYS = ("advertisingId",)


def _kept_context(context: dict) -> str:
    """The ``CONTEXT_KEPT`` parts of ``context`` as JSON text (``{}`` when it has none)."""
    kept = {key: context[key] for key in CONTEXT_KEPT if context.get(key) not in (None, "", {}, [])}
    if not kept:
        return "{}"
    device = kept.get("device")
    if isinstance(device, dict) and any(key in device for key in _DROPPED_DEVICE_KEYS):
        kept["device"] = {k: v for k, v in device.items() if k not in _DROPPED_DEVICE_KEYS}
    return orjson.dumps(kept).decode()


def _hash_email(obj: dict, salt: str) -> dict:
    """``obj`` with any top-level ``email`` key (any case) replaced by ``email_hash``."""
    keys = [k for k in obj if k.lower() == "email"]
    if not keys:
        return obj
    out = {k: v for k, v in obj.items() if k not in keys}
    for key in keys:
        if obj[key] is not None and obj[key] != "":
            out["email_hash"] = hash_pii(obj[key], salt)
    return out


def _check(spec: EventSpec, props: dict) -> dict:
    try:
        return check_properties(spec, props)
    except PropertyError as exc:
        raise _Reject(exc.reason, exc.detail) from None


def _event_time(env: SegmentMessage, received_at_ms: int, batch_sent_at: object) -> tuple[int, int | None]:
    """(event time, sentAt used), corrected for the device clock's skew."""
    ts = _time_value("timestamp", env.timestamp)
    if ts is None:
        ts = _time_value("originalTimestamp", env.originalTimestamp)
    sent_at = _time_value("sentAt", env.sentAt)
    if sent_at is None:
        sent_at = _time_value("batch sentAt", batch_sent_at, _parse_batch_sent_at)
    if ts is None:
        return received_at_ms, sent_at
    if sent_at is None:
        return ts, None
    return ts + (received_at_ms - sent_at), sent_at


def _message_id(msg: dict, env: SegmentMessage, tenant: str) -> str:
    if env.messageId is not None:
        return env.messageId
    # A stable content hash, so that an SDK retry of the same message dedups.
    content = {k: v for k, v in msg.items() if k not in _VOLATILE}
    return stable_id(tenant, orjson.dumps(content, option=orjson.OPT_SORT_KEYS).decode())


def _properties(msg: dict, env: SegmentMessage) -> dict:
    props = env.properties or {}
    call = env.type
    if call == "track":
        spec = CATALOG.get(env.event)
        return _check(spec, props) if spec is not None else props
    if call == "page":
        name = _text(msg.get("name"))
        if name is not None and props.get("title") is None:
            props = {**props, "title": name}
        return _check(PAGE, props)
    if call == "screen":
        name = _text(msg.get("name"))
        if name is not None and props.get("name") is None:
            props = {**props, "name": name}
    elif call == "group":
        if env.groupId is not None:
            props = {**props, "group_id": env.groupId}
    elif call == "alias":
        if env.previousId is not None:
            props = {**props, "previous_id": env.previousId}
    return props


def _build(msg: dict, tenant: str, received_at_ms: int, batch_sent_at: object, rules: NormalizeRules) -> dict:
    try:
        env = validate_envelope(msg)
    except EnvelopeError as exc:
        raise _Reject(exc.reason, exc.detail) from None
    call = env.type
    event_time_ms, sent_at_ms = _event_time(env, received_at_ms, batch_sent_at)
    if event_time_ms < received_at_ms - rules.max_event_age_ms:
        raise _Reject("too_old", f"event time {event_time_ms} is more than {rules.max_event_age_ms} ms before receipt")
    if event_time_ms > received_at_ms + rules.max_event_future_ms:
        raise _Reject("too_far_future", f"event time {event_time_ms} is more than {rules.max_event_future_ms} ms after receipt")

    context = env.context or {}
    page = context.get("page")
    page = page if isinstance(page, dict) else {}
    props = _properties(msg, env)
    traits = env.traits or {}
    context_traits = context.get("traits")
    if isinstance(context_traits, dict) and context_traits:
        traits = {**context_traits, **traits}
    if call == "identify":
        traits = _check(IDENTIFY_TRAITS, traits)
    salt = rules.pii_salt
    ip = _text(context.get("ip"))
    if call == "page":
        # A page call's properties describe the page viewed; context.page is the fallback.
        path, url, referrer = props.get("path"), props.get("url"), props.get("referrer")
    else:
        path = url = referrer = None
    session = context.get("session_id")
    if session is None:
        session = context.get("sessionId")
    return {
        "event_id": _message_id(msg, env, tenant),
        "tenant": tenant,
        "type": call,
        "event": env.event if call == "track" else None,
        "anonymous_id": env.anonymousId,
        "user_id": env.userId,
        "event_time_ms": event_time_ms,
        "received_at_ms": received_at_ms,
        "sent_at_ms": sent_at_ms,
        "session_hint": _text(session),
        "page_path": _text(path) or _text(page.get("path")),
        "page_url": _text(url) or _text(page.get("url")),
        "page_referrer": _text(referrer) or _text(page.get("referrer")),
        "user_agent": _text(context.get("userAgent")),
        "locale": _text(context.get("locale")),
        "ip_hash": hash_pii(ip, salt) if ip else None,
        "properties": orjson.dumps(_hash_email(props, salt)).decode(),
        "traits": orjson.dumps(_hash_email(traits, salt)).decode(),
        "context": _kept_context(context),
    }


def normalize(
    msg: dict,
    *,
    tenant: str,
    received_at_ms: int,
    batch_sent_at: object,
    rules: NormalizeRules,
) -> dict | DeadLetterDecision:
    """The Event dict for one Segment message, or why it goes to the dead-letter topic.

    ``msg`` is the decoded message (a batch element or a single call's body,
    with ``type`` already set from the path for single calls);
    ``batch_sent_at`` is the batch's ``sentAt`` (ISO-8601 text or None),
    used when the message has none; a batch ``sentAt`` that is not
    ISO-8601 makes its messages schema violations, like a bad ``sentAt`` of
    their own. Never raises for bad input: every problem is a decision.
    """
    if not isinstance(msg, dict):
        return DeadLetterDecision("bad_json", f"a message must be a JSON object, got {type(msg).__name__}")
    try:
        return _build(msg, tenant, received_at_ms, batch_sent_at, rules)
    except _Reject as rej:
        return rej.decision
