"""When the worker sends the device partitions' promises to the customer stage (``Worker._send_customer_messages``).

The customer stage releases a message only once every device partition's
promise is above it, so a promise held back by the interval holds the
message back too.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.detect.customer import CustomerProcessor, bad_message, each_message
from pipeline.detect.rules import Rules
from pipeline.runtime.faust_adapter import create_app
from pipeline.runtime.worker import ANY_PARTITION, Worker
from pipeline.settings import Settings


class _Sent:
    def __init__(self) -> None:
        self.sends: list[list[tuple[int, bytes, bytes]]] = []

    def send(self, records: list[tuple[int, bytes, bytes]]) -> None:
        self.sends.append(records)


class _Device:
    """A device partition's processor as the worker sees it: new messages and its promise."""

    def __init__(self, source: int) -> None:
        self.source, self.watermark, self.position = source, 1_000, 0
        self.pending = SimpleNamespace(messages=[])

    def announcement(self) -> tuple[int, int, int, int]:
        return (self.watermark, self.source, self.position, 0)

    def emit(self, customer: str) -> None:
        self.pending.messages.append({"m": "candidate", "t": "shop", "c": customer, "k": [self.watermark, self.source, self.position, 0]})
        self.position += 1


@pytest.fixture
def worker(tmp_path: Path) -> Worker:
    settings = Settings(_env_file=None, data_dir=tmp_path, kafka_partitions=2)
    w = Worker(create_app(settings, "127.0.0.1:1"), settings, ch=None)  # type: ignore[arg-type] - nothing inserted
    w.customer_writer = _Sent()  # type: ignore[assignment]
    w.processors = {0: SimpleNamespace(proc=_Device(0), rebuilds=0), 1: SimpleNamespace(proc=_Device(1), rebuilds=0)}  # type: ignore[assignment]
    return w


def _what(records: list[tuple[int, bytes, bytes]]) -> list[tuple]:
    out = []
    for partition, _key, value in records:
        body = orjson.loads(value)
        if body["m"] == "candidate":
            out.append(("message", body["c"]))
        else:
            assert body["m"] == "watermarks"
            out.append(("promises", partition, *(tuple(k) for k in body["ks"])))
    return out


def test_a_message_goes_out_with_every_partitions_promise_even_within_the_interval(worker: Worker) -> None:
    sent = worker.customer_writer
    worker._send_customer_messages()  # the first promises
    assert _what(sent.sends[0]) == [
        ("promises", 0, (1_000, 0, 0, 0), (1_000, 1, 0, 0)),
        ("promises", 1, (1_000, 0, 0, 0), (1_000, 1, 0, 0)),
    ]  # fmt: skip
    device0, device1 = worker.processors[0].proc, worker.processors[1].proc
    device0.watermark = device1.watermark = 1_040  # both partitions moved on, a few ms later
    device0.emit("c-1")
    worker._send_customer_messages()
    assert _what(sent.sends[1]) == [
        ("message", "c-1"),
        ("promises", 0, (1_040, 0, 1, 0), (1_040, 1, 0, 0)),
        ("promises", 1, (1_040, 0, 1, 0), (1_040, 1, 0, 0)),
    ]  # fmt: skip
    assert sent.sends[1][0][0] == ANY_PARTITION  # a message goes by its customer's key


def test_without_messages_promises_wait_for_the_interval(worker: Worker) -> None:
    sent = worker.customer_writer
    worker._send_customer_messages()
    worker.processors[0].proc.watermark = 1_040
    worker._send_customer_messages()  # within PROMISE_INTERVAL_S, nothing to send with it
    assert len(sent.sends) == 1
    worker._send_customer_messages(force=True)  # the idle tick
    assert _what(sent.sends[1]) == [("promises", 0, (1_040, 0, 0, 0)), ("promises", 1, (1_040, 0, 0, 0))]


def test_promises_name_the_receive_time_of_the_records_that_moved_them(worker: Worker) -> None:
    sent = worker.customer_writer
    worker._promise_cause[1] = ((1_000, 1, 0, 0), 1_796_000_000_123)  # partition 1's records moved its promise
    worker._send_customer_messages()
    bodies = [orjson.loads(value) for _q, _key, value in sent.sends[0]]
    assert bodies == [{"m": "watermarks", "ks": [[1_000, 0, 0, 0], [1_000, 1, 0, 0]], "rs": [None, 1_796_000_000_123]}] * 2


def _customer_record(worker: Worker, partition: int, offset: int, body: dict) -> bytes | None:
    msg = SimpleNamespace(topic=worker.settings.customers_topic, partition=partition, offset=offset,
                          value=orjson.dumps(body), timestamp=1_796_000_000.0, key=b"")  # fmt: skip
    return worker._customer_record(msg, now_ms=1_796_000_001_000)  # type: ignore[arg-type]


def test_one_record_of_both_promises_releases_what_two_records_release(tmp_path: Path) -> None:
    candidate = {"m": "candidate", "t": "shop", "c": "c-1", "ts": 500, "vis": "anon-1", "since": 0, "k": [500, 0, 3, 0],
                 "trig": {"trigger_id": "t-1", "kind": "cart_abandoned", "event_time_ms": 500, "cart_key": "cart-1",
                          "cart_value": 40.0, "checkouts": []}}  # fmt: skip
    released = []
    for records in (
        [{"m": "watermark", "k": [900, 0, 4, 0]}, {"m": "watermark", "k": [900, 1, 7, 0]}],
        [{"m": "watermarks", "ks": [[900, 0, 4, 0], [900, 1, 7, 0]]}],
    ):
        settings = Settings(_env_file=None, data_dir=tmp_path / str(len(records)), kafka_partitions=2)
        w = Worker(create_app(settings, "127.0.0.1:1"), settings, ch=None)  # type: ignore[arg-type]
        assert _customer_record(w, 0, 0, candidate) is None
        assert w.customer(0).pending.triggers == []  # held until both device partitions promised past it
        for offset, body in enumerate(records, start=1):
            assert _customer_record(w, 0, offset, body) is None
        released.append([(t["trigger_id"], t["kind"], t["action"]) for t in w.customer(0).pending.triggers])
    assert released[0] == released[1] == [("t-1", "cart_abandoned", "none")]


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"m": "watermarks", "ks": []}, "watermarks needs ks = 1 to 2 keys [ms, source, offset, index]"),
        ({"m": "watermarks", "ks": [[900, 2, 0, 0]]}, "watermarks needs ks = 1 to 2 keys [ms, source, offset, index]"),
        ({"m": "watermarks", "ks": [[900, 0, 0, 0]] * 3}, "watermarks needs ks = 1 to 2 keys [ms, source, offset, index]"),
        ({"m": "watermarks", "ks": [[900, 0, 0]]}, "watermarks needs ks = 1 to 2 keys [ms, source, offset, index]"),
        ({"m": "watermarks", "ks": [[900, 0, 0, 0]], "rs": [1, 2]}, "watermarks: rs must give one receive time (or null) per key"),
        ({"m": "watermarks", "ks": [[900, 0, 0, 0]], "rs": [True]}, "watermarks: rs must give one receive time (or null) per key"),
    ],
)
def test_a_malformed_promises_record_is_a_dead_letter_and_moves_nothing(worker: Worker, body: dict, problem: str) -> None:
    dead = _customer_record(worker, 1, 5, body)
    assert dead is not None
    letter = orjson.loads(dead)
    assert letter["reason"] == "processing_error"
    assert letter["detail"] == f"{worker.settings.customers_topic}[1]@5 is not a customer-stage message: {problem}"
    assert worker.customer(1).merge.announced == [None, None]


def test_each_message_splits_promises_and_keeps_their_receive_times() -> None:
    record = {"m": "watermarks", "ks": [[900, 0, 4, 0], [910, 1, 7, 0]], "rs": [None, 123]}
    assert each_message(record) == [{"m": "watermark", "k": [900, 0, 4, 0]}, {"m": "watermark", "k": [910, 1, 7, 0], "r": 123}]
    assert each_message({"m": "idle", "src": 1}) == [{"m": "idle", "src": 1}]


_ints = st.integers(min_value=-(2**63), max_value=2**63 - 1)
_valid_key = st.tuples(st.integers(0, 2**42), st.integers(0, 3), st.integers(0, 2**40), st.integers(0, 50)).map(list)
_keys = st.one_of(_valid_key, st.lists(_ints, min_size=4, max_size=4), st.none(), st.text(max_size=3),
                  st.lists(st.booleans(), min_size=4, max_size=4), st.lists(st.integers(0, 3), max_size=5))  # fmt: skip
_receive_times = st.one_of(st.none(), st.integers(0, 2**42), st.booleans(), st.text(max_size=2))


@st.composite
def _promise_records(draw: st.DrawFn) -> dict:
    """Records for cx.customers as the worker writes them, and as a stranger might."""
    kind = draw(st.sampled_from(["watermarks", "watermarks", "watermark", "idle"]))
    record: dict = {"m": kind}
    if kind == "watermarks":
        keys = draw(st.one_of(st.lists(_valid_key, min_size=1, max_size=4), st.lists(_keys, max_size=6), _keys))
        record["ks"] = keys
        if draw(st.booleans()):
            n = len(keys) if isinstance(keys, list) and draw(st.integers(0, 3)) else draw(st.integers(0, 6))
            record["rs"] = draw(st.one_of(st.lists(_receive_times, min_size=n, max_size=n), _receive_times))
    elif kind == "watermark":
        record["k"] = draw(_keys)
    else:
        record["src"] = draw(st.one_of(st.integers(-2, 6), st.text(max_size=2)))
    return record


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=st.lists(_promise_records(), max_size=8))
def test_any_promise_record_is_refused_with_a_reason_or_applied_without_error(records: list[dict]) -> None:
    proc = CustomerProcessor(Rules(), lambda key: None, sources=4)
    for record in records:
        problem = bad_message(record, 4)
        if problem is not None:
            assert isinstance(problem, str) and problem
            continue
        parts = each_message(record)
        assert parts and all(bad_message(part, 4) is None for part in parts)
        for part in parts:
            proc.add(part, wall_ms=0)
    announced = [a for a in proc.merge.announced if a is not None]
    assert all(len(a) == 4 and 0 <= a[1] < 4 for a in announced)
