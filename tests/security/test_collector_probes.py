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


@pytest.fixture(scope="module")
def strict(broker: EmbeddedBroker):
    """A collector that gives a connection 2 s to send its headers and keeps at most 20 waiting for them."""
    settings = collector_settings(
        broker.bootstrap, "probe-headers", partitions=1, write_key=KEY, tenant="shop-probe",
        collector_header_timeout_s=2.0, collector_max_pending_connections=20,
    )  # fmt: skip
    running = CollectorThread(settings, broker.bootstrap).start()
    yield running
    running.stop()


def _closed_by_server(s: socket.socket, within_s: float) -> bool:
    """Whether the server closes ``s`` (EOF or reset) within ``within_s``, having answered nothing."""
    s.settimeout(within_s)
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def _half_request(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"POST /v1/batch HTTP/1.1\r\nHost: x\r\n")  # and never the rest of the headers
    return s


def test_a_connection_that_drips_its_headers_is_closed_at_the_header_deadline(strict: CollectorThread) -> None:
    port = strict.settings.collector_port
    with _half_request(port) as s:
        started = time.monotonic()
        for _ in range(4):  # a header line every 0.4 s: bytes keep coming, the headers never end
            time.sleep(0.4)
            try:
                s.sendall(b"X-Slow: 1\r\n")
            except OSError:
                break
        assert _closed_by_server(s, within_s=4.0)
        assert 1.9 < time.monotonic() - started < 4.0


def test_an_idle_kept_alive_connection_must_send_its_next_headers_in_time(strict: CollectorThread) -> None:
    port = strict.settings.collector_port
    body = orjson.dumps({"batch": [track(30)]})
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(
            b"POST /v1/batch HTTP/1.1\r\nHost: x\r\nAuthorization: " + AUTH["Authorization"].encode()
            + b"\r\nContent-Type: application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )  # fmt: skip
        answer = s.recv(65_536)
        assert answer.startswith(b"HTTP/1.1 200"), answer[:80]
        s.sendall(b"POST /v1/batch HTTP/1.1\r\n")  # the next request, never finished
        started = time.monotonic()
        assert _closed_by_server(s, within_s=4.0)
        assert 1.9 < time.monotonic() - started < 4.0


def _raw_post(n: int) -> bytes:
    body = orjson.dumps({"batch": [track(n)]})
    return (
        b"POST /v1/batch HTTP/1.1\r\nHost: x\r\nAuthorization: " + AUTH["Authorization"].encode()
        + b"\r\nContent-Type: application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )  # fmt: skip


def test_a_kept_alive_connection_may_rest_past_the_header_time_between_requests(strict: CollectorThread) -> None:
    with socket.create_connection(("127.0.0.1", strict.settings.collector_port), timeout=5) as s:
        s.sendall(_raw_post(32))
        assert s.recv(65_536).startswith(b"HTTP/1.1 200")
        assert not _closed_by_server(s, within_s=3.0)  # 3 s of rest, past the 2 s header time: still open
        s.sendall(_raw_post(33))
        assert s.recv(65_536).startswith(b"HTTP/1.1 200")


def test_past_the_limit_of_waiting_connections_the_oldest_is_closed_and_valid_requests_pass(
    strict: CollectorThread,
) -> None:
    port = strict.settings.collector_port
    socks = [_half_request(port) for _ in range(25)]  # 5 past the limit of 20
    try:
        time.sleep(0.3)  # well within the 2 s deadline of the last ones
        assert [_closed_by_server(s, within_s=0.01) for s in socks] == [True] * 5 + [False] * 20
        resp = requests.post(f"{strict.url}/v1/batch", json={"batch": [track(31)]}, headers=AUTH, timeout=10)
        assert resp.status_code == 200
    finally:
        for s in socks:
            s.close()
