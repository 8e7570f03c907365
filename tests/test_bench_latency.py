"""``cxstream bench``'s live latency per trigger kind, and the customer stage's share of abandonments."""

from __future__ import annotations

from pipeline.tools.bench_live import CUSTOMER_STAGES, STAGES, customer_stages, trigger_latency, trigger_stages


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


FIELDS = ["trigger_id", "kind", "received_ms", "record_ms", "taken_ms", "looked_up_ms", "sent_ms"]


def test_trigger_stages_split_event_to_trigger_into_parts_that_add_up() -> None:
    # Sent by the client at 1,000; received 1,002; produced 1,003; taken 1,050; looked up 1,060;
    # handed to Kafka 1,065; read from cx.triggers 1,080: 80 ms in all.
    times = {"fields": FIELDS, "triggers": [
        ["t-1", "checkout_friction", 1_002, 1_003, 1_050, 1_060, 1_065],
        ["t-2", "support_risk", 2_010, 2_012, 2_112, 2_142, 2_150],
        ["t-gone", "checkout_friction", 3_000, 3_001, 3_002, 3_003, 3_004],  # never arrived: left out
        ["t-cart", "cart_abandoned", 4_000, 4_001, 4_002, 4_003, 4_004],  # event_time is a deadline: left out
    ]}
    seen = [
        (1_080, {"trigger_id": "t-1", "kind": "checkout_friction", "event_time": 1_000}),
        (2_170, {"trigger_id": "t-2", "kind": "support_risk", "event_time": 2_000}),
        (4_100, {"trigger_id": "t-cart", "kind": "cart_abandoned", "event_time": 3_000}),
        (5_000, {"trigger_id": "t-untimed", "kind": "offer_cancelled", "event_time": 4_000}),  # customer stage
    ]
    stages = trigger_stages(times, seen)
    assert stages["count"] == 2
    # t-1 then t-2, per stage: p50 is the upper middle of two, p90 and max the larger.
    assert stages["client_to_collector"] == {"p50_ms": 10, "p90_ms": 10, "max_ms": 10}  # 2, 10
    assert stages["collector_to_kafka"] == {"p50_ms": 2, "p90_ms": 2, "max_ms": 2}  # 1, 2
    assert stages["kafka_to_worker"] == {"p50_ms": 100, "p90_ms": 100, "max_ms": 100}  # 47, 100
    assert stages["id_lookup"] == {"p50_ms": 30, "p90_ms": 30, "max_ms": 30}  # 10, 30
    assert stages["detection"] == {"p50_ms": 8, "p90_ms": 8, "max_ms": 8}  # 5, 8
    assert stages["kafka_to_listener"] == {"p50_ms": 20, "p90_ms": 20, "max_ms": 20}  # 15, 20
    assert [name for name, _ in STAGES] == [k for k in stages if k != "count"]


def test_trigger_stages_without_a_timed_trigger_say_so() -> None:
    assert trigger_stages({"fields": FIELDS, "triggers": []}, []) == {"count": 0}


CUSTOMER_FIELDS = ["trigger_id", "candidate_ms", "taken_ms", "released_ms", "sent_ms"]


def test_customer_stages_split_deadline_to_trigger_into_parts_that_add_up() -> None:
    # Cart c-1: deadline 10,000; candidate produced 11,080 (lateness and the device stage); taken from
    # cx.customers 11,150; released by the merge 11,190, handed to Kafka 11,191; read 11,200: 1,200 ms.
    times = {"fields": FIELDS, "triggers": [], "customer": {"fields": CUSTOMER_FIELDS, "triggers": [
        ["c-1", 11_080, 11_150, 11_190, 11_191],
        ["c-2", 21_100, 21_400, 21_401, 21_402],
        ["c-gone", 31_000, 31_001, 31_002, 31_003],  # never arrived: left out
    ]}}
    seen = [
        (11_200, {"trigger_id": "c-1", "kind": "cart_abandoned", "event_time": 10_000, "customer_id": "u-1"}),
        (21_412, {"trigger_id": "c-2", "kind": "cart_abandoned", "event_time": 20_000, "customer_id": "u-2"}),
        (9_000, {"trigger_id": "f-1", "kind": "checkout_friction", "event_time": 8_990}),  # not a cart
    ]
    stages = customer_stages(times, seen)
    assert stages["count"] == 2
    assert stages["device_stage"] == {"p50_ms": 1_100, "p90_ms": 1_100, "max_ms": 1_100}  # 1,080, 1,100
    assert stages["customers_hop"] == {"p50_ms": 300, "p90_ms": 300, "max_ms": 300}  # 70, 300
    assert stages["merge_hold"] == {"p50_ms": 41, "p90_ms": 41, "max_ms": 41}  # 41 (11,150 -> 11,191), 2
    assert stages["kafka_to_listener"] == {"p50_ms": 10, "p90_ms": 10, "max_ms": 10}  # 9, 10
    assert [name for name, _ in CUSTOMER_STAGES] == [k for k in stages if k != "count"]


def test_customer_stages_of_a_worker_without_them_say_so() -> None:
    assert customer_stages({"fields": FIELDS, "triggers": []}, []) == {"count": 0}
