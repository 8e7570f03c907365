"""``cxstream status`` on a bad data dir: a malformed run.json is no live run; a missing token is one clear error.

The sweep's cases: run.json holding ``[]`` or ``{"pid": "x"}``, or being a
directory (each raised in ``read_run_file``), and a live pid with no or an
empty ``worker.token`` (``FileNotFoundError``/``ValueError`` from
``read_token`` through ``status.collect``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli import cli
from pipeline.settings import Settings
from pipeline.status import collect
from pipeline.supervisor.lifeline import process_start
from pipeline.supervisor.runner import RUN_FILE, read_run_file
from pipeline.webtoken import TOKEN_FILE, TokenMissing, ensure_token, new_token, read_token


def settings_of(data_dir: Path) -> Settings:
    return Settings(_env_file=None, data_dir=data_dir)


def live_record(**extra: object) -> dict:
    """What ``up`` writes, for this test process: its pid is alive and its start time is its own."""
    return {"pid": os.getpid(), "start": process_start(os.getpid()), "worker_port": 6066,
            "collector_metrics_url": "http://127.0.0.1:9", **extra}  # fmt: skip


def write_run_file(data_dir: Path, content: object) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / RUN_FILE).write_text(content if isinstance(content, str) else json.dumps(content))


# -- run.json ---------------------------------------------------------------------------------


def test_a_run_file_that_is_a_list_is_no_live_run(tmp_path: Path) -> None:
    write_run_file(tmp_path, [])
    assert read_run_file(settings_of(tmp_path)) is None


def test_a_run_file_whose_pid_is_text_is_no_live_run(tmp_path: Path) -> None:
    write_run_file(tmp_path, {"pid": "x"})
    assert read_run_file(settings_of(tmp_path)) is None


def test_a_run_file_that_is_a_directory_is_no_live_run(tmp_path: Path) -> None:
    (tmp_path / RUN_FILE).mkdir()
    assert read_run_file(settings_of(tmp_path)) is None


@pytest.mark.parametrize("pid", [0, -1, True, 2**63, 1.5, None])
def test_a_run_file_whose_pid_is_not_one_process_is_no_live_run(tmp_path: Path, pid: object) -> None:
    # os.kill(0, 0) and os.kill(-1, 0) succeed (a process group, every process): they once read as alive.
    write_run_file(tmp_path, live_record(pid=pid))
    assert read_run_file(settings_of(tmp_path)) is None


@pytest.mark.parametrize("port", [None, "6066", 0, 70000])
def test_a_run_file_without_a_worker_port_is_no_live_run(tmp_path: Path, port: object) -> None:
    record = live_record(worker_port=port)
    if port is None:
        del record["worker_port"]
    write_run_file(tmp_path, record)
    assert read_run_file(settings_of(tmp_path)) is None


def test_a_run_file_whose_start_is_not_a_number_is_no_live_run(tmp_path: Path) -> None:
    write_run_file(tmp_path, live_record(start="yesterday"))
    assert read_run_file(settings_of(tmp_path)) is None


def test_a_run_file_as_up_writes_it_of_a_live_process_is_read(tmp_path: Path) -> None:
    write_run_file(tmp_path, live_record(worker_host="127.0.0.1"))
    assert read_run_file(settings_of(tmp_path)) == live_record(worker_host="127.0.0.1")


@pytest.mark.parametrize("content", ["[]", '{"pid":"x"}', "null", '"run"', '{"pid": 0, "worker_port": 6066}'])
def test_status_on_a_malformed_run_file_says_no_live_run_in_one_line(tmp_path: Path, content: str) -> None:
    write_run_file(tmp_path, content)
    out = CliRunner().invoke(cli, ["status"], env={"CX_DATA_DIR": str(tmp_path), "COLUMNS": "40"})
    assert out.exit_code == 1
    assert out.output == f"no cxstream up runs on {tmp_path.resolve()} (no live run.json)\n"


def test_status_on_a_run_file_that_is_a_directory_says_no_live_run_in_one_line(tmp_path: Path) -> None:
    (tmp_path / RUN_FILE).mkdir()
    out = CliRunner().invoke(cli, ["status"], env={"CX_DATA_DIR": str(tmp_path)})
    assert out.exit_code == 1
    assert out.output == f"no cxstream up runs on {tmp_path.resolve()} (no live run.json)\n"


# -- worker.token -----------------------------------------------------------------------------


def test_a_missing_token_is_token_missing_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(TokenMissing) as err:
        read_token(tmp_path)
    path = (tmp_path / TOKEN_FILE).resolve()
    assert str(err.value) == f"no worker token: {path} does not exist (cxstream up writes it at each start)"


def test_an_empty_token_is_token_missing_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / TOKEN_FILE).write_text("\n")
    with pytest.raises(TokenMissing) as err:
        read_token(tmp_path)
    path = (tmp_path / TOKEN_FILE).resolve()
    assert str(err.value) == f"no worker token: {path} is empty (cxstream up writes it at each start)"


def test_a_token_that_is_not_text_is_token_missing_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / TOKEN_FILE).write_bytes(b"\xff\xfe\x00")
    with pytest.raises(TokenMissing) as err:
        read_token(tmp_path)
    path = (tmp_path / TOKEN_FILE).resolve()
    assert str(err.value) == f"no worker token: {path} is not text (cxstream up writes it at each start)"


def test_a_token_that_is_a_directory_is_the_os_error_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / TOKEN_FILE).mkdir()
    with pytest.raises(IsADirectoryError) as err:
        read_token(tmp_path)
    assert not isinstance(err.value, TokenMissing)
    assert err.value.filename == str(tmp_path / TOKEN_FILE)


def test_a_missing_token_is_a_file_not_found_error_as_callers_catch_it() -> None:
    # cli.main prints an OSError as one line; the dashboard's store takes FileNotFoundError for "no pipeline".
    assert issubclass(TokenMissing, FileNotFoundError)


def test_ensure_token_writes_one_for_a_missing_or_empty_file_only(tmp_path: Path) -> None:
    first = ensure_token(tmp_path)
    assert read_token(tmp_path) == first and len(first) == 43  # token_urlsafe(32)
    assert ensure_token(tmp_path) == first
    (tmp_path / TOKEN_FILE).write_text("")
    assert ensure_token(tmp_path) not in ("", first)
    other = tmp_path / "other"
    (other / TOKEN_FILE).mkdir(parents=True)
    with pytest.raises(IsADirectoryError):
        ensure_token(other)  # may be another's: not replaced


def test_status_with_a_live_run_and_no_token_raises_token_missing_before_asking_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pipeline.status as status

    def no_request(*_a: object, **_k: object) -> None:
        raise AssertionError("a component was asked before the token was read")

    monkeypatch.setattr(status, "_get", no_request)
    write_run_file(tmp_path, live_record())
    settings = settings_of(tmp_path)
    info = read_run_file(settings)
    assert info is not None
    with pytest.raises(TokenMissing, match="does not exist"):
        collect(settings, info, 0.2, no_request)
    (tmp_path / TOKEN_FILE).write_text("")
    with pytest.raises(TokenMissing, match="is empty"):
        collect(settings, info, 0.2, no_request)
    new_token(tmp_path)

    def down(*_a: object, **_k: object) -> None:
        raise status.requests.ConnectionError("down")

    monkeypatch.setattr(status, "_get", down)
    snap = collect(settings, info, 0.2, lambda _sql: ([], []))  # with a token it goes on to ask
    assert snap.worker.error == "ConnectionError: down"


@pytest.mark.parametrize(("token", "what"), [(None, "does not exist"), ("", "is empty")])
def test_status_with_a_live_run_and_no_token_is_one_line_and_exit_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, token: str | None, what: str
) -> None:
    import sys

    from pipeline import cli as cli_module

    write_run_file(tmp_path, live_record())
    if token is not None:
        (tmp_path / TOKEN_FILE).write_text(token)
    monkeypatch.setenv("CX_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("COLUMNS", "40")
    monkeypatch.setattr(sys, "argv", ["cxstream", "status", "--interval", "0.2"])
    with pytest.raises(SystemExit) as ended:
        cli_module.main()  # the console script: an OSError is one line there
    out = capsys.readouterr()
    assert ended.value.code == 1
    assert out.err == (
        f"cxstream status: no worker token: {(tmp_path / TOKEN_FILE).resolve()} {what} "
        "(cxstream up writes it at each start)\n"
    )
    assert out.out == ""
