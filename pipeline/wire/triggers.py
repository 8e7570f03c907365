"""Trigger records on ``cx.triggers`` (docs/events.md): their public field names, JSON or Avro.

Inside the pipeline a trigger is a dict with millisecond fields
(``event_time_ms``, ``emitted_at_ms``, ``offer.expires_at_ms``) plus the
internal ``cart_key``. On Kafka it is the public record of
``schemas/trigger.avsc``: times are epoch milliseconds named ``event_time``,
``emitted_at`` and ``offer.expires_at`` (Avro logical type timestamp-millis).
"""

from __future__ import annotations

import io

import fastavro
import orjson

from pipeline.settings import Settings
from schemas import load_schema

__all__ = ["to_record", "encode_trigger", "decode_trigger", "trigger_key"]

_INTERNAL = ("cart_key",)


def to_record(trigger: dict) -> dict:
    """The public record (docs/events.md) for an internal trigger dict."""
    rec = {k: v for k, v in trigger.items() if k not in _INTERNAL}
    rec["event_time"] = rec.pop("event_time_ms")
    rec["emitted_at"] = rec.pop("emitted_at_ms")
    offer = rec.get("offer")
    if offer is not None:
        offer = dict(offer)
        offer["expires_at"] = offer.pop("expires_at_ms")
        rec["offer"] = offer
    return rec


def trigger_key(trigger: dict) -> bytes:
    """Record key: the customer id, else the anonymous id (docs/events.md)."""
    return (trigger.get("customer_id") or trigger.get("anonymous_id") or "").encode()


def encode_trigger(trigger: dict, settings: Settings) -> bytes:
    """Serialize for ``cx.triggers`` in ``settings.trigger_format``.

    ``avro`` is the plain Avro binary of ``schemas/trigger.avsc`` (no
    registry framing): consumers decode it with that schema file.
    """
    record = to_record(trigger)
    if settings.trigger_format == "json":
        return orjson.dumps(record)
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, load_schema("trigger"), record)
    return buf.getvalue()


def decode_trigger(value: bytes, fmt: str = "json") -> dict:
    """Inverse of ``encode_trigger`` (for consumers, tests and the demo)."""
    if fmt == "json":
        return orjson.loads(value)
    return fastavro.schemaless_reader(io.BytesIO(value), load_schema("trigger"))
