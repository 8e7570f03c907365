"""A record on the events topic that the collector did not write becomes a dead letter; the partition goes on."""

from __future__ import annotations

import orjson
import pytest
import requests
from confluent_kafka import Producer

from pipeline.wire.records import BadRecord, decode_batch_checked
from pipeline.supervisor.runner import Pipeline
from pipeline.settings import Settings
from tests.integration.helpers import embedded_settings, post_batch, scalar, wait_until
from tests.integration.journeys import _ts, day_d

GOOD = {"tenant": "t", "event_id": "e1", "type": "page", "event_time_ms": 5, "received_at_ms": 6}


def test_a_well_formed_batch_decodes_to_its_events() -> None:
    assert decode_batch_checked(orjson.dumps({"events": [GOOD]})) == [GOOD]


@pytest.mark.parametrize(
    ("value", "reason", "detail"),
    [
        (b"{not json", "bad_json", "not an EventBatch record: JSONDecodeError"),
        (None, "bad_json", "not an EventBatch record: JSONDecodeError"),
        (b'{"rows": []}', "schema_violation", "not an EventBatch record: KeyError"),
        (b"[1, 2]", "schema_violation", "not an EventBatch record: TypeError"),
        (b'{"events": {"a": 1}}', "schema_violation", "'events' is not a list"),
        (b'{"events": [7]}', "schema_violation", "event 0 is not an object"),
        (orjson.dumps({"events": [GOOD, {**GOOD, "event_time_ms": "5"}]}), "schema_violation", "event 1: event_time_ms is missing or not int"),
        (orjson.dumps({"events": [{**GOOD, "received_at_ms": True}]}), "schema_violation", "event 0: received_at_ms is missing or not int"),
        (orjson.dumps({"events": [{k: v for k, v in GOOD.items() if k != "tenant"}]}), "schema_violation", "event 0: tenant is missing or not str"),
    ],
    ids=["bad-json", "empty", "no-events-key", "array", "events-not-list", "event-not-object", "time-as-text", "bool-time", "no-tenant"],
)
def test_a_malformed_record_is_refused_with_its_reason(value: bytes | None, reason: str, detail: str) -> None:
    with pytest.raises(BadRecord, match=detail) as caught:
        decode_batch_checked(value)
    assert caught.value.reason == reason


@pytest.mark.integration
def test_foreign_records_on_the_events_topic_are_dead_lettered_and_later_events_stored(
    kafka: str, fresh_settings: Settings, tmp_path
) -> None:
    tenant = f"shop-{fresh_settings.worker_group}"
    settings = embedded_settings(fresh_settings, kafka, tmp_path, "wk_bad")
    day = day_d()
    page = {"type": "page", "anonymousId": "a-1", "messageId": "m-1", "properties": {"path": "/"}, "timestamp": _ts(day, 0)}
    with Pipeline(settings) as running:
        producer = Producer({"bootstrap.servers": running.bootstrap})
        for partition in range(settings.kafka_partitions):  # one on every partition, before the good events
            producer.produce(settings.topic_events, b"\xff not json", partition=partition)
        producer.produce(settings.topic_events, b'{"events": [{"type": "page"}]}', partition=0)
        producer.flush(10)
        assert post_batch(running.collector_url, "wk_bad", [page]).status_code == 200
        assert running.wait_drained(90)
        wait_until(lambda: scalar(running, "SELECT count() FROM cx.deadletters FINAL") == settings.kafka_partitions + 1,
                   what="the foreign records dead-lettered")
        _, rows = running.query(
            "SELECT reason, count() FROM cx.deadletters FINAL WHERE tenant = '' GROUP BY reason ORDER BY reason"
        )
        assert [tuple(r) for r in rows] == [("bad_json", settings.kafka_partitions), ("schema_violation", 1)]
        assert scalar(running, f"SELECT count() FROM cx.events FINAL WHERE tenant = '{tenant}'") == 1
        assert running.procs["worker"].poll() is None


@pytest.mark.integration
def test_poison_records_become_dead_letters_and_the_same_worker_stores_the_next_event(
    kafka: str, fresh_settings: Settings, tmp_path
) -> None:
    tenant = f"shop-{fresh_settings.worker_group}"
    settings = embedded_settings(fresh_settings, kafka, tmp_path, "wk_poison")
    day = day_d()
    page = {"type": "page", "anonymousId": "a-1", "messageId": "m-1", "properties": {"path": "/"}, "timestamp": _ts(day, 0)}
    list_event = {**GOOD, "event_id": "p1", "type": "track", "event": ["x"]}
    with Pipeline(settings) as running:
        pid = running.procs["worker"].pid
        producer = Producer({"bootstrap.servers": running.bootstrap})
        producer.produce(settings.topic_events, orjson.dumps({"events": [list_event]}), partition=0)
        producer.produce(settings.topic_deadletter, b'{"not": "a dead letter"}', partition=0)
        producer.flush(10)
        deep = ("[" * 260 + "1" + "]" * 260).encode()
        answer = requests.post(f"{running.collector_url}/v1/batch", data=deep, auth=("wk_poison", ""), timeout=30)
        assert answer.status_code == 400
        assert post_batch(running.collector_url, "wk_poison", [page]).status_code == 200
        assert running.wait_drained(90)
        wait_until(lambda: scalar(running, f"SELECT count() FROM cx.events FINAL WHERE tenant = '{tenant}'") == 1,
                   what="the event sent after the poison stored")
        wait_until(lambda: scalar(running, "SELECT count() FROM cx.deadletters FINAL") == 3, what="3 dead letters")
        _, rows = running.query("SELECT reason, count() FROM cx.deadletters FINAL GROUP BY reason ORDER BY reason")
        assert [tuple(r) for r in rows] == [("bad_json", 1), ("processing_error", 2)]
        assert running.procs["worker"].poll() is None and running.procs["worker"].pid == pid


@pytest.mark.integration
def test_another_producers_records_are_dead_lettered_without_their_personal_values(
    kafka: str, fresh_settings: Settings, tmp_path
) -> None:
    import hashlib

    settings = embedded_settings(fresh_settings, kafka, tmp_path, "wk_foreign", pii_salt="foreign-salt")
    on_events = b'{"rows": [{"email": "buyer@example.com", "note": "call +33 6 12 34 56 78"}]}'  # not an EventBatch
    on_deadletters = b'{"who": {"email": "other@example.org"}, "reason": "re@example.net"}'  # not a dead letter
    with Pipeline(settings) as running:
        producer = Producer({"bootstrap.servers": running.bootstrap})
        producer.produce(settings.topic_events, on_events, partition=0)
        producer.produce(settings.topic_deadletter, on_deadletters, partition=0)
        producer.flush(10)
        wait_until(lambda: scalar(running, "SELECT count() FROM cx.deadletters FINAL") == 2, what="both dead-lettered")
        _, rows = running.query("SELECT reason, detail, payload FROM cx.deadletters FINAL ORDER BY reason")
    stored = "\n".join(f"{reason} {detail} {payload}" for reason, detail, payload in rows)  # detail quotes nothing
    assert [r[0] for r in rows] == ["processing_error", "schema_violation"]
    for planted in ("buyer@example.com", "other@example.org", "re@example.net", "+33 6 12 34 56 78", "12 34 56 78"):
        assert planted not in stored
    # The email keys were hashed with the configured salt, as the collector does.
    assert hashlib.sha256(b"foreign-saltbuyer@example.com").hexdigest() in stored
