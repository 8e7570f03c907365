"""A corpus of hostile input, the way a broken storefront or an attacker sends it.

``batch_poison`` are messages inside well-formed batches: each ends either in
``cx.deadletter`` with a typed reason or stored as harmless text (the
collector's own ``normalize`` decides, and the reference run uses it too).
``raw_poison`` are request bodies that are not JSON at all, and
``oversize_event`` one event over 32 KB sent on its own: each such request
is a 400 and one dead letter. ``INJECTIONS`` are stored verbatim as text wherever
they appear: no SQL is ever built from event values.
"""

from __future__ import annotations

__all__ = ["INJECTIONS", "batch_poison", "oversize_event", "raw_poison"]

INJECTIONS = (
    "'; DROP TABLE cx.events; --",
    "1' OR '1'='1",
    "<script>alert('cx')</script>",
    "\\'; SELECT * FROM system.users; --",
    "{{7*7}} ${jndi:ldap://x/a}",
)



def batch_poison(ts: str) -> list[dict]:
    """Hostile messages with timestamp ``ts`` (inside the accepted window unless the case is the time)."""
    deep: dict = {"leaf": 1}
    for _ in range(200):
        deep = {"d": deep}
    msgs: list = [
        # wrong types, NaN-like strings, negative and absurd amounts
        {"type": "track", "event": "Product Added", "anonymousId": "poison-1",
         "properties": {"product_id": "p", "price": "NaN"}},
        {"type": "track", "event": "Product Added", "anonymousId": "poison-1",
         "properties": {"product_id": "p", "price": -5}},
        {"type": "track", "event": "Product Viewed", "anonymousId": "poison-1",
         "properties": {"product_id": "p", "price": 1e308}},
        {"type": "track", "event": "Order Completed", "anonymousId": "poison-1",
         "properties": {"order_id": ["o"], "total": {"$gt": 0}}},
        {"type": "track", "event": "Product Viewed", "anonymousId": "poison-1",
         "properties": {"product_id": True}},
        # envelope violations
        {"type": "exec", "event": "x", "anonymousId": "poison-2"},
        {"type": "track", "event": "Cart Viewed"},  # no user or anonymous id
        {"type": "track", "event": 42, "anonymousId": "poison-2"},
        {"type": "track", "event": "Cart Viewed", "anonymousId": "poison-2", "properties": ["not", "an", "object"]},
        "a string where a message belongs",
        None,
        # times outside the window
        {"type": "track", "event": "Cart Viewed", "anonymousId": "poison-3", "timestamp": "2999-01-01T00:00:00Z"},
        {"type": "track", "event": "Cart Viewed", "anonymousId": "poison-3", "timestamp": "1970-01-01T00:00:00Z"},
        {"type": "track", "event": "Cart Viewed", "anonymousId": "poison-3", "timestamp": "yesterday-ish"},
        # big but legal: stored as text
        {"type": "track", "event": "Unknown Thing Happened", "anonymousId": "poison-4",
         "properties": {"blob": "x" * 20_000}},
        {"type": "track", "event": "Unknown Thing Happened", "anonymousId": "poison-4",
         "properties": {"list": list(range(2_000))}},
        {"type": "track", "event": "Unknown Thing Happened", "anonymousId": "poison-4", "properties": deep},
        {"type": "page", "anonymousId": "poison-4", "properties": {"path": "/\u0000\u202e\ud7ff/é/😀"}},
    ]
    for i, text in enumerate(INJECTIONS):
        msgs.append({"type": "track", "event": text, "anonymousId": text, "userId": text,
                     "properties": {"path": text, "query": text, "product_id": text},
                     "context": {"page": {"path": text}}, "messageId": f"inject-{i}"})
        msgs.append({"type": "page", "anonymousId": f"poison-6-{i}", "name": text,
                     "properties": {"path": text, "title": text}, "messageId": f"inject-page-{i}"})
    out = []
    for i, m in enumerate(msgs):
        if isinstance(m, dict):
            m = {"timestamp": ts, **m}
            m.setdefault("messageId", f"poison-{i}")
        out.append(m)
    return out


def oversize_event(ts: str) -> dict:
    """One event over 32 KB: Segment refuses its whole request (400); it is kept as a dead letter."""
    return {"type": "track", "event": "Unknown Thing Happened", "anonymousId": "poison-5", "timestamp": ts,
            "messageId": "poison-oversize", "properties": {"blob": "y" * 40_000}}


def raw_poison() -> list[bytes]:
    """Whole request bodies that cannot be read as JSON."""
    return [
        b'{"batch": [{"type": "track", "event": "Cart Viewed", "anonymousId": "r1", "properties": {"v": NaN}}]}',
        b'{"batch": [{"type": "track", "event": "Cart Viewed", "anonymousId": "r2", "properties": {"v": Infinity}}]}',
        b'{"batch": [{"type": "track", "event": "Cart Viewed", "anonymousId": "r3"',
        b"\xff\xfe\x00garbage \xc3\x28 not utf-8",
        b"[1, 2, 3]",
    ]
