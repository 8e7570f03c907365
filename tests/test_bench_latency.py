"""``cxstream bench``'s live latency per trigger kind, and the customer stage's share of abandonments."""

from __future__ import annotations

from pipeline.tools.bench_live import trigger_latency


def test_customer_decided_abandonments_are_also_counted_apart() -> None:
    seen = [
        (1_500, {"kind": "cart_abandoned", "event_time": 1_000, "customer_id": "u-1"}),  # 500 ms, customer stage
        (1_200, {"kind": "cart_abandoned", "event_time": 1_000, "customer_id": None}),  # 200 ms, anonymous
        (1_050, {"kind": "checkout_friction", "event_time": 1_000, "customer_id": "u-1"}),  # 50 ms
    ]
    latency = trigger_latency(seen)
    assert latency["cart_abandoned"]["count"] == 2
    assert latency["cart_abandoned_customer"] == {"count": 1, "p50_ms": 500, "p99_ms": 500, "max_ms": 500}
    assert latency["checkout_friction"] == {"count": 1, "p50_ms": 50, "p99_ms": 50, "max_ms": 50}
