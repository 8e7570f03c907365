"""Each collector probe replayed against a running collector (real server, real producer, embedded broker)."""

from __future__ import annotations

import gzip
import socket
import time

import orjson
import pytest
import requests

from pipeline.supervisor.broker import EmbeddedBroker
from pipeline.wire.records import decode_batch
from pipeline.settings import Settings
from tests.collector.conftest import basic
from tests.collector.harness import CollectorThread, collector_settings, read_topic

pytestmark = pytest.mark.integration

KEY = "wk_probe"
AUTH = basic(KEY)


@pytest.fixture(scope="module")
def broker():
    with EmbeddedBroker() as running:
        yield running


@pytest.fixture(scope="module")
def settings(broker: EmbeddedBroker) -> Settings:
    return collector_settings(broker.bootstrap, "probe", partitions=1, write_key=KEY, tenant="shop-probe")


@pytest.fixture(scope="module")
def collector(settings: Settings, broker: EmbeddedBroker):
    running = CollectorThread(settings, broker.bootstrap).start()
    yield running
    running.stop()


def track(n: int) -> dict:
    return {"type": "track", "event": "Probe", "anonymousId": "a-1", "messageId": f"probe-{n}"}


def test_slow_unauthenticated_connections_do_not_starve_valid_requests(collector: CollectorThread) -> None:
    socks = []
    try:
        for _ in range(135):
            s = socket.create_connection(("127.0.0.1", collector.settings.collector_port), timeout=5)
            s.sendall(b"POST /v1/batch HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{\r\n")
            socks.append(s)
        time.sleep(1.0)
        for s in socks:  # one more byte each, as a slow client would
            s.sendall(b"1\r\n \r\n")
        started = time.monotonic()
        resp = requests.post(f"{collector.url}/v1/batch", json={"batch": [track(1)]}, headers=AUTH, timeout=10)
        assert resp.status_code == 200
        assert time.monotonic() - started < 3.0
    finally:
        for s in socks:
            s.close()


def test_two_gzip_members_are_both_read(collector: CollectorThread, broker: EmbeddedBroker) -> None:
    body = gzip.compress(b'{"batch": [' + orjson.dumps(track(10)) + b",") + gzip.compress(orjson.dumps(track(11)) + b"]}")
    resp = requests.post(
        f"{collector.url}/v1/batch", data=body, headers={**AUTH, "Content-Encoding": "gzip"}, timeout=10
    )
    assert resp.status_code == 200
    def ids(records: list) -> set[str]:
        return {e["event_id"] for m in records for e in decode_batch(m.value())}

    records = read_topic(broker.bootstrap, collector.settings.topic_events, lambda r: {"probe-10", "probe-11"} <= ids(r), timeout_s=5)
    assert {"probe-10", "probe-11"} <= ids(records)


def _stream(sent: list[int], first: bytes, filler_mb: int):
    yield first
    sent.append(len(first))
    for _ in range(filler_mb * 16):
        chunk = b"\0" * 65_536
        yield chunk
        sent.append(len(chunk))


def _post_stream(url: str, headers: dict, first: bytes, filler_mb: int) -> tuple[int | None, int, float]:
    sent: list[int] = []
    started = time.monotonic()
    try:
        status = requests.post(url, data=_stream(sent, first, filler_mb), headers=headers, timeout=30).status_code
    except requests.ConnectionError:
        status = None  # the server answered and closed while the client still sent
    return status, sum(sent), time.monotonic() - started


def test_trailing_bytes_after_a_gzip_member_are_not_read(collector: CollectorThread) -> None:
    status, sent, took = _post_stream(
        f"{collector.url}/v1/batch", {**AUTH, "Content-Encoding": "gzip"}, gzip.compress(b'{"batch": []}'), 100
    )
    assert status in (400, None)
    assert sent < 16 * 1024 * 1024 and took < 10  # stopped long before 100 MB


def test_a_request_without_a_key_is_refused_before_its_body(collector: CollectorThread) -> None:
    status, sent, took = _post_stream(f"{collector.url}/v1/batch", {}, b'{"batch": [', 20)
    assert status in (401, None)
    assert sent < 8 * 1024 * 1024 and took < 10


def test_a_huge_authorization_header_is_refused_without_echo(collector: CollectorThread) -> None:
    header = "Basic " + "QUFB" * 262_144  # 1 MB
    with socket.create_connection(("127.0.0.1", collector.settings.collector_port), timeout=10) as s:
        try:
            s.sendall(f"POST /v1/batch HTTP/1.1\r\nHost: x\r\nAuthorization: {header}\r\nContent-Length: 2\r\n\r\n{{}}".encode())
        except OSError:
            pass  # the server may close before the header is fully sent
        answer = b""
        try:
            while chunk := s.recv(65_536):
                answer += chunk
        except OSError:
            pass
    assert answer.split(b" ", 2)[1] == b"400", answer[:80]
    assert b"bad_request" in answer
    assert b"QUFB" not in answer
