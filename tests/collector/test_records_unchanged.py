"""The collector's Kafka records for a fixed traffic, byte for byte: what a speed-up must leave unchanged.

The digest below was computed with the collector before its hot path was
rewritten (the pydantic envelope, the phone pattern on every string, no
remembered texts); the rewritten code must give the same bytes for the demo
storefront's traffic and for messages that exercise the rules the traffic
does not (personal data in text, refused envelopes, catalog coercions).
"""

from __future__ import annotations

import hashlib

from pipeline.tools.bench import collector_records
from pipeline.tools.bench_common import RECEIVED_AT_MS, make_traffic
from pipeline.settings import Settings

ODD_MESSAGES = [
    {"type": "track", "event": "Product Viewed", "anonymousId": 12345, "timestamp": "2026-01-05T10:00:00Z",
     "properties": {"product_id": 7, "note": "call +33 6 12 34 56 78 or ann@example.com",
                    "url": "https://x.example/?email=a@b.fr&q=1"}},
    {"type": "page", "userId": "u", "timestamp": "2026-01-05T10:00:00Z",
     "context": {"ip": "10.1.2.3", "device": {"advertisingId": "x", "model": "y"}, "app": {"name": "a"},
                 "traits": {"phone": "0612345678"}},
     "properties": {"path": "/p/06 12 34 56 78"}},
    {"type": "track", "event": 3, "anonymousId": "a"},
    {"type": "nope", "anonymousId": "a"},
    {"type": "identify", "anonymousId": True},
    {"type": "identify", "userId": "u2", "traits": {"email": "B@Example.com", "consent_marketing": "yes"}},
    {"type": "track", "event": "Order Completed", "anonymousId": "z", "properties": {"order_id": 1.0, "total": "12"}},
]  # fmt: skip


def test_the_records_for_a_fixed_traffic_are_the_same_bytes_as_before_the_rewrite() -> None:
    messages, _ = make_traffic(3000, 11)
    settings = Settings(_env_file=None, pii_salt="digest-salt-0123456789", topic_events="e", topic_deadletter="d")
    records, events, dead = collector_records(
        messages + ODD_MESSAGES, settings, partitions=4, received_at_ms=RECEIVED_AT_MS
    )
    digest = hashlib.sha256()
    for topic, partition, key, value in records:
        digest.update(repr((topic, partition, key)).encode())
        digest.update(value)
    assert (len(records), events, dead) == (67, 3199, 15)
    assert digest.hexdigest() == "d14064ce1605170156ffb679351ca046ced04eeacd96baa7e40560e4d9b8c05c"
