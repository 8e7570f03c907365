"""A decoded request body -> normalized events and dead letters (pure, no I/O).

Runs in the request handler after authentication. Each message is checked
on its own: an invalid one becomes a dead letter and the others go on. A
message nested deeper than ``MAX_JSON_DEPTH`` is a ``bad_json`` dead letter
(its payload cut at that depth) like any other invalid one. An event over
Segment's 32 KB limit is different: the whole request is
refused with 400 (as Segment does), so ``oversize`` is reported apart and
the caller produces nothing but those dead letters.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

from pipeline.collector.body import MAX_EVENT_BYTES
from pipeline.collector.normalize import DeadLetterDecision, NormalizeRules, normalize
from pipeline.wire.records import MAX_JSON_DEPTH, DeadLetter, dead_letter, error_detail, json_depth_exceeds, truncate_depth

__all__ = ["Ingested", "RequestError", "ingest", "messages_of"]


class RequestError(ValueError):
    """The body is JSON but not a Segment request (e.g. ``batch`` is not a list)."""


@dataclass(slots=True)
class Ingested:
    """What one request yields: events in arrival order, dead letters, oversize events."""

    events: list[dict] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    oversize: list[DeadLetter] = field(default_factory=list)
    # (the message's ``type`` as sent, outcome: "accepted", "dead_letter" or "oversize") -> messages
    outcomes: dict[tuple[object, str], int] = field(default_factory=dict)

    def count(self, msg: object, outcome: str) -> None:
        kind = msg.get("type") if isinstance(msg, dict) else None
        key = (kind if isinstance(kind, str) else None, outcome)
        self.outcomes[key] = self.outcomes.get(key, 0) + 1


def messages_of(body: dict, call: str | None) -> tuple[list, object]:
    """(messages, batch sentAt) of a request body; ``call`` is the path's type, None for batch.

    A single call's path sets ``type`` when the body has none; ``writeKey``
    is dropped from it. A batch's
    top-level ``context`` applies to each message (the message's own keys win).
    """
    if call is not None:
        # The write key authenticated the request; it is not part of the event
        # (and must not travel on into dead-letter payloads).
        msg = {k: v for k, v in body.items() if k != "writeKey"}
        msg.setdefault("type", call)
        return [msg], None
    batch = body.get("batch")
    if not isinstance(batch, list):
        raise RequestError("batch must be a JSON array of messages")
    shared = body.get("context")
    if isinstance(shared, dict) and shared:
        batch = [
            {**m, "context": {**shared, **m["context"]} if isinstance(m.get("context"), dict) else shared}
            if isinstance(m, dict)
            else m
            for m in batch
        ]
    return batch, body.get("sentAt")


def ingest(
    messages: list,
    *,
    tenant: str,
    received_at_ms: int,
    batch_sent_at: object,
    rules: NormalizeRules,
) -> Ingested:
    """Normalize each message; invalid ones become dead letters with their JSON, scrubbed of personal data."""
    out = Ingested()
    for msg in messages:
        try:
            raw = orjson.dumps(msg)
        except TypeError:  # orjson writes at most 254 levels
            raw = None
        if raw is None or (
            raw.count(b"{") + raw.count(b"[") > MAX_JSON_DEPTH and json_depth_exceeds(msg, MAX_JSON_DEPTH)
        ):
            out.dead_letters.append(
                dead_letter(
                    tenant=tenant,
                    reason="bad_json",
                    detail=f"message nested deeper than {MAX_JSON_DEPTH} levels",
                    # Scrubbed like every dead letter's payload (as text: it is deeper than the scrubber walks).
                    payload=rules.scrubber.payload(orjson.dumps(truncate_depth(msg))),
                    received_at_ms=received_at_ms,
                )
            )
            out.count(msg, "dead_letter")
            continue
        if len(raw) > MAX_EVENT_BYTES:
            out.oversize.append(
                dead_letter(
                    tenant=tenant,
                    reason="oversize",
                    detail=f"event is {len(raw)} bytes, over the {MAX_EVENT_BYTES // 1024} KB limit",
                    payload=rules.scrubber.payload(raw),
                    received_at_ms=received_at_ms,
                )
            )
            out.count(msg, "oversize")
            continue
        try:
            result = normalize(
                msg, tenant=tenant, received_at_ms=received_at_ms, batch_sent_at=batch_sent_at, rules=rules
            )
        except Exception as exc:  # noqa: BLE001 - a message no rule foresaw: kept, never a 500
            result = DeadLetterDecision("processing_error", error_detail(exc))
        if isinstance(result, DeadLetterDecision):
            out.dead_letters.append(
                dead_letter(
                    tenant=tenant,
                    reason=result.reason,
                    detail=result.detail,
                    payload=rules.scrubber.payload(raw),
                    received_at_ms=received_at_ms,
                )
            )
            out.count(msg, "dead_letter")
        else:
            out.events.append(result)
            out.count(msg, "accepted")
    return out
