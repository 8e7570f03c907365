"""Fuzzing ``cxstream backtest --file``: any file of stored events replays, or stops with one line.

A backtest file is an export a person may have edited: each line a stored
event (a ``cx.events`` row, or ``--export``'s), with any field of any JSON
type, and properties of any shape in its JSON text. Each example writes a
file of a few cart journeys (adds, checkouts, orders, page views, identify
calls, one or two customers on two devices) with random fields replaced,
loads it with ``load_file`` and replays it through both stages
(``replay``), as the command does before its stores are written. Either
the replay runs, or a ``BacktestError`` says why in one line (a line
number, or the event that detection refused); before the load checked the
stored fields' types, an ``anonymous_id`` of 5 ended in a traceback.

Not an integration test: no Kafka or ClickHouse (the stores the command
then writes are tested in ``tests/test_backtest.py``).
"""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.detect import Rules
from pipeline.settings import Settings
from pipeline.tools.backtest import BacktestError, load_file, replay
from tests.fuzz.conftest import RUN_LENGTHS, fuzz_settings
from tests.fuzz.strategies import json_values, text

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
FIELDS = ["event", "anonymous_id", "user_id", "received_at_ms", "sent_at_ms", "session_hint", "page_path",
          "page_url", "page_referrer", "user_agent", "locale", "ip_hash", "properties", "traits", "context",
          "type", "event_time_ms", "event_id", "tenant", "kafka_partition", "kafka_offset"]  # fmt: skip
# Property names the detectors read, and values of every kind for them.
PROPERTY_NAMES = ["cart_id", "product_id", "price", "quantity", "order_id", "revenue", "total", "currency",
                  "checkout_id", "step", "error", "selector", "query", "results", "rating", "score",
                  "channel", "ticket_id", "products", "consent_marketing"]  # fmt: skip
property_values = st.one_of(
    json_values(6), st.integers(-3, 3), st.floats(-1e6, 1e6), st.sampled_from(["", "0", "-1", "1e309", "abc"])
)
# What a real cart event says; each example overrides some of it with odd values.
SENSIBLE = {"cart_id": "k1", "product_id": "p1", "price": 12.5, "quantity": 1, "order_id": "o1", "revenue": 25.0,
            "checkout_id": "ch1", "currency": "EUR"}  # fmt: skip
properties = st.dictionaries(st.sampled_from(PROPERTY_NAMES) | text, property_values, max_size=6)

JOURNEY = [  # (type, event name): a visit that fills a cart and may check out and order
    ("page", None), ("track", "Product Added"), ("track", "Product Added"), ("track", "Checkout Started"),
    ("track", "Payment Failed"), ("identify", None), ("track", "Order Completed"), ("track", "Product Removed"),
    ("track", "Support Ticket Opened"), ("track", "Survey Answered"),
]  # fmt: skip


@st.composite
def stored_lines(draw: st.DrawFn) -> list[bytes]:
    lines = []
    for i in range(draw(st.integers(1, 14))):
        call, name = draw(st.sampled_from(JOURNEY))
        event = {
            "event_id": f"e{i}", "tenant": "shop", "type": call, "event": name,
            "anonymous_id": draw(st.sampled_from(["a1", "a2", "b1"])),
            "user_id": draw(st.sampled_from([None, None, "c1", "c2"])),
            "event_time_ms": T0 + draw(st.integers(0, 6 * 3_600_000)), "received_at_ms": T0,
            "properties": orjson.dumps({**SENSIBLE, **draw(properties)}).decode(), "traits": "{}", "context": "{}",
        }  # fmt: skip
        if draw(st.integers(0, 7)) == 0:  # seldom, so that most files get past the load to the replay
            for key in draw(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=3, unique=True)):
                event[key] = draw(json_values(6))  # any JSON where a field was
        if draw(st.booleans()):  # properties as JSON text of anything
            event["properties"] = orjson.dumps(draw(json_values(8))).decode()
        lines.append(orjson.dumps(event))
    return lines


@pytest.mark.parametrize("run", RUN_LENGTHS)
def test_any_file_of_stored_events_replays_or_stops_with_one_line(run, tmp_path_factory) -> None:
    settings = Settings.load(_env_file=None, pii_salt="fuzz-salt")
    rules = Rules.from_settings(settings)
    folder = tmp_path_factory.mktemp("fuzz-backtest")
    outcome = {"replayed": 0, "refused": 0}

    @fuzz_settings(run, 150)
    @given(lines=stored_lines())
    def example(lines: list[bytes]) -> None:
        path = folder / "events.jsonl"
        path.write_bytes(b"\n".join(lines) + b"\n")
        try:
            loaded = load_file(path, "shop", settings, partitions=2)
            replay(rules, loaded.partitions, lambda outputs: None)
        except BacktestError as exc:
            assert "\n" not in str(exc)
            outcome["refused"] += 1
        else:
            outcome["replayed"] += 1

    example()
    # Both ends were reached: files that replay and files that are refused.
    assert outcome["replayed"] > 0 and outcome["refused"] > 0, outcome
