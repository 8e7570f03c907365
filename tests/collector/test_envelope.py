"""The Segment envelope is validated at the edge, by the rules of the pydantic model ``SegmentMessage``."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.collector.envelope import Envelope, EnvelopeError, SegmentMessage, validate_envelope, validate_with_model
from tests.fuzz.strategies import json_values, scalars


def track(**fields) -> dict:
    return {"type": "track", "event": "Product Viewed", "anonymousId": "anon-1", **fields}


def refused(msg: dict) -> EnvelopeError:
    with pytest.raises(EnvelopeError) as err:
        validate_envelope(msg)
    return err.value


def test_a_valid_track_call_becomes_an_envelope_with_its_fields() -> None:
    env = validate_envelope(track(userId="u-1", messageId="m-1", properties={"product_id": "p-1"}, extra="kept raw"))
    assert isinstance(env, Envelope)
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


# -- the hand-written check and the pydantic model agree -----------------------------

_FIELDS = tuple(SegmentMessage.model_fields)


def _outcome(validate, msg: dict) -> tuple:
    """Every field of the validated envelope, or the dead-letter reason and detail."""
    try:
        env = validate(msg)
    except EnvelopeError as exc:
        return ("refused", exc.reason, exc.detail)
    return ("valid", *(getattr(env, name) for name in _FIELDS))


_field_values = st.one_of(
    scalars,
    st.sampled_from(["track", "page", "identify", "screen", "group", "alias", "Track", " page", ""]),
    st.sampled_from(["2026-01-05T10:00:00Z", "not a time"]),
    st.dictionaries(st.text(max_size=8), scalars, max_size=3),
    json_values(6),
)
_envelopes = st.dictionaries(st.sampled_from([*_FIELDS, "name", "writeKey", "extra"]), _field_values, max_size=8)


@settings(max_examples=600, deadline=None)
@given(_envelopes)
def test_the_hand_written_check_gives_the_models_answer_for_any_envelope(msg: dict) -> None:
    assert _outcome(validate_envelope, msg) == _outcome(validate_with_model, msg)


@settings(max_examples=300, deadline=None)
@given(st.fixed_dictionaries(
    {"type": st.sampled_from(["track", "page", "identify", "screen", "group", "alias"]),
     "anonymousId": st.one_of(st.text(min_size=1, max_size=8), st.integers(), st.none(), st.just(""))},
    optional={name: _field_values for name in _FIELDS if name not in ("type", "anonymousId")},
))
def test_the_hand_written_check_gives_the_models_answer_for_nearly_valid_calls(msg: dict) -> None:
    # Mostly valid calls with one or two fields off: the case where the order of the checks matters.
    assert _outcome(validate_envelope, msg) == _outcome(validate_with_model, msg)


@pytest.mark.parametrize(
    ("msg", "expected"),
    [
        ({"type": "track", "event": "E", "anonymousId": True, "timestamp": 5}, "anonymousId: Input should be a valid string"),
        ({"type": "track", "event": 1, "userId": [1]}, "event: Input should be a valid string"),
        ({"type": "page", "context": [], "properties": "x"}, "properties: Input should be a valid dictionary"),
        ({"type": "track", "anonymousId": "a", "context": []}, "context: Input should be a valid dictionary"),
    ],
)
def test_the_first_field_in_the_models_order_names_the_problem(msg: dict, expected: str) -> None:
    assert refused(msg).detail == expected
    with pytest.raises(EnvelopeError) as by_model:
        validate_with_model(msg)
    assert by_model.value.detail == expected
