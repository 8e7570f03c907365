"""Sending with the real Segment SDK: pacing, delivery to a recording collector, reported failures."""

from __future__ import annotations

import asyncio
import base64
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import datetime

import orjson
import pytest
from aiohttp import web

from pipeline.supervisor.ports import free_port
from pipeline.demo.send import Pacer, send
from pipeline.demo.storefront import generate
from tests.demo.contract_reading import invalid_reason

START = 1_767_225_600_000  # 2026-01-01T00:00:00Z
WRITE_KEY = "wk_demo_test"


def test_pacer_without_limits_sends_everything_at_once() -> None:
    assert Pacer().due_s(1_000, START + 3_600_000, START) == 0.0


def test_pacer_rate_spaces_messages_evenly() -> None:
    assert Pacer(rate_per_s=200).due_s(50, START, START) == 0.25


def test_pacer_speedup_compresses_event_time() -> None:
    # a message 24 h after the first, at speedup 1440, is due one minute after the start
    assert Pacer(speedup=1440).due_s(3, START + 86_400_000, START) == 60.0


def test_pacer_with_both_waits_for_the_later_moment() -> None:
    pacer = Pacer(rate_per_s=10, speedup=1000)
    assert pacer.due_s(5, START + 1_000, START) == 0.5  # rate is the later: 5 / 10 s
    assert pacer.due_s(5, START + 2_000_000, START) == 2.0  # event time is the later: 2000 s / 1000


@pytest.mark.parametrize("kwargs", [{"rate_per_s": 0}, {"speedup": -1}])
def test_pacer_refuses_non_positive_settings(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        Pacer(**kwargs)


class RecordingCollector:
    """A stand-in for the collector's ``POST /v1/batch``: records bodies, checks basic auth."""

    def __init__(self) -> None:
        self.batches: list[dict] = []
        self.auth_headers: set[str] = set()
        self.encodings: set[str] = set()

    async def batch(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        self.auth_headers.add(auth)
        if auth != "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode():
            return web.json_response({"code": "unauthorized", "message": "unknown write key"}, status=401)
        self.encodings.add(request.headers.get("Content-Encoding", "identity"))
        self.batches.append(orjson.loads(await request.read()))  # aiohttp inflates gzip bodies itself
        return web.json_response({"success": True})

    @property
    def events(self) -> list[dict]:
        return [event for body in self.batches for event in body["batch"]]


@pytest.fixture
async def collector() -> AsyncIterator[tuple[RecordingCollector, str]]:
    recorder = RecordingCollector()
    app = web.Application()
    app.router.add_post("/v1/batch", recorder.batch)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield recorder, f"http://127.0.0.1:{port}"
    await runner.cleanup()


def _fifty_messages() -> list[dict]:
    """49 messages, then the stream's first deliberately invalid one (still a valid Segment call)."""
    messages = generate(9, visitors=40, start_ms=START, span_ms=3_600_000).messages
    broken = next(m for m in messages[49:] if invalid_reason(m) is not None)
    return messages[:49] + [broken]


async def test_sdk_delivers_exactly_the_sent_message_ids(collector) -> None:
    recorder, host = collector
    messages = _fifty_messages()
    report = await asyncio.to_thread(send, messages, host=host, write_key=WRITE_KEY, rate_per_s=200)

    assert (report.sent, report.failed, report.errors) == (50, 0, [])  # the SDK lets the broken event through
    assert report.seconds >= 49 / 200  # paced, not dumped
    assert recorder.auth_headers == {"Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()}
    received = recorder.events
    assert sorted(e["messageId"] for e in received) == sorted(m["messageId"] for m in messages)
    # Simulated timestamps survive the SDK (it rewrites them as +00:00 ISO strings).
    by_id = {m["messageId"]: m for m in messages}
    for event in received:
        sent = by_id[event["messageId"]]
        assert datetime.fromisoformat(event["timestamp"]) == datetime.fromisoformat(sent["timestamp"])
        assert (event["type"], event.get("event"), event.get("anonymousId")) == (
            sent["type"], sent.get("event"), sent.get("anonymousId"),
        )
    # Each visitor's events arrive in the order they were sent.
    sent_order, got_order = defaultdict(list), defaultdict(list)
    for m in messages:
        sent_order[m.get("anonymousId") or m.get("userId")].append(m["messageId"])
    for e in received:
        got_order[e.get("anonymousId") or e.get("userId")].append(e["messageId"])
    assert got_order == sent_order


async def test_several_clients_still_deliver_everything(collector) -> None:
    recorder, host = collector
    messages = _fifty_messages()
    report = await asyncio.to_thread(send, messages, host=host, write_key=WRITE_KEY, clients=3, gzip=True)
    assert (report.sent, report.failed) == (50, 0)
    assert recorder.encodings == {"gzip"}
    assert sorted(e["messageId"] for e in recorder.events) == sorted(m["messageId"] for m in messages)


async def test_rejected_batches_are_reported_as_failed_not_dropped(collector) -> None:
    recorder, host = collector
    messages = _fifty_messages()[:20]
    report = await asyncio.to_thread(send, messages, host=host, write_key="wk_unknown", max_retries=0)
    assert (report.sent, report.failed) == (0, 20)
    assert report.errors and "401" in report.errors[0]
    assert recorder.batches == []
