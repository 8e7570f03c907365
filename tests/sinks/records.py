"""Builders for the dicts the worker hands to the sink, with only the fields a test cares about."""

from __future__ import annotations

from datetime import datetime, timezone

import orjson

__all__ = ["ms", "event", "trigger", "deadletter"]


def ms(iso: str) -> int:
    """Epoch ms of an ISO time read as UTC, e.g. ``ms('2024-03-10 23:59:59.500')``."""
    return int(datetime.fromisoformat(iso).replace(tzinfo=timezone.utc).timestamp() * 1000)


def event(
    tenant: str,
    event_id: str,
    at: str,
    name: str | None,
    session_id: str,
    *,
    cart_key: str = "",
    props: dict | None = None,
    call: str = "track",
    traits: dict | None = None,
) -> dict:
    """A worker event dict: the Avro fields plus ``session_id``, ``cart_key`` and parsed ``props``."""
    props = props or {}
    t = ms(at)
    return {
        "event_id": event_id,
        "tenant": tenant,
        "type": call,
        "event": name,
        "anonymous_id": f"anon-{session_id}",
        "user_id": None,
        "event_time_ms": t,
        "received_at_ms": t + 150,
        "sent_at_ms": t + 100,
        "session_hint": None,
        "page_path": "/checkout" if name == "Order Completed" else "/",
        "page_url": None,
        "page_referrer": None,
        "user_agent": "Mozilla/5.0",
        "locale": "en-US",
        "ip_hash": "iphash-1",
        "properties": orjson.dumps(props).decode(),
        "traits": orjson.dumps(traits or {}).decode(),
        "session_id": session_id,
        "cart_key": cart_key,
        "props": props,
    }


def trigger(tenant: str, trigger_id: str, at: str, cart_key: str, *, kind: str = "cart_abandoned") -> dict:
    """A pipeline trigger dict (millisecond field names) without an offer."""
    t = ms(at)
    return {
        "trigger_id": trigger_id,
        "kind": kind,
        "tenant": tenant,
        "customer_id": None,
        "anonymous_id": "anon-x",
        "session_id": "s-x",
        "cart_id": None,
        "cart_key": cart_key,
        "cart_value": 40.0,
        "currency": "EUR",
        "items": [{"product_id": "p-1", "name": "Mug", "price": 20.0, "quantity": 2}],
        "event_time_ms": t,
        "emitted_at_ms": t + 2_000,
        "reasons": ["inactive_30m"],
        "friction_score": 0,
        "action": "none",
        "offer": None,
        "holdout": True,
        "experiment": "default",
        "ref_trigger_id": None,
    }


def deadletter(tenant: str | None, dl_id: str, at: str, reason: str, payload: str = "{}") -> dict:
    return {
        "dl_id": dl_id,
        "tenant": tenant,
        "reason": reason,
        "detail": f"{reason} at test",
        "payload": payload,
        "received_at_ms": ms(at),
        "source": "collector",
    }
