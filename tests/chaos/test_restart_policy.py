"""``Pipeline.supervise``: backoff doubles per failure in a row, a stable child resets it, the budget ends it."""

from __future__ import annotations

import pytest

from pipeline.supervisor.runner import Pipeline, SupervisionError


class _Proc:
    def __init__(self, returncode: int | None) -> None:
        self.returncode, self.pid = returncode, 4242

    def poll(self) -> int | None:
        return self.returncode


def test_a_worker_failing_at_start_is_restarted_with_doubling_backoff_then_stops_up(fresh_settings, tmp_path, monkeypatch) -> None:
    settings = fresh_settings.model_copy(update={"restart_budget": 2, "restart_backoff_s": 1.0, "restart_stable_s": 30.0})
    pipeline = Pipeline(settings)
    pipeline._log_dir = tmp_path
    clock = [100.0]
    monkeypatch.setattr("pipeline.supervisor.runner.time.monotonic", lambda: clock[0])
    spawned: list[float] = []

    def spawn(name: str, env=None) -> None:
        spawned.append(clock[0])
        pipeline.procs[name] = _Proc(None)
        pipeline._started[name] = clock[0]

    pipeline._spawn = spawn  # type: ignore[method-assign]
    spawn("worker")
    for delay in (1.0, 2.0):  # failure 1 then 2: waits 1 s, then 2 s
        clock[0] += 5.0
        pipeline.procs["worker"].returncode = 75
        pipeline.supervise()
        assert "worker" not in pipeline.procs
        clock[0] += delay - 0.01
        pipeline.supervise()
        assert "worker" not in pipeline.procs
        clock[0] += 0.01
        pipeline.supervise()
        assert "worker" in pipeline.procs
    clock[0] += 5.0
    pipeline.procs["worker"].returncode = 1
    with pytest.raises(SupervisionError, match=r"worker failed 3 times in a row \(last: exit code 1 after 5\.0 s; CX_RESTART_BUDGET=2"):
        pipeline.supervise()
    assert pipeline.restarts == 2


def _budget_one(fresh_settings, tmp_path, monkeypatch):  # noqa: ANN001, ANN202
    """A Pipeline with budget 1, backoff 1 s, stable 30 s, a clock the test moves, and fake children."""
    settings = fresh_settings.model_copy(update={"restart_budget": 1, "restart_backoff_s": 1.0, "restart_stable_s": 30.0})
    pipeline = Pipeline(settings)
    pipeline._log_dir = tmp_path
    clock = [0.0]
    monkeypatch.setattr("pipeline.supervisor.runner.time.monotonic", lambda: clock[0])

    def spawn(name: str, env=None) -> None:
        pipeline.procs[name] = _Proc(None)
        pipeline._started[name] = clock[0]

    pipeline._spawn = spawn  # type: ignore[method-assign]
    return pipeline, clock, spawn


def test_a_child_up_longer_than_the_stable_time_starts_its_count_again(fresh_settings, tmp_path, monkeypatch) -> None:
    pipeline, clock, spawn = _budget_one(fresh_settings, tmp_path, monkeypatch)
    spawn("collector")
    for _ in range(3):  # each run lasts 31 s > 30 s: each exit is failure 1 of budget 1, never the end
        clock[0] += 31.0
        pipeline.procs["collector"].returncode = -9
        assert pipeline.supervise()[0].startswith("collector ended (killed by SIGKILL) after 31.0 s; starting it again in 1.0 s")
        clock[0] += 1.0
        pipeline.supervise()
    assert pipeline.restarts == 3


def test_a_dashboard_past_its_budget_stays_stopped_and_the_pipeline_goes_on(fresh_settings, tmp_path, monkeypatch) -> None:
    pipeline, clock, spawn = _budget_one(fresh_settings, tmp_path, monkeypatch)
    spawn("worker")
    spawn("dashboard")
    clock[0] += 2.0
    pipeline.procs["dashboard"].returncode = 1  # failure 1 of budget 1: started again after 1 s
    pipeline.supervise()
    clock[0] += 1.0
    assert pipeline.supervise() == ["dashboard started again (pid 4242)"]
    clock[0] += 2.0
    pipeline.procs["dashboard"].returncode = 1  # failure 2: past the budget, but ingestion does not need it
    [note] = pipeline.supervise()
    assert note.startswith("dashboard failed 2 times in a row (last: exit code 1 after 2.0 s; CX_RESTART_BUDGET=1")
    assert "not started again, the collector and workers go on" in note
    clock[0] += 60.0
    assert pipeline.supervise() == [] and set(pipeline.procs) == {"worker"} and pipeline.given_up == {"dashboard"}
