"""A port the pipeline picked and another process took before its child listened (``Pipeline._listening``).

``free_port`` finds a port free when it looks, not when the child binds it:
another pipeline or a test beside this one can listen there first. Before,
"something listens there" counted as the child being up, and the pipeline
then spoke to the stranger: a query got its 404 page and failed with a JSON
decode error (the error a run of the restart test showed once in about 150
runs, with nothing in the worker's log; that this was its cause is not
proven). Now the child moves to a newly picked port, and a port the
settings gave is an error.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pipeline.settings import Settings
from pipeline.supervisor import runner as runner_module
from pipeline.supervisor.ports import PortTaken, free_port
from pipeline.supervisor.runner import Pipeline, read_run_file
from tests.fixtures.http_stub import http_stub
from tests.integration.helpers import embedded_settings, post_batch, scalar

pytestmark = pytest.mark.integration


@pytest.fixture
def stranger() -> Iterator[int]:
    """A port an unrelated HTTP server (a thread of this test's process: another session) listens on; it answers 404."""
    with http_stub() as port:
        yield port


def _picks(monkeypatch: pytest.MonkeyPatch, *first: int) -> None:
    """The runner's next ``free_port`` calls return ``first`` in order (0: a really free port), later ones free ports."""
    picks = iter(first)
    monkeypatch.setattr(runner_module, "free_port", lambda avoid=(): next(picks, 0) or free_port(avoid))


def test_a_worker_port_given_in_the_settings_and_taken_is_an_error_naming_it(
    kafka: str, fresh_settings: Settings, tmp_path, stranger: int
) -> None:
    settings = embedded_settings(fresh_settings, kafka, tmp_path, "wk_ports").model_copy(update={"worker_web_port": stranger})
    pipeline = Pipeline(settings)
    with pytest.raises(PortTaken) as taken:
        pipeline.start()
    assert str(taken.value) == (
        f"worker cannot listen on 127.0.0.1:{stranger} (CX_WORKER_WEB_PORT): another process listens there; "
        "stop that process or set CX_WORKER_WEB_PORT to a free port"
    )
    assert pipeline.procs == {} and read_run_file(settings) is None


def test_a_picked_collector_port_another_process_took_moves_the_collector(
    kafka: str, fresh_settings: Settings, tmp_path, stranger: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The runner's first pick is the collector's port.
    _picks(monkeypatch, stranger)
    notes: list[str] = []
    settings = embedded_settings(fresh_settings, kafka, tmp_path, "wk_ports")
    with Pipeline(settings, on_note=notes.append) as pipeline:
        assert pipeline.collector_port != stranger
        assert read_run_file(settings)["collector_url"] == f"http://127.0.0.1:{pipeline.collector_port}"
        assert notes == [
            f"collector: another process took port {stranger} before collector listened there; "
            f"starting it on {pipeline.collector_port}"
        ]
        message = {"type": "page", "anonymousId": "a-1", "messageId": "ports-1", "properties": {"path": "/"}}
        assert post_batch(pipeline.collector_url, "wk_ports", [message]).status_code == 200


def test_a_picked_worker_port_another_process_took_moves_the_worker_and_queries_reach_it(
    kafka: str, fresh_settings: Settings, tmp_path, stranger: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The runner's first pick is the collector's port, the second the worker's (the metrics ports come from
    # ``free_ports``). Before, the query below went to the stranger: a 404 that was not JSON.
    _picks(monkeypatch, 0, stranger)
    notes: list[str] = []
    settings = embedded_settings(fresh_settings, kafka, tmp_path, "wk_ports")
    with Pipeline(settings, on_note=notes.append) as pipeline:
        assert pipeline.worker_port != stranger
        assert read_run_file(settings)["worker_port"] == pipeline.worker_port
        assert notes == [
            f"worker: another process took port {stranger} before worker listened there; starting it on {pipeline.worker_port}"
        ]
        assert scalar(pipeline, "SELECT 41 + 1") == 42
