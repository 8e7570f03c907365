"""``cxstream deliver`` against a real broker and a real HTTP receiver that fails on purpose."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.deliver.config import KINDS
from pipeline.settings import Settings
from tests.deliver.common import SECRET, assert_schema, committed, make_trigger, produce, read_topic, start_deliver, wait_for, write_config
from tests.deliver.receiver import Receiver

pytestmark = pytest.mark.integration

FAST = {
    "delivery_backoff_s": 0.05,
    "delivery_backoff_max_s": 5.0,
    "delivery_retry_after_max_s": 1.5,
    "delivery_drain_s": 5.0,
}


def _stop(proc) -> None:  # noqa: ANN001
    proc.terminate()
    try:
        proc.wait(30)
    except Exception:
        proc.kill()
        proc.wait(10)


def test_receiver_failing_every_other_request_gets_every_trigger_signed_and_once(
    kafka: str, fresh_settings: Settings, tmp_path: Path
) -> None:
    # Every other request fails, in turn: 500, 429 + Retry-After in seconds, a reset connection,
    # 429 + Retry-After as an HTTP date, 503, a timeout (work done, answer too late), 408,
    # 429 asking for an hour (cut to CX_DELIVERY_RETRY_AFTER_MAX_S = 1.5 s).
    # The rest succeed, some slowly (below the 0.8 s timeout).
    failures = ["status:500", "retry_after_s:1", "reset", "retry_after_date:2", "status:503", "timeout:1.5", "status:408",
                "retry_after_s:3600"]

    def flaky(n: int, trigger_id: str, attempt: int) -> str:
        if n % 2:
            return failures[(n // 2) % len(failures)]
        return "slow:0.3" if n % 10 == 4 else "ok"

    triggers = [
        make_trigger(i, kind=kind, action=action, tenant=tenant)
        for i, (kind, action, tenant) in enumerate(
            [("cart_abandoned", "offer", "shop-a"), ("checkout_friction", "assist", "shop-a"),
             ("cart_abandoned", "offer", "shop-b"), ("support_risk", "none", "shop-a")] * 15
        )
    ]  # fmt: skip
    offers_a = {t["trigger_id"] for t in triggers if t["action"] == "offer" and t["tenant"] == "shop-a"}
    assert len(triggers) == 60 and len(offers_a) == 15
    log = tmp_path / "deliver.log"
    with Receiver(SECRET.encode(), flaky) as flaky_rx, Receiver(b"other-secret-0123456789") as offers_rx:
        config = write_config(tmp_path / "hooks.toml", [
            {"name": "everything", "url": flaky_rx.url, "secret_env": "TEST_HOOK_SECRET", "timeout_s": 0.8, "max_attempts": 20},
            {"name": "shop-a-offers", "url": offers_rx.url, "secret": "other-secret-0123456789",
             "actions": ["offer"], "tenants": ["shop-a"], "kinds": ["cart_abandoned"], "rate_per_s": 10},
        ])  # fmt: skip
        settings = fresh_settings.model_copy(update={"kafka_bootstrap": kafka, "delivery_config": str(config), **FAST})
        ends = produce(settings, kafka, triggers)
        proc = start_deliver(settings, kafka, log, TEST_HOOK_SECRET=SECRET)
        try:
            wait_for(
                lambda: committed(settings, kafka, 2) == {p: ends.get(p, -1001) for p in range(2)},
                120, "every trigger delivered and committed", proc, log,
            )  # fmt: skip
        finally:
            _stop(proc)
        requests, effects = flaky_rx.snapshot()
        offer_requests, offer_effects = offers_rx.snapshot()

    ids = {t["trigger_id"] for t in triggers}
    # Every trigger reached the flaky receiver, every request was signed and keyed by its trigger id.
    assert set(effects) == ids
    assert all(r.signature_ok and r.key == r.trigger_id for r in requests)
    assert len(requests) >= 2 * len(ids) - 1  # half of them failed
    # Acted on twice only where the first answer was lost (timeout): same key, same body.
    for key, done in effects.items():
        assert len({r.body for r in done}) == 1
        assert all(r.action.startswith("timeout") for r in done[:-1]), (key, [r.action for r in done])
    # Retry-After was honoured: the next attempt of the key came after it (1 s; the date form >= 1 s).
    for i, r in enumerate(requests):
        if r.action.startswith("retry_after"):
            following = next(q for q in requests[i + 1 :] if q.key == r.key)
            assert following.at - r.answered_at >= 0.95, (r.action, following.at - r.answered_at)
            assert following.at - r.answered_at < 3.0, (r.action, following.at - r.answered_at)
    # The filtered destination got exactly shop-a's offers, each once.
    assert set(offer_effects) == offers_a
    assert all(len(v) == 1 for v in offer_effects.values())
    assert all(r.signature_ok for r in offer_requests) and len(offer_requests) == 15
    # Its rate limit (10/s): 15 requests, 14 intervals of 100 ms at least when they start (1.4 s);
    # 0.4 s allowed for a first request slowed by its connection. Unlimited: 4 ms (measured).
    assert offer_requests[-1].at - offer_requests[0].at >= 1.0
    # One outcome per trigger and destination on the deliveries topic, all delivered.
    outcomes = read_topic(settings, kafka, settings.topic_deliveries)
    assert_schema(outcomes, "delivery")
    by_dest: dict[str, set[str]] = {}
    for o in outcomes:
        assert o["status"] == "delivered" and o["last_error"] == "" and 200 <= o["last_status"] < 300
        by_dest.setdefault(o["destination"], set()).add(o["trigger_id"])
    assert by_dest == {"everything": ids, "shop-a-offers": offers_a}
    assert len(outcomes) == 75
    assert read_topic(settings, kafka, settings.topic_delivery_deadletter, idle_s=1.0) == []
    # The secret never reached the log.
    assert SECRET not in log.read_text() and "other-secret" not in log.read_text()


def test_refused_and_exhausted_triggers_are_dead_lettered_and_committed(
    kafka: str, fresh_settings: Settings, tmp_path: Path
) -> None:
    # tr-00003 and tr-00007: 400 (permanent, one attempt); tr-00005: 503 every time (3 attempts);
    # tr-00009: a reset connection every time (3 attempts, no status). Everything else: 200.
    # Two records on the topic are not triggers: not JSON, and a kind that is a list (which once failed the
    # destination's kinds filter and stopped deliver for good). Each dead-lettered as not_a_trigger, and passed.
    def strict(n: int, trigger_id: str, attempt: int) -> str:
        return {"tr-00003": "status:400", "tr-00007": "status:422", "tr-00005": "status:503", "tr-00009": "reset"}.get(trigger_id, "ok")

    triggers = [make_trigger(i) for i in range(12)]
    log = tmp_path / "deliver.log"
    with Receiver(SECRET.encode(), strict) as rx:
        config = write_config(tmp_path / "hooks.toml", [
            {"name": "crm", "url": rx.url, "secret": SECRET, "max_attempts": 3, "timeout_s": 2, "kinds": sorted(KINDS)},
        ])  # fmt: skip
        settings = fresh_settings.model_copy(update={"kafka_bootstrap": kafka, "delivery_config": str(config), **FAST})
        listed = b'{"trigger_id": "tr-list", "kind": ["cart_abandoned"]}'
        ends = produce(settings, kafka, [*triggers[:6], b"{not a trigger", *triggers[6:9], listed, *triggers[9:]])
        proc = start_deliver(settings, kafka, log)
        try:
            wait_for(
                lambda: committed(settings, kafka, 2) == {p: ends.get(p, -1001) for p in range(2)},
                60, "every trigger delivered or dead-lettered and committed", proc, log,
            )  # fmt: skip
        finally:
            _stop(proc)
        requests, effects = rx.snapshot()

    assert set(effects) == {f"tr-{i:05d}" for i in range(12)} - {"tr-00003", "tr-00005", "tr-00007", "tr-00009"}
    attempts = {}
    for r in requests:
        attempts[r.key] = attempts.get(r.key, 0) + 1
    assert (attempts["tr-00003"], attempts["tr-00007"], attempts["tr-00005"], attempts["tr-00009"]) == (1, 1, 3, 3)
    dead_records = read_topic(settings, kafka, settings.topic_delivery_deadletter)
    assert_schema(dead_records, "delivery_deadletter")
    poisons = sorted((d for d in dead_records if d["trigger_id"] == ""), key=lambda d: d["value"])
    assert [(p["reason"], p["destination"], p["value"]) for p in poisons] == [
        ("not_a_trigger", "", listed.decode()),
        ("not_a_trigger", "", "{not a trigger"),
    ]
    assert poisons[0]["last_error"] == "ValueError: kind must be text, got list"
    assert poisons[1]["last_error"].startswith("JSONDecodeError")
    dead = {d["trigger_id"]: d for d in dead_records if d["trigger_id"]}
    assert sorted(dead) == ["tr-00003", "tr-00005", "tr-00007", "tr-00009"]
    assert {k: (d["destination"], d["reason"], d["attempts"], d["last_status"]) for k, d in dead.items()} == {
        "tr-00003": ("crm", "permanent", 1, 400),
        "tr-00007": ("crm", "permanent", 1, 422),
        "tr-00005": ("crm", "attempts_exhausted", 3, 503),
        "tr-00009": ("crm", "attempts_exhausted", 3, 0),
    }
    assert dead["tr-00003"]["last_error"] == "HTTP 400: refused with 400"
    assert dead["tr-00005"]["last_error"] == "HTTP 503: refused with 503"
    assert dead["tr-00009"]["last_error"].startswith(("ServerDisconnectedError", "ClientOSError", "ClientPayloadError"))
    assert dead["tr-00005"]["trigger"] == triggers[5]  # the whole record, for a replay by hand
    assert dead["tr-00005"]["url"] == rx.url
    outcome_records = read_topic(settings, kafka, settings.topic_deliveries)
    assert_schema(outcome_records, "delivery")
    outcomes = {(o["trigger_id"], o["status"], o["attempts"]) for o in outcome_records}
    assert ("tr-00005", "dead_lettered", 3) in outcomes and ("tr-00003", "dead_lettered", 1) in outcomes
    assert sum(1 for o in outcomes if o[1] == "delivered") == 8


def test_avro_triggers_are_posted_as_the_json_record_with_epoch_millisecond_times(
    kafka: str, fresh_settings: Settings, tmp_path: Path
) -> None:
    import io

    import fastavro
    from confluent_kafka import Producer

    from pipeline.wire.topics import ensure_topics, kafka_config
    from schemas import load_schema

    triggers = [make_trigger(i) for i in range(3)]
    log = tmp_path / "deliver.log"
    with Receiver(SECRET.encode()) as rx:
        config = write_config(tmp_path / "hooks.toml", [{"name": "crm", "url": rx.url, "secret": SECRET}])
        settings = fresh_settings.model_copy(
            update={"kafka_bootstrap": kafka, "delivery_config": str(config), "trigger_format": "avro", **FAST}
        )
        ensure_topics(settings, kafka)
        producer = Producer(kafka_config(settings, kafka))
        for t in triggers:
            buf = io.BytesIO()
            fastavro.schemaless_writer(buf, load_schema("trigger"), t)
            producer.produce(settings.topic_triggers, key=t["customer_id"].encode(), value=buf.getvalue())
        assert producer.flush(30) == 0
        proc = start_deliver(settings, kafka, log)
        try:
            wait_for(lambda: len(rx.snapshot()[1]) == 3, 60, "3 triggers at the receiver", proc, log)
        finally:
            _stop(proc)
        requests, _ = rx.snapshot()
    import orjson

    bodies = {r.key: orjson.loads(r.body) for r in requests}
    assert sorted(bodies) == ["tr-00000", "tr-00001", "tr-00002"]
    first = bodies["tr-00001"]
    assert (first["event_time"], first["emitted_at"], first["offer"]["expires_at"]) == (
        1_780_000_001_000, 1_780_000_001_005, 1_780_172_801_000,
    )  # fmt: skip
    assert first["items"] == [{"product_id": "p-1", "name": "Mug", "price": 60.25, "quantity": 2}]
    assert all(r.signature_ok for r in requests)
