"""Event ids (``pipeline.detect.ids``): the first event accepted under an id wins."""

from __future__ import annotations

from pipeline.detect.ids import (
    CONFLICT,
    DUPLICATE,
    FINGERPRINT_EXCLUDED,
    FINGERPRINT_KEYS,
    NEW,
    UNKNOWN_FINGERPRINT,
    IdGate,
    fingerprint,
    judge_record,
    version,
)
from pipeline.wire.records import Event

T0 = 1_764_547_200_000  # 2025-12-01T00:00:00Z


def order(anon: str = "anon-a", event_id: str = "X", **extra: object) -> dict:
    return {
        "event_id": event_id,
        "tenant": "shop",
        "type": "track",
        "event": "Order Completed",
        "anonymous_id": anon,
        "user_id": None,
        "event_time_ms": T0,
        "received_at_ms": T0 + 40,
        "sent_at_ms": T0 + 20,
        "properties": '{"order_id":"o-1","revenue":30.0}',
        "traits": "{}",
        "context": "{}",
        **extra,
    }


def test_every_event_field_is_either_fingerprinted_or_a_time() -> None:
    assert set(FINGERPRINT_KEYS) | set(FINGERPRINT_EXCLUDED) == set(Event.model_fields)
    assert not set(FINGERPRINT_KEYS) & set(FINGERPRINT_EXCLUDED)


def test_a_resend_with_new_times_has_the_same_fingerprint() -> None:
    # an SDK retry: new sentAt, received later, so the corrected event time moved 3 ms
    first = order()
    retry = order(event_time_ms=T0 + 3, sent_at_ms=T0 + 5_020, received_at_ms=T0 + 5_043)
    assert fingerprint(retry) == fingerprint(first)


def test_other_content_under_the_same_id_has_another_fingerprint() -> None:
    first = order()
    assert fingerprint(order(anon="anon-b")) != fingerprint(first)  # another visitor
    assert fingerprint(order(event="Product Viewed")) != fingerprint(first)
    assert fingerprint(order(properties='{"order_id":"o-1","revenue":31.0}')) != fingerprint(first)
    assert fingerprint(order(user_id="u-1")) != fingerprint(first)


def test_absent_and_none_fields_hash_alike_and_the_fingerprint_is_never_unknown() -> None:
    with_none = order(page_url=None)
    assert fingerprint(with_none) == fingerprint(order())
    assert fingerprint(order()) != UNKNOWN_FINGERPRINT


def test_a_complete_event_and_one_missing_a_key_keep_their_stored_fingerprints() -> None:
    # cx.events holds these numbers: a faster fingerprint must compute the same ones,
    # for an event with every key (the collector's) and for an older one without context.
    complete = dict.fromkeys(FINGERPRINT_KEYS) | order(
        page_url="https://shop.example/checkout?step=2", locale="de-DE"
    )
    assert fingerprint(complete) == 10090454720361125171
    without_context = {k: v for k, v in complete.items() if k != "context"}
    assert fingerprint(without_context) == 10142207864165329940


def test_worker_row_keys_do_not_change_the_fingerprint() -> None:
    # event_row computes it from the row dict, which adds session_id, cart_key, props
    row = {**order(), "session_id": "s-1", "cart_key": "c", "props": {"order_id": "o-1"}}
    assert fingerprint(row) == fingerprint(order())


def test_earlier_receipt_has_the_higher_version() -> None:
    fp_a, fp_b = 0x1234, 0xFFFF_FFFF_FFFF_FFFF
    assert version(T0, fp_a) > version(T0 + 1, fp_b)
    assert version(T0, fp_b) > version(T0 + 1, fp_a)
    # the same receipt and content: the same version, as on a replay
    assert version(T0, fp_a) == version(T0, fp_a)
    # the same millisecond: the fingerprint's low 22 bits order them
    assert version(T0, 2) > version(T0, 1)
    assert version(T0, 1) < 2**64 and version(0, 0xFFFF_FFFF_FFFF_FFFF) == 2**64 - 1


def test_version_by_hand() -> None:
    # (2^42 - 1 - received_at_ms) << 22 | (fp & (2^22 - 1))
    assert version(1_000, 5) == (4_398_046_511_103 - 1_000) * 4_194_304 + 5
    assert version(1_000, 4_194_304 + 7) == (4_398_046_511_103 - 1_000) * 4_194_304 + 7


def test_gate_first_event_wins_and_a_different_payload_is_a_conflict() -> None:
    gate = IdGate()
    a, b = fingerprint(order()), fingerprint(order(anon="anon-b", event="Product Viewed"))
    assert gate.judge("shop", "X", a) == NEW
    assert gate.judge("shop", "X", b) == CONFLICT  # another visitor reuses the id
    assert gate.judge("shop", "X", a) == DUPLICATE  # the same event again
    assert gate.judge("shop", "X", b) == CONFLICT  # still the first one's id


def test_gate_same_visitor_same_id_other_payload_is_a_conflict() -> None:
    gate = IdGate()
    assert gate.judge("shop", "X", fingerprint(order())) == NEW
    assert gate.judge("shop", "X", fingerprint(order(event="Product Viewed"))) == CONFLICT


def test_gate_ids_are_per_tenant() -> None:
    gate = IdGate()
    assert gate.judge("shop", "X", 11) == NEW
    assert gate.judge("other-shop", "X", 22) == NEW


def test_gate_judges_against_what_clickhouse_holds() -> None:
    gate = IdGate({("shop", "X"): 11, ("shop", "OLD"): UNKNOWN_FINGERPRINT})
    assert gate.judge("shop", "X", 22) == CONFLICT
    assert gate.judge("shop", "X", 11) == DUPLICATE
    # a row stored before fingerprints: content unknown, a duplicate as before
    assert gate.judge("shop", "OLD", 33) == DUPLICATE
    assert gate.judge("shop", "Y", 44) == NEW


def test_gate_of_the_next_window_knows_the_previous_windows_ids_but_not_older_ones() -> None:
    # Window 1 takes X; its rows are still being written when window 2 opens,
    # so window 2 must judge X itself. By window 3, window 1's rows are
    # stored and a lookup finds them: the gate no longer needs to carry X.
    first = IdGate()
    assert first.judge("shop", "X", 11) == NEW
    second = IdGate(previous=first)
    assert ("shop", "X") in second
    assert second.judge("shop", "X", 22) == CONFLICT
    assert second.judge("shop", "X", 11) == DUPLICATE
    assert second.judge("shop", "Y", 33) == NEW
    third = IdGate(previous=second)
    assert ("shop", "X") not in third and ("shop", "Y") in third
    third.add_stored({("shop", "X"): 11, ("shop", "Y"): 99})  # the lookup; Y's judged 33 stays
    assert third.judge("shop", "X", 22) == CONFLICT
    assert third.judge("shop", "Y", 33) == DUPLICATE


def test_judge_record_keeps_new_and_duplicate_events_and_returns_conflicts() -> None:
    gate = IdGate({("shop", "X"): fingerprint(order())})
    resend, other, fresh = order(), order(anon="anon-b", event="Product Viewed"), order(event_id="Z")
    kept, conflicts = judge_record(gate, [resend, other, fresh])
    assert kept == [resend, fresh]
    assert conflicts == [(1, other, fingerprint(other))]
    assert [e["payload_hash"] for e in (resend, other, fresh)] == [fingerprint(order()), fingerprint(other),
                                                                    fingerprint(order(event_id="Z"))]
    # nothing conflicts: the record's own list comes back
    events = [order(event_id="W")]
    assert judge_record(IdGate(), events)[0] is events
