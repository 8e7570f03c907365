"""The worker's web port on a running pipeline: loopback only, token on every path, analyst probes refused."""

from __future__ import annotations

import base64
import os
import socket
import stat
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
import requests

from pipeline.supervisor.runner import Pipeline
from pipeline.settings import Settings
from pipeline.webtoken import TOKEN_FILE

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    data = tmp_path_factory.mktemp("sec")
    settings = Settings(
        _env_file=None, data_dir=data / "data", collector_port=0, worker_web_port=0,
        write_keys="wk_sec=shop-sec", pii_salt="test-salt", worker_group=f"cx-sec-{os.getpid()}",
    )
    with Pipeline(settings) as pipe:
        yield pipe


def _query(pipe: Pipeline, sql: str, headers: dict | None = None) -> requests.Response:
    return requests.post(
        f"http://127.0.0.1:{pipe.worker_port}/cx/query", json={"sql": sql},
        headers=pipe.worker_headers if headers is None else headers, timeout=60,
    )


def _non_loopback_address() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # no packet is sent: picks the outgoing interface
            addr = s.getsockname()[0]
        except OSError:
            return None
    return None if addr.startswith("127.") else addr


def test_the_token_file_is_readable_by_its_owner_only(running: Pipeline) -> None:
    mode = stat.S_IMODE((running.settings.data_dir / TOKEN_FILE).stat().st_mode)
    assert mode == 0o600
    assert (running.settings.data_dir / TOKEN_FILE).read_text().strip() == running.token


def test_the_worker_port_refuses_connections_to_a_non_loopback_address(running: Pipeline) -> None:
    addr = _non_loopback_address()
    if addr is None:
        pytest.skip("this machine has no non-loopback IPv4 address to connect from")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((addr, running.worker_port), timeout=5).close()


@pytest.mark.parametrize("path", ["/cx/stats", "/cx/trigger-times", "/", "/router/", "/table/", "/graph/", "/performance/", "/nothing"])
def test_every_path_without_the_token_gets_401(running: Pipeline, path: str) -> None:
    url = f"http://127.0.0.1:{running.worker_port}{path}"
    assert requests.get(url, timeout=10).status_code == 401
    wrong = requests.get(url, headers={"Authorization": "Bearer " + "x" * 43}, timeout=10)
    assert wrong.status_code == 401 and "xxxx" not in wrong.text
    assert _query(running, "SELECT 1", headers={}).status_code == 401


def test_faust_pages_are_gone_and_stats_answer_with_the_token(running: Pipeline) -> None:
    base = f"http://127.0.0.1:{running.worker_port}"
    assert requests.get(f"{base}/cx/stats", headers=running.worker_headers, timeout=10).status_code == 200
    for path in ("/router/", "/table/", "/graph/"):
        assert requests.get(base + path, headers=running.worker_headers, timeout=10).status_code == 404, path


PROBES = [
    ("""SELECT 1 AS "a'b"; CREATE TABLE cx.pwn1 (x UInt8) ENGINE=Memory; SELECT 'c\"""", "Multi-statements are not allowed"),
    ("""SELECT 1 AS "a'b"; DROP TABLE cx.events; SELECT 'c\"""", "Multi-statements are not allowed"),
    ("WITH 1 AS x INSERT INTO cx.events (tenant,event_id) VALUES ('shopB','pwn')", "got InsertQuery"),
    ("SELECT file('/etc/passwd')", "function file() is not allowed"),
    ("SELECT * FROM file('/etc/passwd','LineAsString')", "table function file() is not allowed"),
    ("SELECT 'x' INTO OUTFILE 'x.tsv' FORMAT TSV", "INTO OUTFILE is not allowed"),
    ("SELECT * FROM url('http://127.0.0.1:9/health','LineAsString')", "table function url() is not allowed"),
    ("SELECT 1 SETTINGS readonly=0", "Cannot modify 'readonly' setting in readonly mode"),
    ("SELECT sleepEachRow(1) FROM numbers(18) SETTINGS max_block_size=1", "Cannot modify 'max_block_size'"),
]


@pytest.mark.parametrize(("sql", "why"), PROBES, ids=[f"{n}-{p[1]}" for n, p in enumerate(PROBES)])
def test_each_probe_is_refused_and_the_next_query_answers_itself(running: Pipeline, sql: str, why: str) -> None:
    resp = _query(running, sql)
    assert resp.status_code == 400 and why in resp.json()["error"], resp.text
    assert running.query("SELECT 'next' AS s") == (["s"], [["next"]])
    tables = running.query("SELECT name FROM system.tables WHERE database = 'cx' AND name LIKE 'pwn%'")[1]
    assert tables == []
    assert running.query("SELECT count() FROM cx.events WHERE event_id = 'pwn'")[1] == [[0]]
    worker_cwd = Path(os.readlink(f"/proc/{running.procs['worker'].pid}/cwd"))
    assert not (worker_cwd / "x.tsv").exists()


def test_a_slow_analyst_query_does_not_hold_the_events_being_stored(running: Pipeline) -> None:
    """The probe that held inserts for 18 s: a 9 s query runs while events go in and are stored at the usual pace."""
    slow_sql = " UNION ALL ".join(["SELECT sleep(3) AS s"] * 3)  # 9 s, no SETTINGS needed
    slow: dict[str, object] = {}

    def run_slow() -> None:
        started = time.monotonic()
        resp = _query(running, slow_sql)
        slow["status"], slow["took"] = resp.status_code, time.monotonic() - started

    auth = {"Authorization": "Basic " + base64.b64encode(b"wk_sec:").decode()}

    def store_one(event_id: str, limit_s: float) -> float:
        started = time.monotonic()
        body = {"type": "track", "event": "Probe Seen", "anonymousId": "a-slow", "messageId": event_id}
        assert requests.post(f"{running.collector_url}/v1/track", json=body, headers=auth, timeout=10).status_code == 200
        sql = f"SELECT count() FROM cx.events WHERE event_id = '{event_id}'"
        while running.query(sql)[1] != [[1]]:
            assert time.monotonic() - started < limit_s, f"{event_id} not stored {limit_s} s after its request"
            time.sleep(0.1)
        return time.monotonic() - started

    store_one(f"before-slow-{os.getpid()}", limit_s=60)  # the worker is consuming (its group joined)
    thread = threading.Thread(target=run_slow)
    thread.start()
    took = []
    try:
        time.sleep(1.0)  # the slow query has started
        for n in range(4):
            took.append(store_one(f"during-slow-{os.getpid()}-{n}", limit_s=8))
    finally:
        thread.join(timeout=60)
    assert slow["status"] == 200 and slow["took"] > 8  # it did run alongside, to its end
    assert max(took) < 5, took  # the 1 s window, not the 9 s query
