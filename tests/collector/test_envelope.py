"""The Segment envelope is validated by the pydantic model ``SegmentMessage`` at the edge."""

from __future__ import annotations

import pytest

from pipeline.collector.envelope import EnvelopeError, SegmentMessage, validate_envelope


def track(**fields) -> dict:
    return {"type": "track", "event": "Product Viewed", "anonymousId": "anon-1", **fields}


def refused(msg: dict) -> EnvelopeError:
    with pytest.raises(EnvelopeError) as err:
        validate_envelope(msg)
    return err.value


def test_a_valid_track_call_becomes_a_segment_message_with_its_fields() -> None:
    env = validate_envelope(track(userId="u-1", messageId="m-1", properties={"product_id": "p-1"}, extra="kept raw"))
    assert isinstance(env, SegmentMessage)
    assert (env.type, env.event, env.anonymousId, env.userId, env.messageId) == (
        "track", "Product Viewed", "anon-1", "u-1", "m-1",
    )
    assert env.properties == {"product_id": "p-1"}


def test_numeric_ids_become_strings_and_empty_ids_count_as_absent() -> None:
    env = validate_envelope({"type": "identify", "userId": 42, "anonymousId": "", "messageId": 7.5})
    assert (env.userId, env.anonymousId, env.messageId) == ("42", None, "7.5")


def test_a_boolean_id_is_a_schema_violation_naming_the_field() -> None:
    err = refused(track(userId=True))
    assert (err.reason, err.detail) == ("schema_violation", "userId: Input should be a valid string")


def test_a_type_outside_segments_calls_is_unknown_type() -> None:
    err = refused(track(type="purchase"))
    assert err.reason == "unknown_type"
    assert err.detail == "type must be one of track, page, identify, screen, group, alias"  # not the value sent


def test_a_missing_type_is_unknown_type_even_when_other_fields_are_wrong_too() -> None:
    # the type is checked first: its reason wins over the bad userId's
    assert refused({"userId": [1], "anonymousId": "a"}).reason == "unknown_type"


def test_a_numeric_timestamp_is_a_schema_violation() -> None:
    err = refused(track(timestamp=1710064800000))
    assert (err.reason, err.detail) == ("schema_violation", "timestamp: Input should be a valid string")


@pytest.mark.parametrize("field", ["properties", "traits", "context"])
def test_an_object_field_that_is_a_list_is_a_schema_violation(field: str) -> None:
    err = refused(track(**{field: [1, 2]}))
    assert (err.reason, err.detail) == ("schema_violation", f"{field}: Input should be a valid dictionary")


def test_a_call_without_user_or_anonymous_id_is_a_schema_violation() -> None:
    err = refused({"type": "page", "anonymousId": None, "userId": ""})
    assert (err.reason, err.detail) == ("schema_violation", "userId or anonymousId is required")


def test_a_track_call_without_an_event_name_is_a_schema_violation() -> None:
    err = refused(track(event=""))
    assert (err.reason, err.detail) == ("schema_violation", "track needs a non-empty event name")


def test_a_numeric_event_name_is_not_coerced_to_text() -> None:
    assert refused(track(event=12)).detail == "event: Input should be a valid string"
