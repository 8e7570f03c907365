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
        out.append(("message", body["c"]) if body["m"] == "candidate" else ("promise", partition, tuple(body["k"])))
    return out


def test_a_message_goes_out_with_every_partitions_promise_even_within_the_interval(worker: Worker) -> None:
    sent = worker.customer_writer
    worker._send_customer_messages()  # the first promises
    assert _what(sent.sends[0]) == [
        ("promise", 0, (1_000, 0, 0, 0)), ("promise", 1, (1_000, 0, 0, 0)),
        ("promise", 0, (1_000, 1, 0, 0)), ("promise", 1, (1_000, 1, 0, 0)),
    ]  # fmt: skip
    device0, device1 = worker.processors[0].proc, worker.processors[1].proc
    device0.watermark = device1.watermark = 1_040  # both partitions moved on, a few ms later
    device0.emit("c-1")
    worker._send_customer_messages()
    assert _what(sent.sends[1]) == [
        ("message", "c-1"),
        ("promise", 0, (1_040, 0, 1, 0)), ("promise", 1, (1_040, 0, 1, 0)),
        ("promise", 0, (1_040, 1, 0, 0)), ("promise", 1, (1_040, 1, 0, 0)),
    ]  # fmt: skip
    assert sent.sends[1][0][0] == ANY_PARTITION  # a message goes by its customer's key


def test_without_messages_promises_wait_for_the_interval(worker: Worker) -> None:
    sent = worker.customer_writer
    worker._send_customer_messages()
    worker.processors[0].proc.watermark = 1_040
    worker._send_customer_messages()  # within PROMISE_INTERVAL_S, nothing to send with it
    assert len(sent.sends) == 1
    worker._send_customer_messages(force=True)  # the idle tick
    assert _what(sent.sends[1]) == [("promise", 0, (1_040, 0, 0, 0)), ("promise", 1, (1_040, 0, 0, 0))]
