"""Hypothesis strategies for the fuzz suite: JSON of every shape, request bodies, Kafka records.

Values are built to reach the pipeline's limits and go past them: nesting up
to and beyond the scrubber's ``MAX_DEPTH`` (64) and ``MAX_JSON_DEPTH`` (250,
and orjson's 1024), strings of every Unicode category, integers past 64 bits,
bytes that are not UTF-8, gzip that does not inflate.

Ids that the checks look for later are made of letters only: digits could
look like a phone number to the scrubber, which would rewrite them in a dead
letter's payload.
"""

from __future__ import annotations

import gzip
import itertools
import json
import string

import orjson
from hypothesis import strategies as st

from pipeline.collector.catalog import CATALOG
from pipeline.collector.pii import MAX_DEPTH as SCRUB_DEPTH
from pipeline.wire.records import MAX_JSON_DEPTH

__all__ = [
    "SCRUB_DEPTH",
    "letters_id",
    "json_values",
    "deep",
    "raw_bodies",
    "good_messages",
    "bad_messages",
    "topic_records",
    "deadletter_records",
]

_counter = itertools.count()


def letters_id(prefix: str) -> str:
    """A new id, unique in this process, of letters only (``prefix`` + base-26 counter)."""
    n = next(_counter)
    out = ""
    while True:
        n, r = divmod(n, 26)
        out = string.ascii_lowercase[r] + out
        if n == 0:
            break
    return f"{prefix}{out}"


# Text: any Unicode a JSON string can carry (no lone surrogates: orjson cannot write them).
text = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
odd_text = st.one_of(
    text,
    st.sampled_from(["NaN", "Infinity", "-Infinity", "null", "true", "undefined", "1e999", "\u0000", "\ufeff",
                     "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "\u202e", "a\u0301", "\\u0000", "%00", "' OR 1=1 --", "{{7*7}}", "${jndi:x}"]),
    st.integers(0, 4000).map(lambda n: "x" * n),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),  # orjson writes and reads every int in i64 .. u64
    st.floats(allow_nan=False, allow_infinity=False),
    odd_text,
)


def json_values(max_leaves: int = 20) -> st.SearchStrategy:
    """Arbitrary JSON (Python values orjson can write), a few levels deep."""
    return st.recursive(
        scalars,
        lambda children: st.one_of(st.lists(children, max_size=5), st.dictionaries(text, children, max_size=5)),
        max_leaves=max_leaves,
    )


def deep(depth: int, leaf: object = 1) -> object:
    """``leaf`` wrapped in ``depth`` containers, alternating list and object (built without recursion)."""
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


# Depths around every limit: the scrubber's, the pipeline's, orjson's writer (254) and reader (1024).
limit_depths = st.sampled_from(
    [SCRUB_DEPTH - 1, SCRUB_DEPTH, SCRUB_DEPTH + 1, MAX_JSON_DEPTH - 2, MAX_JSON_DEPTH - 1, MAX_JSON_DEPTH,
     MAX_JSON_DEPTH + 1, 254, 255, 1023, 1024, 1025, 5000]
)


def deep_text(depth: int, opener: str = "[") -> bytes:
    """JSON text nested ``depth`` deep (past what orjson writes: built as text)."""
    closer = "]" if opener == "[" else "}"
    if opener == "[":
        return (opener * depth + "1" + closer * depth).encode()
    return ('{"k":' * depth + "1" + closer * depth).encode()


def _gzip_members(data: bytes) -> bytes:
    half = len(data) // 2
    return gzip.compress(data[:half]) + gzip.compress(data[half:])


@st.composite
def raw_bodies(draw: st.DrawFn) -> tuple[bytes, dict[str, str]]:
    """(body bytes, extra headers): what any client could post."""
    kind = draw(st.sampled_from(["json", "batch", "single", "deep", "bytes", "text", "huge", "numbers"]))
    if kind == "json":
        body = orjson.dumps(draw(json_values()))
    elif kind == "batch":
        batch = draw(st.one_of(st.lists(json_values(), max_size=6), json_values()))
        top = {"batch": batch}
        for key in draw(st.lists(st.sampled_from(["context", "sentAt", "writeKey", "integrations"]), max_size=3)):
            top[key] = draw(json_values(5))
        body = orjson.dumps(top)
    elif kind == "single":
        msg = draw(st.dictionaries(st.sampled_from(ENVELOPE_FIELDS + ["name", "integrations", "x"]), json_values(6)))
        body = orjson.dumps(msg)
    elif kind == "deep":
        depth = draw(limit_depths)
        where = draw(st.sampled_from(["body", "batch", "properties", "context"]))
        if where == "body" or depth > 254:
            body = deep_text(depth, draw(st.sampled_from(["[", "{"])))
            if where != "body":  # the deep value inside a batch message, as text
                inner = body.decode()
                body = ('{"batch":[{"type":"track","event":"Deep","anonymousId":"a","properties":{"d":' + inner + "}}]}").encode()
        else:
            msg = {"type": "track", "event": "Deep", "anonymousId": "a", where: {"d": deep(depth)}}
            if where == "batch":
                msg = deep(depth - 2, msg)
            body = _dumps({"batch": [msg]})
    elif kind == "bytes":
        body = draw(st.binary(max_size=300))
    elif kind == "text":
        body = draw(st.sampled_from([
            b"", b"null", b"NaN", b'{"batch": NaN}', b'{"batch": [Infinity]}', b"\xef\xbb\xbf{}", b"\xef\xbb\xbf",
            b'{"batch": [{"type": "track", "event": "x", "anonymousId": "a", "properties": {"n": 1e999}}]}',
            b'{"a": 1,}', b"{'batch': []}", b'{"batch": []} trailing', b'{"batch": [\xff]}', b"\x00" * 10,
            b'{"batch": [], "batch": 5}', b'{"\\ud800": 1}', b'"\\ud800"', b'{"batch":[{"type":"\\ud800"}]}',
        ]))
    elif kind == "huge":
        size = draw(st.sampled_from([33 * 1024, 64 * 1024 + 1, 500 * 1024 - 10, 500 * 1024 + 1, 700 * 1024]))
        filler = draw(st.sampled_from(["a", "é", "\U0001f600"]))
        body = orjson.dumps({"batch": [{"type": "track", "event": "Huge", "anonymousId": "a",
                                        "properties": {"s": filler * (size // len(filler.encode()))}}]})
    else:  # numbers that are not 64-bit or not finite, as text
        n = draw(st.sampled_from(["1" * 30, "-" + "9" * 25, "18446744073709551616", "1e400", "-0", "0.1e-400", "1E+2"]))
        body = ('{"batch":[{"type":"track","event":"Num","anonymousId":' + n + ',"properties":{"n":' + n + "}}]}").encode()
    headers: dict[str, str] = {}
    encoding = draw(st.sampled_from(["plain", "plain", "gzip", "gzip-members", "gzip-truncated", "gzip-garbage",
                                     "gzip-bomb", "other"]))
    if encoding == "gzip":
        body, headers["Content-Encoding"] = gzip.compress(body), draw(st.sampled_from(["gzip", "x-gzip", "GZIP"]))
    elif encoding == "gzip-members":
        body, headers["Content-Encoding"] = _gzip_members(body), "gzip"
    elif encoding == "gzip-truncated":
        packed = gzip.compress(body)
        body, headers["Content-Encoding"] = packed[: draw(st.integers(0, max(0, len(packed) - 1)))], "gzip"
    elif encoding == "gzip-garbage":
        body, headers["Content-Encoding"] = gzip.compress(body) + draw(st.binary(min_size=1, max_size=20)), "gzip"
    elif encoding == "gzip-bomb":
        body, headers["Content-Encoding"] = gzip.compress(b" " * (600 * 1024) + body), "gzip"
    elif encoding == "other":
        headers["Content-Encoding"] = draw(st.sampled_from(["br", "deflate", "compress", "gzip, gzip", "\u00e9"]))
    headers["Content-Type"] = draw(st.sampled_from(
        ["application/json", "text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
         "multipart/form-data", "", "application/json; charset=latin-1"]))
    return body, headers


GOOD_MESSAGE_MAX_BYTES = 24 * 1024

# Every field of Segment's envelope that the collector reads.
ENVELOPE_FIELDS = ["type", "event", "anonymousId", "userId", "messageId", "groupId", "previousId", "timestamp",
                   "originalTimestamp", "sentAt", "properties", "traits", "context"]
_NOT_CATALOG = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=30).filter(
    lambda name: name not in CATALOG and name.strip() != "" and name not in ("Support Message Sent", "Survey Answered")
)


def _shallow_json(max_leaves: int = 12) -> st.SearchStrategy:
    """JSON objects the scrubber accepts (well under its depth limit), with any keys and values."""
    return st.dictionaries(text, json_values(max_leaves), max_size=6)


@st.composite
def good_messages(draw: st.DrawFn, message_id: str) -> dict:
    """A Segment message the collector must accept and the worker must store (event name outside the catalog).

    Properties, traits and context are arbitrary objects within the scrubber's depth, sometimes nested right
    up to it.
    """
    msg: dict = {"type": "track", "event": "Fuzz " + draw(_NOT_CATALOG), "messageId": message_id}
    who = draw(st.sampled_from(["anonymousId", "userId", "both"]))
    ident = draw(st.one_of(st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=30),
                           st.integers(-(2**63), 2**63 - 1)))
    if who in ("anonymousId", "both"):
        msg["anonymousId"] = ident
    if who in ("userId", "both"):
        msg["userId"] = ident
    for name in ("properties", "traits", "context"):
        if draw(st.booleans()):
            msg[name] = draw(_shallow_json())
    if draw(st.booleans()):  # as deep as the scrubber allows: the message then nests SCRUB_DEPTH + 1
        msg["properties"] = {"d": deep(SCRUB_DEPTH - 2)}
    for name in draw(st.lists(st.sampled_from(["x", "integrations", "channel", "version", "_metadata"]), max_size=3)):
        msg[name] = draw(json_values(5))
    for name in ("x", "integrations", "channel", "version", "_metadata", "context", "traits", "properties"):
        if len(orjson.dumps(msg)) <= GOOD_MESSAGE_MAX_BYTES:
            break
        msg.pop(name, None)  # kept under Segment's 32 KB per event: a bigger one refuses the whole request
    return msg


def _not(kinds: tuple[type, ...]) -> st.SearchStrategy:
    """Any JSON value whose Python type is none of ``kinds`` (bool is not an int here)."""
    return json_values(6).filter(lambda v: not isinstance(v, kinds) or (isinstance(v, bool) and bool not in kinds))


# For each envelope field: values the envelope refuses, and the dead-letter reason it gives.
_WRONG = {
    "type": (st.one_of(_not((str,)), text.filter(lambda t: t not in ("track", "page", "identify", "screen", "group", "alias"))), "unknown_type"),
    "event": (st.one_of(_not((str, type(None))), st.just("")), "schema_violation"),
    "anonymousId": (_not((str, int, float, type(None))), "schema_violation"),
    "messageId": (_not((str, int, float, type(None))), "schema_violation"),
    "groupId": (_not((str, int, float, type(None))), "schema_violation"),
    "previousId": (_not((str, int, float, type(None))), "schema_violation"),
    "timestamp": (st.one_of(_not((str, type(None))), st.sampled_from(["yesterday", "2026-13-45T99:00:00Z", "NaN", "1e9"])), "schema_violation"),
    "originalTimestamp": (_not((str, type(None))), "schema_violation"),
    "sentAt": (_not((str, type(None))), "schema_violation"),
    "properties": (_not((dict, type(None))), "schema_violation"),
    "traits": (_not((dict, type(None))), "schema_violation"),
    "context": (_not((dict, type(None))), "schema_violation"),
}


@st.composite
def bad_messages(draw: st.DrawFn, message_id: str) -> tuple[dict, str]:
    """(message, the field made wrong): a good message with one envelope field the collector must refuse.

    The message keeps ``message_id`` somewhere a dead letter's payload shows it (``messageId``, or
    ``x`` when ``messageId`` itself is the wrong field).
    """
    msg = draw(good_messages(message_id))
    field = draw(st.sampled_from([*_WRONG, "no-id", "too-deep-for-scrubber", "too-deep", "too-old"]))
    if field == "no-id":
        msg.pop("anonymousId", None)
        msg["userId"] = draw(st.sampled_from([None, ""]))
    elif field == "too-deep-for-scrubber":  # properties past the scrubber's depth, within MAX_JSON_DEPTH
        msg["properties"] = {"d": deep(draw(st.integers(SCRUB_DEPTH, MAX_JSON_DEPTH - 3)))}
    elif field == "too-deep":  # the message past MAX_JSON_DEPTH, the request still within what orjson writes (254)
        msg["properties"] = {"d": deep(draw(st.integers(MAX_JSON_DEPTH - 1, MAX_JSON_DEPTH)))}
    elif field == "too-old":
        msg["timestamp"] = draw(st.sampled_from(["1970-01-01T00:00:00Z", "2000-01-01T00:00:00.000Z", "9999-12-31T23:59:59Z"]))
    else:
        strategy, _ = _WRONG[field]
        msg[field] = draw(strategy)
        if field == "messageId":
            msg["x"] = message_id
        if field == "event" and msg[field] is None:
            msg[field] = ""
    return msg, field


# -- Kafka records ------------------------------------------------------------------------------------------

EVENT_FIELDS = ["event", "anonymous_id", "user_id", "sent_at_ms", "session_hint", "page_path", "page_url",
                "page_referrer", "user_agent", "locale", "ip_hash", "properties", "traits", "context"]


def valid_event(tenant: str, event_id: str, now_ms: int) -> dict:
    """An event as the collector writes it into an EventBatch record (``schemas/event.avsc``)."""
    return {
        "event_id": event_id, "tenant": tenant, "type": "track", "event": "Fuzz Record", "anonymous_id": "a",
        "user_id": None, "event_time_ms": now_ms, "received_at_ms": now_ms, "sent_at_ms": None,
        "session_hint": None, "page_path": None, "page_url": None, "page_referrer": None, "user_agent": None,
        "locale": None, "ip_hash": None, "properties": "{}", "traits": "{}", "context": "{}",
    }


def _dumps(value: object) -> bytes:
    """JSON text of ``value``: orjson, or the standard library past orjson's limits (depth, big ints)."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value).encode()


@st.composite
def mutated_event(draw: st.DrawFn, tenant: str, event_id: str, now_ms: int) -> dict:
    """A valid event with some optional fields (never the required ones) set to arbitrary JSON."""
    event = valid_event(tenant, event_id, now_ms)
    event["type"] = draw(st.sampled_from(["track", "page", "identify", "screen", "group", "alias"]))
    for name in draw(st.lists(st.sampled_from(EVENT_FIELDS), max_size=5, unique=True)):
        event[name] = draw(st.one_of(
            json_values(8),
            st.builds(lambda v: orjson.dumps(v).decode(), json_values(8)),  # a JSON text, as the collector writes
            limit_depths.map(lambda d: deep_text(d).decode()),  # JSON text nested around every limit
        ))
    time_shift = draw(st.sampled_from([0, 0, 0, -1, 1, -(2**40), 2**40]))
    event["event_time_ms"] = now_ms + time_shift
    for name in draw(st.lists(st.sampled_from(["x", "props", "session_id", "cart_key"]), max_size=2, unique=True)):
        event[name] = draw(json_values(5))
    return event


@st.composite
def topic_records(draw: st.DrawFn, tenant: str, now_ms: int) -> tuple[bytes | None, list[str]]:
    """(record value, the ids of its events) for the events topic; which records the worker accepts is its call."""
    kind = draw(st.sampled_from(["bytes", "json", "events-any", "deep", "broken-required", "mutated", "mutated"]))
    if kind == "bytes":  # None: a record without a value (a tombstone)
        return draw(st.one_of(st.none(), st.binary(max_size=200))), []
    if kind == "json":
        return _dumps(draw(json_values())), []
    if kind == "events-any":
        return _dumps({"events": draw(st.one_of(json_values(), st.lists(json_values(), max_size=4)))}), []
    if kind == "deep":
        depth = draw(limit_depths)
        if draw(st.booleans()):
            return deep_text(depth), []
        event = valid_event(tenant, letters_id("fzdeep"), now_ms)
        event["properties"] = deep_text(depth, draw(st.sampled_from(["[", "{"]))).decode()
        return orjson.dumps({"events": [event]}), [event["event_id"]]
    count = draw(st.integers(1, 4))
    events = [draw(mutated_event(tenant, letters_id("fzrec"), now_ms)) for _ in range(count)]
    if kind == "broken-required":  # one required field missing or of another type: the record is refused whole
        victim = draw(st.sampled_from(events))
        name = draw(st.sampled_from(["tenant", "event_id", "type", "event_time_ms", "received_at_ms"]))
        if draw(st.booleans()):
            del victim[name]
        else:
            kinds = (int,) if name.endswith("_ms") else (str,)
            victim[name] = draw(st.one_of(_not(kinds), st.floats(allow_nan=False, allow_infinity=False)).filter(
                lambda v: type(v) not in kinds))
    ids = [e["event_id"] for e in events if isinstance(e.get("event_id"), str)]
    return _dumps({"events": events}), ids


@st.composite
def deadletter_records(draw: st.DrawFn, now_ms: int) -> bytes | None:
    """A record for the dead-letter topic: bytes, JSON, or a dead letter with fields of other types."""
    kind = draw(st.sampled_from(["bytes", "json", "mutated", "valid"]))
    if kind == "bytes":
        return draw(st.one_of(st.none(), st.binary(max_size=200)))
    if kind == "json":
        return _dumps(draw(json_values()))
    record = {"dl_id": letters_id("fzdl"), "tenant": draw(st.one_of(st.none(), text)), "reason": "bad_json",
              "detail": draw(odd_text), "payload": draw(odd_text), "received_at_ms": now_ms, "source": "collector"}
    if kind == "mutated":
        for name in draw(st.lists(st.sampled_from([*record, "extra"]), min_size=1, max_size=3, unique=True)):
            record[name] = draw(json_values(6))
    return _dumps(record)
