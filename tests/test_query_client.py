"""``query_running_worker``: what ``cxstream query``, the dashboard and the tests read a worker's ``/cx/query`` with."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import pipeline.supervisor.runner as runner
from pipeline.supervisor.runner import query_running_worker
from tests.fixtures.http_stub import http_stub

ANSWERS = {
    "/ok": (200, b'{"columns": ["x"], "rows": [[42]]}'),
    "/refused": (400, b'{"error": "only reading statements"}'),
    "/not-a-worker": (404, b"404: Not Found"),
    "/cut": (200, b'{"columns": ["x"], "ro'),
    "/other-json": (200, b'{"status": "ok"}'),
}


@pytest.fixture
def port() -> Iterator[int]:
    """A fake worker: the request's ``X-Answer`` header picks its answer from ``ANSWERS``."""
    with http_stub(lambda path, headers: ANSWERS[headers["X-Answer"]]) as port:
        yield port


def _query(port: int, answer: str, monkeypatch: pytest.MonkeyPatch) -> tuple[list, list]:
    # The token travels as a header; the fake server picks its answer from a second one.
    headers = runner.worker_headers
    monkeypatch.setattr(runner, "worker_headers", lambda token: {**headers(token), "X-Answer": answer})
    return query_running_worker(port, "SELECT 42", "token")


def test_a_worker_answer_gives_columns_and_rows(port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _query(port, "/ok", monkeypatch) == (["x"], [[42]])


def test_a_refused_statement_raises_the_workers_error(port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(RuntimeError, match="^only reading statements$"):
        _query(port, "/refused", monkeypatch)


def test_another_server_on_the_port_is_named_not_a_json_error(port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(RuntimeError) as raised:
        _query(port, "/not-a-worker", monkeypatch)
    assert str(raised.value) == f"127.0.0.1:{port} did not answer as a cxstream worker (HTTP 404, 14 bytes: b'404: Not Found')"


def test_an_answer_cut_short_is_named(port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(RuntimeError, match=r"did not answer as a cxstream worker \(HTTP 200, 22 bytes"):
        _query(port, "/cut", monkeypatch)


def test_json_without_columns_and_rows_is_not_a_worker_answer(port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(RuntimeError, match=r"did not answer as a cxstream worker \(HTTP 200, 16 bytes"):
        _query(port, "/other-json", monkeypatch)
