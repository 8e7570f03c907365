"""One Segment message -> one Event dict (``schemas/event.avsc``), or a dead-letter decision.

Pure: no I/O; the receive time is an argument. Runs once per message in
the collector's request handler: the envelope is validated first
(``pipeline.collector.envelope``, the rules of the pydantic model
``SegmentMessage``), then the event's properties by the catalog.

Clock skew is corrected as Segment does: the event time is ``timestamp +
(receivedAt - sentAt)``, where ``sentAt`` is the message's own, else the
batch's; without ``sentAt`` the timestamp is taken as is, without
``timestamp`` the event time is the receive time. RudderStack SDKs send
``originalTimestamp`` instead of ``timestamp``; it is read the same way.

Privacy: ``context.ip`` becomes ``ip_hash``; properties, traits (the
call's and ``context.traits``) and the page URL, referrer and path pass
the scrubber of ``pipeline.collector.pii`` (personal keys at any depth
hashed, emails and phone numbers in text hashed), so ``email`` becomes
``email_hash`` wherever it is. A support message's ``text`` and a survey's
``comment`` leave as their sentiment only (``text_sentiment``,
``comment_sentiment``: score, label, language), which is all the worker
reads of them. Hashes are sha256 hex of salt + the lower-cased, stripped
value, so the same address gives the same hash across events. No
dead-letter detail quotes a value: it names the field and the rule.

What the SDK says about where an event came from is kept in ``context``
(JSON text): the parts named in ``CONTEXT_KEPT`` (``app``, ``device``,
``os``, ``network``, ``library``, ``screen``, ``timezone``, ``campaign``),
as mobile and browser SDKs send them, for analysts. ``device.advertisingId``
is dropped: it is a cross-app identifier of the person, not of the device.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache

import orjson

from pipeline.collector.envelope import Envelope, EnvelopeError, validate_envelope
from pipeline.collector.catalog import CATALOG, IDENTIFY_TRAITS, PAGE, EventSpec, PropertyError, check_properties
from pipeline.collector.pii import Scrubber, TooDeep, hash_pii
from pipeline.wire.records import DeadLetterReason, stable_id
from pipeline.sentiment import lang_of_locale, score
from pipeline.settings import DEFAULT_PII_KEYS, Settings, parse_pii_keys
from pipeline.vocabulary import SUPPORT_MESSAGE_SENT, SURVEY_ANSWERED, text_or_none

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
    pii_keys: tuple[str, ...] = parse_pii_keys(DEFAULT_PII_KEYS)
    scrubber: Scrubber = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "scrubber", Scrubber(self.pii_salt, self.pii_keys))

    @classmethod
    def from_settings(cls, settings: Settings) -> NormalizeRules:
        return cls(
            max_event_age_ms=settings.max_event_age_ms,
            max_event_future_ms=settings.max_event_future_ms,
            pii_salt=settings.pii_salt,
            pii_keys=parse_pii_keys(settings.pii_keys),
        )


class _Reject(Exception):
    def __init__(self, reason: DeadLetterReason, detail: str) -> None:
        self.decision = DeadLetterDecision(reason, detail)


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
        raise _Reject("schema_violation", f"{name} is not ISO-8601 ({len(value)} characters)") from None


# Context parts kept in the event's ``context`` (Segment's and RudderStack's
# names): the SDK's own description of the app, device and connection.
CONTEXT_KEPT = ("app", "device", "os", "network", "library", "screen", "timezone", "campaign")
_DROPPED_DEVICE_KEYS = ("advertisingId",)


def _kept_context(context: dict, scrubber: Scrubber) -> str:
    """The ``CONTEXT_KEPT`` parts of ``context``, scrubbed, as JSON text (``{}`` when it has none)."""
    if context.keys().isdisjoint(CONTEXT_KEPT):  # a browser's context usually has none of them
        return "{}"
    kept = {key: context[key] for key in CONTEXT_KEPT if context.get(key) not in (None, "", {}, [])}
    if not kept:
        return "{}"
    device = kept.get("device")
    if isinstance(device, dict) and any(key in device for key in _DROPPED_DEVICE_KEYS):
        kept["device"] = {k: v for k, v in device.items() if k not in _DROPPED_DEVICE_KEYS}
    return orjson.dumps(scrubber.value(kept)).decode()


# Free text of the support events: what the worker needs of it is its sentiment.
_FREE_TEXT = {SUPPORT_MESSAGE_SENT: "text", SURVEY_ANSWERED: "comment"}


def _sentiment_only(event: str | None, props: dict, locale: str | None) -> dict:
    """A support event's properties with its free text replaced by ``<name>_sentiment`` (score, label, lang).

    A ``<name>_sentiment`` the client sent is dropped: only the collector sets it.
    """
    name = _FREE_TEXT.get(event or "")
    if name is None:
        return props
    derived = f"{name}_sentiment"
    text = props.get(name)
    out = {k: v for k, v in props.items() if k != name and k != derived}
    if isinstance(text, str) and text.strip():
        found = score(text, lang_of_locale(locale))
        out[derived] = {"score": found.score, "label": found.label, "lang": found.lang}
    return out


def _check(spec: EventSpec, props: dict) -> dict:
    try:
        return check_properties(spec, props)
    except PropertyError as exc:
        raise _Reject(exc.reason, exc.detail) from None


def _event_time(env: Envelope, received_at_ms: int, batch_sent_at: object) -> tuple[int, int | None]:
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


def _message_id(msg: dict, env: Envelope, tenant: str) -> str:
    if env.messageId is not None:
        return env.messageId
    # A stable content hash, so that an SDK retry of the same message dedups.
    content = {k: v for k, v in msg.items() if k not in _VOLATILE}
    return stable_id(tenant, orjson.dumps(content, option=orjson.OPT_SORT_KEYS).decode())


def _properties(msg: dict, env: Envelope) -> dict:
    props = env.properties or {}
    call = env.type
    if call == "track":
        spec = CATALOG.get(env.event)
        return _check(spec, props) if spec is not None else props
    if call == "page":
        name = text_or_none(msg.get("name"))
        if name is not None and props.get("title") is None:
            props = {**props, "title": name}
        return _check(PAGE, props)
    if call == "screen":
        name = text_or_none(msg.get("name"))
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
        raise _Reject("too_old", f"event time is more than {rules.max_event_age_ms} ms before receipt")
    if event_time_ms > received_at_ms + rules.max_event_future_ms:
        raise _Reject("too_far_future", f"event time is more than {rules.max_event_future_ms} ms after receipt")

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
    scrubber = rules.scrubber
    ip = _text(context.get("ip"))
    if call == "track":
        props = _sentiment_only(env.event, props, _text(context.get("locale")))
    try:
        props = scrubber.value(props)
        if traits:
            traits = scrubber.value(traits)
        kept_context = _kept_context(context, scrubber)
    except TooDeep as exc:
        raise _Reject("schema_violation", f"properties, traits or context {exc}") from None
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
        # A server-side alias names the device by previousId only: that id is the event's
        # anonymous id, so the alias reaches the device's state and links it (docs/identity.md).
        "anonymous_id": env.previousId if call == "alias" and env.anonymousId is None else env.anonymousId,
        "user_id": env.userId,
        "event_time_ms": event_time_ms,
        "received_at_ms": received_at_ms,
        "sent_at_ms": sent_at_ms,
        "session_hint": _text(session),
        "page_path": _scrub_text(scrubber, _text(path) or _text(page.get("path"))),
        "page_url": _scrub_text(scrubber, _text(url) or _text(page.get("url"))),
        "page_referrer": _scrub_text(scrubber, _text(referrer) or _text(page.get("referrer"))),
        "user_agent": _text(context.get("userAgent")),
        "locale": _text(context.get("locale")),
        "ip_hash": scrubber.hash(ip) if ip else None,
        "properties": orjson.dumps(props).decode(),
        "traits": orjson.dumps(traits).decode(),
        "context": kept_context,
    }


def _text(value: object) -> str | None:
    """``text_or_none``, with its commonest case (a string) first: it runs about ten times per event."""
    if value.__class__ is str:
        return value or None
    return None if value is None else text_or_none(value)


def _scrub_text(scrubber: Scrubber, text: str | None) -> str | None:
    return None if text is None else scrubber.text(text)


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
