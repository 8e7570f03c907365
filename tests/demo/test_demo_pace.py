"""``cxstream demo --seconds / --rate``: how the options reach the SDK sender's pacing."""

from __future__ import annotations

import pytest
from rich.console import Console
from typer.testing import CliRunner

from pipeline.cli import cli
from pipeline.demo import run as demo_run
from pipeline.demo.send import SendReport


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """What ``cxstream demo`` asks of ``run_demo`` (which is not run)."""
    seen: list[dict] = []

    def fake_run_demo(settings, **kwargs) -> int:  # noqa: ANN001
        seen.append(kwargs)
        return 0

    monkeypatch.setattr(demo_run, "run_demo", fake_run_demo)
    monkeypatch.setenv("CX_WRITE_KEYS", "wk_demo=demo-shop")
    return seen


@pytest.mark.parametrize(
    ("args", "seconds", "rate"),
    [
        ([], None, None),  # run_demo then sends the day in 60 s
        (["--rate", "500"], None, 500.0),
        (["--seconds", "30"], 30.0, None),
        (["--seconds", "30", "--rate", "500"], 30.0, 500.0),
    ],
)
def test_cli_passes_seconds_and_rate_as_given(calls: list[dict], args: list[str], seconds, rate) -> None:  # noqa: ANN001
    result = CliRunner().invoke(cli, ["demo", *args])
    assert result.exit_code == 0, result.output
    assert (calls[0]["seconds"], calls[0]["rate"]) == (seconds, rate)


@pytest.mark.parametrize("args", [["--rate", "0"], ["--seconds", "-1"]])
def test_cli_refuses_a_pace_that_is_not_positive(calls: list[dict], args: list[str]) -> None:
    result = CliRunner().invoke(cli, ["demo", *args])
    assert result.exit_code == 2
    assert calls == []


@pytest.mark.parametrize(
    ("seconds", "rate", "speedup", "rate_per_s"),
    [
        (60.0, None, 1440.0, None),  # 86,400 s of event time in 60 s
        (None, 250.0, None, 250.0),
        (120.0, 250.0, 720.0, 250.0),
    ],
)
def test_send_gets_the_speedup_for_seconds_and_the_rate_as_rate_per_s(
    monkeypatch: pytest.MonkeyPatch, seconds, rate, speedup, rate_per_s  # noqa: ANN001
) -> None:
    seen: dict = {}

    def fake_send(messages, **kwargs) -> SendReport:  # noqa: ANN001
        seen.update(kwargs)
        return SendReport(sent=len(messages), seconds=1.0)

    class FakePipeline:
        collector_url = "http://127.0.0.1:1"

    monkeypatch.setattr(demo_run, "send", fake_send)
    demo_run._send(FakePipeline(), [{}, {}], "wk", seconds, rate, Console(quiet=True))
    assert seen["speedup"] == speedup
    assert seen["rate_per_s"] == rate_per_s
