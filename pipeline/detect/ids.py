"""Event ids: the first event accepted under a (tenant, id) wins.

An event's ``event_id`` is the SDK's ``messageId`` (or a content hash when
there is none). SDKs resend a message when they are not sure it arrived, so
an id seen again with the same content is a duplicate and is dropped
silently. An id seen again with *different* content is another event that
reuses the id (a buggy SDK, a hand-written integration, an id generator
that repeats): it must not replace the event stored first, and it must not
vanish either. It becomes a ``duplicate_id_conflict`` dead letter.

"The same content" is the event's **fingerprint** (``fingerprint``): a
64-bit hash of what the event says (``FINGERPRINT_KEYS``: type, name,
visitor ids, properties, traits, context, page, session hint, user agent,
locale, ip hash), without its times. An SDK's retry stamps a new
``sentAt``, which moves the corrected event time by the difference in
network delay, and it is received later: ``event_time_ms``, ``sent_at_ms``
and ``received_at_ms`` are left out so that a retry is still a duplicate.

``IdGate`` applies the rule to one worker batch: it is given the
fingerprints ClickHouse already holds for the batch's ids (``stored``) and
remembers the ids it admits, so that two events of one batch that share an
id are judged in batch order whatever their partitions.

ClickHouse's side of the rule (``sinks/ddl/0008_events_first_wins.sql``):
``cx.events`` is a ``ReplacingMergeTree(ver)`` and ``version`` makes the
earliest-received row the highest version, so if two conflicting rows are
ever both written (two workers racing, see docs/guarantees.md), merges and
``FINAL`` keep the first one. A replay writes the same ``ver`` (it is derived
from the record's ``received_at_ms`` and fingerprint only).
"""

from __future__ import annotations

import hashlib
import operator
from typing import Literal, Mapping

import orjson

__all__ = [
    "CONFLICT",
    "DUPLICATE",
    "FINGERPRINT_KEYS",
    "IdGate",
    "NEW",
    "UNKNOWN_FINGERPRINT",
    "Verdict",
    "fingerprint",
    "judge_record",
    "version",
]

# What makes two events with one id "the same event" (every Event field but its times).
FINGERPRINT_KEYS = (
    "tenant", "event_id", "type", "event", "anonymous_id", "user_id", "session_hint", "page_path", "page_url",
    "page_referrer", "user_agent", "locale", "ip_hash", "properties", "traits", "context",
)  # fmt: skip
# Event fields the fingerprint leaves out: a resend changes them.
FINGERPRINT_EXCLUDED = ("event_time_ms", "sent_at_ms", "received_at_ms")

# Stored for rows written before fingerprints existed: the content is unknown,
# so an id found with it is taken as a duplicate (the behaviour before).
UNKNOWN_FINGERPRINT = 0

NEW: Literal["new"] = "new"
DUPLICATE: Literal["duplicate"] = "duplicate"
CONFLICT: Literal["conflict"] = "conflict"
Verdict = Literal["new", "duplicate", "conflict"]

_dumps = orjson.dumps
# Every key's value in one C call: events the collector wrote have them all.
_FINGERPRINT_VALUES = operator.itemgetter(*FINGERPRINT_KEYS)
_blake2b = hashlib.blake2b
_MS_BITS = 42  # received_at_ms < 2**42: until the year 2109
_TIE_BITS = 64 - _MS_BITS
_MS_MAX = (1 << _MS_BITS) - 1
_TIE_MASK = (1 << _TIE_BITS) - 1


def fingerprint(event: Mapping) -> int:
    """The event's content hash, 1 .. 2**64 - 1 (0 is ``UNKNOWN_FINGERPRINT``).

    The ``FINGERPRINT_KEYS`` values as one JSON array (``None`` and an
    absent key alike), hashed: the properties' JSON text as the collector
    wrote it (key order included) counts.
    """
    try:
        values = _FINGERPRINT_VALUES(event)  # a tuple: orjson writes it as the same array
    except KeyError:  # an older record without one of them
        get = event.get
        values = tuple(get(key) for key in FINGERPRINT_KEYS)
    digest = _blake2b(_dumps(values), digest_size=8).digest()
    return int.from_bytes(digest, "big") or 1


def version(received_at_ms: int, fp: int) -> int:
    """``cx.events.ver``: higher for an earlier receipt, so ``ReplacingMergeTree(ver)`` keeps the first.

    The top 42 bits are ``2**42 - 1 - received_at_ms``; the low 22 bits come
    from the fingerprint and only order two different events received in
    the same millisecond (deterministically: a replay of either writes the
    same value). Two rows of one event (a replay, a resend in the same
    millisecond) have one version; ClickHouse keeps either, they are equal
    but for their times.
    """
    ms = min(max(received_at_ms, 0), _MS_MAX)
    return ((_MS_MAX - ms) << _TIE_BITS) | (fp & _TIE_MASK)


class IdGate:
    """Judges a window's events by id, in offset order: new, duplicate, or conflict.

    ``stored`` (and later ``add_stored``) maps ``(tenant, event_id)`` to the
    fingerprint ClickHouse holds for it (the winning row's), for the ids
    looked up that are stored; ids absent from it are not stored. The
    worker keeps one gate per window of records, and the previous window's
    ids stay known until its rows are surely stored.
    """

    __slots__ = ("_known", "_previous")

    def __init__(self, stored: Mapping[tuple[str, str], int] | None = None, previous: "IdGate | None" = None) -> None:
        """``previous``: the gate of the window before, whose ids are known to this one as well (its own only)."""
        self._known: dict[tuple[str, str], int] = dict(stored or {})
        self._previous: dict[tuple[str, str], int] = previous._known if previous is not None else {}

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self._known or key in self._previous

    def add_stored(self, stored: Mapping[tuple[str, str], int]) -> None:
        """Fingerprints looked up in ClickHouse for ids the gate has not judged yet (it keeps what it knows)."""
        known, previous = self._known, self._previous
        for key, fp in stored.items():
            if key not in previous:
                known.setdefault(key, fp)

    def judge(self, tenant: str, event_id: str, fp: int) -> Verdict:
        """The verdict for one event; a ``new`` id is remembered with ``fp`` for the rest of the batch.

        ``duplicate`` when the id is known with the same fingerprint, or
        with ``UNKNOWN_FINGERPRINT`` (a row stored before fingerprints);
        ``conflict`` when it is known with another one.
        """
        key = (tenant, event_id)
        known = self._known.get(key)
        if known is None:
            known = self._previous.get(key)
        if known is None:
            self._known[key] = fp
            return NEW
        if known == fp or known == UNKNOWN_FINGERPRINT:
            return DUPLICATE
        return CONFLICT


def judge_record(gate: IdGate, events: list[dict]) -> tuple[list[dict], list[tuple[int, dict, int]]]:
    """One record's events through ``gate``: (the events kept, the conflicts as (index, event, fingerprint)).

    Each event gets its fingerprint as ``payload_hash`` (``sinks.rows``
    stores it); the list kept is ``events`` itself when nothing conflicts.
    """
    kept = events
    conflicts: list[tuple[int, dict, int]] = []
    judge = gate.judge
    for i, event in enumerate(events):
        fp = event["payload_hash"] = fingerprint(event)
        if judge(event["tenant"], event["event_id"], fp) == CONFLICT:
            if kept is events:
                kept = events[:i]
            conflicts.append((i, event, fp))
        elif kept is not events:
            kept.append(event)
    return kept, conflicts
