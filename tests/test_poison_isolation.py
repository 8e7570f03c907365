"""Poison input: one record that raises leaves no trace, becomes a dead letter, and the partition goes on."""

from __future__ import annotations

import orjson
import pytest

from pipeline.collector.ingest import ingest
from pipeline.collector.normalize import NormalizeRules
from pipeline.detect.isolation import IsolatedPartition
from pipeline.detect.processor import PartitionProcessor
from pipeline.detect.rules import Rules
from pipeline.wire.records import MAX_JSON_DEPTH, TooDeep, json_depth_exceeds, parse_bounded, truncate_depth
from pipeline.settings import Settings
from sinks.rows import deadletter_row

T0 = 1_700_000_000_000


def _event(i: int, **extra) -> dict:
    return {"tenant": "t", "event_id": f"e{i}", "type": "track", "event": "Product Viewed",
            "anonymous_id": "a1", "event_time_ms": T0 + i * 1000, "received_at_ms": T0 + i * 1000,
            "properties": '{"product_id": "p1", "price": 5}', **extra}


def _outputs(records: list[tuple[int, list[dict]]]) -> tuple[list, dict]:
    stored: dict[str, bytes] = {}
    part = IsolatedPartition(lambda: PartitionProcessor(Rules.from_settings(Settings()), stored.get))
    rejected = []
    for offset, events in records:
        rejected += [(r.offset, r.index, type(r.error).__name__) for r in part.process(offset, events, T0)]
    out = part.drain()
    return rejected, {"rows": out.rows, "triggers": out.triggers, "states": out.states, "facts": out.facts}


@pytest.mark.parametrize(
    "poison",
    [_event(9, event=["x"]), _event(9, event="Survey Answered", properties='{"survey": "nps"}'),
     _event(9, properties="[" * 300 + "]" * 300)],
    ids=["event-is-a-list", "survey-without-score", "properties-too-deep"],
)
def test_a_poison_event_leaves_no_trace_and_later_records_apply(poison: dict) -> None:
    clean_rejected, clean = _outputs([(0, [_event(1)]), (2, [_event(3)])])
    rejected, dirty = _outputs([(0, [_event(1)]), (1, [_event(2), poison]), (2, [_event(3)])])
    _, with_good = _outputs([(0, [_event(1)]), (1, [_event(2)]), (2, [_event(3)])])
    assert clean_rejected == []
    if poison["event"] == "Survey Answered":  # refused by the collector; safe here: stored, no survey row
        assert rejected == []
        assert len(dirty["rows"]) == 4
    else:
        assert [r[:2] for r in rejected] == [(1, 1)]  # only the poison event of record 1
        assert dirty == with_good  # exactly as if the poison event had never been sent


def test_depth_helpers_count_levels_and_cut_past_the_limit() -> None:
    assert not json_depth_exceeds([[1]], 2) and json_depth_exceeds([[[1]]], 2)
    deep = orjson.loads("[" * 1000 + "]" * 1000)
    assert json_depth_exceeds(deep)
    with pytest.raises(TooDeep):
        parse_bounded("[" * 300 + "]" * 300)
    cut = truncate_depth(deep, 3)
    assert cut == [[[f"<nested deeper than 3 levels>"]]]


def test_a_dead_letter_with_a_payload_nested_260_deep_becomes_a_row_without_payload() -> None:
    payload = "[" * 260 + "1" + "]" * 260
    row = deadletter_row({"dl_id": "d", "tenant": "t", "reason": "bad_json", "payload": payload,
                          "received_at_ms": T0, "source": "collector"})
    assert row[7] == "" and row[8] == 521


@pytest.mark.parametrize("depth", [254, 300, 1024])
def test_the_collector_dead_letters_a_too_deep_message_and_keeps_the_good_one(depth: int) -> None:
    deep: object = 1
    for _ in range(depth - 1):
        deep = [deep]
    good = {"type": "track", "event": "Cart Viewed", "anonymousId": "a", "messageId": "m1"}
    bad = {"type": "track", "event": "Cart Viewed", "anonymousId": "a", "properties": {"x": deep}}
    out = ingest([good, bad], tenant="t", received_at_ms=T0, batch_sent_at=None,
                 rules=NormalizeRules.from_settings(Settings()))
    assert [e["event_id"] for e in out.events] == ["m1"] or len(out.events) == 1
    assert [d.reason for d in out.dead_letters] == ["bad_json"]
    assert f"nested deeper than {MAX_JSON_DEPTH}" in out.dead_letters[0].detail


def test_a_too_deep_messages_dead_letter_payload_is_scrubbed() -> None:
    deep: object = 1
    for _ in range(300):
        deep = [deep]
    bad = {"type": "track", "event": "Cart Viewed", "anonymousId": "a", "messageId": "m-deep",
           "properties": {"note": "mail ann@example.com", "customerEmail": "bo@example.org", "x": deep}}
    out = ingest([bad], tenant="t", received_at_ms=T0, batch_sent_at=None,
                 rules=NormalizeRules.from_settings(Settings(pii_salt="s")))
    (dl,) = out.dead_letters
    assert dl.reason == "bad_json" and '"messageId":"m-deep"' in dl.payload
    assert "ann@example.com" not in dl.payload and "bo@example.org" not in dl.payload
    assert "email_hash:" in dl.payload and '"customerEmail_hash":"' in dl.payload
