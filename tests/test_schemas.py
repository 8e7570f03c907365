"""Avro schemas are the source of truth: models mirror them and every record round-trips."""

from __future__ import annotations

import io
from datetime import datetime, timezone

import fastavro
import pytest

from pipeline.wire.records import DeadLetter, Event, Trigger, dead_letter
from pipeline.settings import Settings
from pipeline.wire.triggers import decode_trigger, encode_trigger, to_record
from schemas import load_schema

T0 = 1_700_000_000_000  # 2023-11-14 22:13:20 UTC

EVENT = {
    "event_id": "m-1",
    "tenant": "shop-a",
    "type": "track",
    "event": "Product Added",
    "anonymous_id": "anon-1",
    "user_id": None,
    "event_time_ms": T0,
    "received_at_ms": T0 + 40,
    "sent_at_ms": T0 + 20,
    "session_hint": None,
    "page_path": "/p/linen-shirt",
    "page_url": "https://shop.example/p/linen-shirt",
    "page_referrer": None,
    "user_agent": "Mozilla/5.0",
    "locale": "fr-FR",
    "ip_hash": "ab12",
    "properties": '{"product_id":"sku-1","price":49.9}',
    "traits": "{}",
    "context": '{"os":{"name":"iOS","version":"17.4"}}',
}

TRIGGER_INTERNAL = {
    "trigger_id": "f" * 32,
    "kind": "cart_abandoned",
    "tenant": "shop-a",
    "customer_id": "cust-9",
    "anonymous_id": "anon-1",
    "session_id": "s-1",
    "cart_id": "cart-1",
    "cart_key": "cart-1",
    "cart_value": 99.8,
    "currency": "EUR",
    "items": [{"product_id": "sku-1", "name": "Linen shirt", "price": 49.9, "quantity": 2}],
    "event_time_ms": T0 + 1_800_000,
    "emitted_at_ms": T0 + 1_801_000,
    "reasons": ["inactive_30m"],
    "friction_score": 0,
    "action": "offer",
    "offer": {"code": "CX-FFFFFFFFFF", "discount_pct": 10, "expires_at_ms": T0 + 3_600_000, "channel": "email"},
    "holdout": False,
    "experiment": "default",
    "ref_trigger_id": None,
}


def roundtrip(schema_name: str, record: dict) -> dict:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, load_schema(schema_name), record)
    buf.seek(0)
    return fastavro.schemaless_reader(buf, load_schema(schema_name))


def avro_field_names(schema_name: str) -> set[str]:
    return {f["name"] for f in load_schema(schema_name)["fields"]}


@pytest.mark.parametrize(
    ("schema_name", "model"), [("event", Event), ("trigger", Trigger), ("deadletter", DeadLetter)]
)
def test_model_fields_match_avro_schema(schema_name: str, model: type) -> None:
    assert set(model.model_fields) == avro_field_names(schema_name)


def test_event_roundtrips_through_avro() -> None:
    assert roundtrip("event", EVENT) == EVENT
    assert Event.model_validate(EVENT).model_dump() == EVENT


def test_event_batch_roundtrips_through_avro() -> None:
    batch = {"events": [EVENT, {**EVENT, "event_id": "m-2"}]}
    assert roundtrip("event_batch", batch) == batch


# TRIGGER_INTERNAL as the public record (docs/events.md): cart_key dropped, *_ms fields renamed.
TRIGGER_RECORD = {
    "trigger_id": "f" * 32,
    "kind": "cart_abandoned",
    "tenant": "shop-a",
    "customer_id": "cust-9",
    "anonymous_id": "anon-1",
    "session_id": "s-1",
    "cart_id": "cart-1",
    "cart_value": 99.8,
    "currency": "EUR",
    "items": [{"product_id": "sku-1", "name": "Linen shirt", "price": 49.9, "quantity": 2}],
    "event_time": 1_700_001_800_000,
    "emitted_at": 1_700_001_801_000,
    "reasons": ["inactive_30m"],
    "friction_score": 0,
    "action": "offer",
    "offer": {"code": "CX-FFFFFFFFFF", "discount_pct": 10, "expires_at": 1_700_003_600_000, "channel": "email"},
    "holdout": False,
    "experiment": "default",
    "ref_trigger_id": None,
}

# The same record read back from Avro: timestamp-millis come back as aware datetimes of the same instant.
TRIGGER_FROM_AVRO = {
    **TRIGGER_RECORD,
    "event_time": datetime(2023, 11, 14, 22, 43, 20, tzinfo=timezone.utc),
    "emitted_at": datetime(2023, 11, 14, 22, 43, 21, tzinfo=timezone.utc),
    "offer": {**TRIGGER_RECORD["offer"], "expires_at": datetime(2023, 11, 14, 23, 13, 20, tzinfo=timezone.utc)},
}


def test_trigger_contract_record_roundtrips_through_avro_and_model() -> None:
    record = to_record(TRIGGER_INTERNAL)
    assert record == TRIGGER_RECORD
    assert roundtrip("trigger", record) == TRIGGER_FROM_AVRO
    assert Trigger.model_validate(record).model_dump() == TRIGGER_RECORD


def test_trigger_encodes_as_json_by_default_and_avro_on_request() -> None:
    json_settings = Settings(_env_file=None)
    assert decode_trigger(encode_trigger(TRIGGER_INTERNAL, json_settings)) == TRIGGER_RECORD
    avro_settings = Settings(_env_file=None, trigger_format="avro")
    assert decode_trigger(encode_trigger(TRIGGER_INTERNAL, avro_settings), "avro") == TRIGGER_FROM_AVRO


def test_dead_letter_id_is_stable_and_payload_kept_verbatim() -> None:
    a = dead_letter(tenant="shop-a", reason="bad_json", detail="x", payload=b"{nope", received_at_ms=T0)
    b = dead_letter(tenant="shop-a", reason="bad_json", detail="x", payload=b"{nope", received_at_ms=T0)
    assert a.dl_id == b.dl_id
    assert a.payload == "{nope"
    assert roundtrip("deadletter", a.model_dump()) == a.model_dump()


def test_dead_letter_escapes_invalid_utf8_instead_of_losing_it() -> None:
    dl = dead_letter(tenant=None, reason="bad_encoding", detail="", payload=b"ok\xff", received_at_ms=T0)
    assert dl.payload == "ok\\xff"
