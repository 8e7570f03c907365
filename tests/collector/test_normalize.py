"""One Segment message -> one Event dict or a dead-letter decision (pure; receive time is an argument)."""

from __future__ import annotations

import hashlib

import orjson
import pytest

from pipeline.collector.normalize import DeadLetterDecision, NormalizeRules, normalize, parse_time_ms
from pipeline.wire.records import Event
from tests.collector.conftest import ms

RULES = NormalizeRules(max_event_age_ms=7 * 86_400_000, max_event_future_ms=3_600_000, pii_salt="test-salt")
RECEIVED_MS = ms("2024-03-10T10:00:02+00:00")


def run(msg: dict, *, batch_sent_at: str | None = None, received_at_ms: int = RECEIVED_MS):
    return normalize(msg, tenant="shop-a", received_at_ms=received_at_ms, batch_sent_at=batch_sent_at, rules=RULES)


def track(**fields) -> dict:
    return {"type": "track", "event": "Page Scrolled", "anonymousId": "anon-1", "messageId": "m-1", **fields}


def decision(msg: dict, **kw) -> DeadLetterDecision:
    result = run(msg, **kw)
    assert isinstance(result, DeadLetterDecision), result
    return result


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# -- time ------------------------------------------------------------------


def test_event_time_is_corrected_by_the_message_sent_at_skew() -> None:
    # device clock: timestamp 10:00:00, sentAt 10:00:05 (the device runs 3 s ahead)
    # collector receives at 10:00:02 -> skew = 10:00:02 - 10:00:05 = -3 s
    # event time = 10:00:00 - 3 s = 09:59:57
    event = run(track(timestamp="2024-03-10T10:00:00Z", sentAt="2024-03-10T10:00:05Z"))
    assert event["event_time_ms"] == ms("2024-03-10T09:59:57+00:00")
    assert event["sent_at_ms"] == ms("2024-03-10T10:00:05+00:00")
    assert event["received_at_ms"] == RECEIVED_MS


def test_batch_sent_at_is_used_when_the_message_has_none() -> None:
    # same timeline as above, sentAt on the batch instead of the message
    event = run(track(timestamp="2024-03-10T10:00:00Z"), batch_sent_at="2024-03-10T10:00:05Z")
    assert event["event_time_ms"] == ms("2024-03-10T09:59:57+00:00")


def test_message_sent_at_wins_over_the_batch_sent_at() -> None:
    # message sentAt 10:00:01 (skew +1 s), batch sentAt 10:00:05 ignored -> 10:00:00 + 1 s
    event = run(
        track(timestamp="2024-03-10T10:00:00Z", sentAt="2024-03-10T10:00:01Z"), batch_sent_at="2024-03-10T10:00:05Z"
    )
    assert event["event_time_ms"] == ms("2024-03-10T10:00:01+00:00")


def test_timestamp_with_an_offset_is_read_in_its_zone() -> None:
    # 12:00:00+02:00 is 10:00:00Z; no sentAt: no correction
    event = run(track(timestamp="2024-03-10T12:00:00.250+02:00"))
    assert event["event_time_ms"] == ms("2024-03-10T10:00:00.250+00:00")
    assert event["sent_at_ms"] is None


def test_no_timestamp_means_event_time_is_receive_time() -> None:
    event = run(track(sentAt="2024-03-10T10:00:05Z"))
    assert event["event_time_ms"] == RECEIVED_MS


def test_original_timestamp_is_read_when_timestamp_is_absent() -> None:
    # RudderStack SDKs: originalTimestamp 10:00:00, sentAt 10:00:01, received 10:00:02 -> 10:00:01
    event = run(track(originalTimestamp="2024-03-10T10:00:00Z", sentAt="2024-03-10T10:00:01Z"))
    assert event["event_time_ms"] == ms("2024-03-10T10:00:01+00:00")


@pytest.mark.parametrize("bad", ["yesterday", "2024-13-40T10:00:00Z", 1710064800000])
def test_unparsable_timestamp_is_a_schema_violation(bad: object) -> None:
    assert decision(track(timestamp=bad)).reason == "schema_violation"


def test_unparsable_batch_sent_at_is_a_schema_violation() -> None:
    assert decision(track(timestamp="2024-03-10T10:00:00Z"), batch_sent_at="soon").reason == "schema_violation"


def test_event_older_than_the_window_is_too_old() -> None:
    # received 2024-03-10 10:00:02; window 7 days -> oldest accepted 2024-03-03 10:00:02
    assert run(track(timestamp="2024-03-03T10:00:02Z"))["event_time_ms"] == ms("2024-03-03T10:00:02+00:00")
    assert decision(track(timestamp="2024-03-03T10:00:01Z")).reason == "too_old"


def test_event_after_the_future_window_is_too_far_future() -> None:
    # received 10:00:02; 1 hour ahead is 11:00:02 at most
    assert run(track(timestamp="2024-03-10T11:00:02Z"))["event_time_ms"] == ms("2024-03-10T11:00:02+00:00")
    assert decision(track(timestamp="2024-03-10T11:00:03Z")).reason == "too_far_future"


def test_window_applies_after_skew_correction() -> None:
    # timestamp 2 h ahead, but so is the device clock: sentAt 12:00:02 -> skew -2 h -> 10:00:00, accepted
    event = run(track(timestamp="2024-03-10T12:00:00Z", sentAt="2024-03-10T12:00:02Z"))
    assert event["event_time_ms"] == ms("2024-03-10T10:00:00+00:00")


def test_parse_time_without_zone_is_utc() -> None:
    assert parse_time_ms("2024-03-10T10:00:00") == ms("2024-03-10T10:00:00+00:00")


# -- envelope ----------------------------------------------------------------


def test_unknown_call_type_is_unknown_type() -> None:
    assert decision(track(type="purchase")).reason == "unknown_type"
    assert decision({"event": "x", "anonymousId": "a"}).reason == "unknown_type"


def test_no_user_or_anonymous_id_is_schema_violation() -> None:
    msg = track()
    del msg["anonymousId"]
    assert decision(msg).reason == "schema_violation"
    assert decision(track(anonymousId="")).reason == "schema_violation"


def test_numeric_ids_become_strings_like_segment_does() -> None:
    event = run(track(userId=42, anonymousId=None, messageId=7))
    assert (event["user_id"], event["anonymous_id"], event["event_id"]) == ("42", None, "7")


def test_track_without_event_name_is_schema_violation() -> None:
    assert decision(track(event="")).reason == "schema_violation"
    assert decision(track(event=None)).reason == "schema_violation"


def test_properties_that_are_not_an_object_are_schema_violation() -> None:
    assert decision(track(properties=[1, 2])).reason == "schema_violation"


def test_a_message_that_is_not_an_object_is_bad_json() -> None:
    assert normalize([1], tenant="t", received_at_ms=0, batch_sent_at=None, rules=RULES).reason == "bad_json"


def test_catalog_event_missing_a_required_property_is_missing_property() -> None:
    result = decision(track(event="Product Added", properties={"product_id": "p1"}))
    assert (result.reason, result.detail) == ("missing_property", "price is required")


def test_unknown_track_event_name_is_stored_with_its_properties() -> None:
    event = run(track(event="Wishlist Shared", properties={"list": "xmas", "n": 3}))
    assert (event["type"], event["event"]) == ("track", "Wishlist Shared")
    assert orjson.loads(event["properties"]) == {"list": "xmas", "n": 3}


def test_missing_message_id_gets_a_stable_content_hash_that_ignores_sent_at() -> None:
    # An SDK retry resends the same message with a new sentAt: same id, so it dedups.
    ts = "2024-03-10T10:00:00Z"
    first = run({"type": "track", "event": "X", "anonymousId": "a", "timestamp": ts, "sentAt": "2024-03-10T10:00:00Z"})
    retry = run({"sentAt": "2024-03-10T10:00:09Z", "timestamp": ts, "anonymousId": "a", "event": "X", "type": "track"})
    other = run({"type": "track", "event": "Y", "anonymousId": "a", "timestamp": "2024-03-10T10:00:00Z"})
    assert first["event_id"] == retry["event_id"]
    assert first["event_id"] != other["event_id"]
    assert len(first["event_id"]) == 32


# -- calls -------------------------------------------------------------------


def test_page_call_reads_properties_then_context_page_and_names_the_title() -> None:
    msg = {
        "type": "page",
        "name": "Home",
        "anonymousId": "a",
        "messageId": "m",
        "properties": {"path": "/", "load_time_ms": 640},
        "context": {"page": {"path": "/ignored", "url": "https://shop.test/", "referrer": "https://search.test/"}},
    }
    event = run(msg)
    assert (event["page_path"], event["page_url"], event["page_referrer"]) == ("/", "https://shop.test/", "https://search.test/")
    assert orjson.loads(event["properties"]) == {"path": "/", "load_time_ms": 640, "title": "Home"}


def test_page_with_negative_load_time_is_wrong_type() -> None:
    assert decision({"type": "page", "anonymousId": "a", "properties": {"load_time_ms": -3}}).reason == "wrong_type"


@pytest.mark.parametrize(
    ("msg", "props"),
    [
        ({"type": "screen", "name": "Cart"}, {"name": "Cart"}),
        ({"type": "group", "groupId": "g-9", "traits": {"plan": "pro"}}, {"group_id": "g-9"}),
        ({"type": "alias", "previousId": "anon-0"}, {"previous_id": "anon-0"}),
    ],
)
def test_screen_group_alias_are_accepted(msg: dict, props: dict) -> None:
    event = run({**msg, "userId": "u-1", "messageId": "m"})
    assert event["type"] == msg["type"] and event["event"] is None
    assert orjson.loads(event["properties"]) == props


def test_server_side_alias_takes_its_previous_id_as_the_anonymous_id() -> None:
    event = run({"type": "alias", "previousId": "anon-phone", "userId": "u-1", "messageId": "m"})
    assert (event["anonymous_id"], event["user_id"]) == ("anon-phone", "u-1")
    assert orjson.loads(event["properties"]) == {"previous_id": "anon-phone"}


def test_alias_with_its_own_anonymous_id_keeps_it() -> None:
    msg = {"type": "alias", "previousId": "old", "anonymousId": "anon-laptop", "userId": "u-1", "messageId": "m"}
    assert (run(msg)["anonymous_id"], run(msg)["user_id"]) == ("anon-laptop", "u-1")


def test_previous_id_of_another_call_is_not_an_anonymous_id() -> None:
    event = run(track(anonymousId=None, userId="u-1", previousId="anon-phone"))
    assert (event["anonymous_id"], event["user_id"]) == (None, "u-1")


def test_context_fields_are_extracted() -> None:
    ctx = {"userAgent": "Mozilla/5.0", "locale": "de-DE", "session_id": 1710064800, "page": {"path": "/cart"}}
    event = run(track(context=ctx))
    assert (event["user_agent"], event["locale"], event["session_hint"], event["page_path"]) == (
        "Mozilla/5.0",
        "de-DE",
        "1710064800",
        "/cart",
    )
    assert run(track(context={"sessionId": "s-7"}))["session_hint"] == "s-7"


# -- privacy -----------------------------------------------------------------


def test_email_and_ip_are_replaced_by_salted_hashes() -> None:
    msg = {
        "type": "identify",
        "userId": "u-1",
        "messageId": "m",
        "traits": {"email": "  Ann@Example.COM ", "consent_marketing": True},
        "context": {"ip": "203.0.113.7", "traits": {"email": "ann@example.com", "name": "Ann"}},
    }
    event = run(msg)
    assert orjson.loads(event["traits"]) == {
        "name": "Ann",
        "consent_marketing": True,
        "email_hash": sha("test-salt" + "ann@example.com"),  # lower-cased, stripped, salted
    }
    assert event["ip_hash"] == sha("test-salt" + "203.0.113.7")
    text = orjson.dumps(event).decode().lower()
    assert "ann@example.com" not in text and "203.0.113.7" not in text


def test_email_property_of_a_track_event_is_hashed() -> None:
    event = run(track(event="Newsletter Joined", properties={"Email": "bo@example.com", "source": "footer"}))
    assert orjson.loads(event["properties"]) == {"source": "footer", "email_hash": sha("test-salt" + "bo@example.com")}


def test_identify_consent_must_be_a_boolean() -> None:
    msg = {"type": "identify", "userId": "u-1", "traits": {"consent_marketing": "yes"}}
    assert decision(msg).reason == "wrong_type"


def test_normalized_event_matches_the_avro_mirror_model() -> None:
    props = {"product_id": 5, "price": 1.5}
    event = run(track(event="Product Added", userId="u-1", properties=props, context={"ip": "10.0.0.1"}))
    assert Event.model_validate(event).model_dump() == event
