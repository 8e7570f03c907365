"""The local test server: restarts on the same ports and data, and says how to install it."""

from __future__ import annotations

from datetime import date

import pytest

import infra.clickhouse_server as chs
from infra.clickhouse_server import ClickHouseServer, server_command
from sinks.client import ClickHouseError, connect


def test_missing_binary_error_names_the_setup_script(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chs.shutil, "which", lambda name: None)
    with pytest.raises(FileNotFoundError, match=r"infra/setup\.sh --clickhouse-server"):
        server_command()


def _needs_the_server_binary() -> None:
    try:
        server_command()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))


@pytest.mark.integration
def test_killed_server_restarts_on_same_url_with_its_data() -> None:
    _needs_the_server_binary()
    with ClickHouseServer() as server:
        url = server.url
        ch = connect(url)
        try:
            ch.execute("CREATE DATABASE IF NOT EXISTS cx")
            ch.execute("CREATE TABLE cx.t (d Date, k String) ENGINE = ReplacingMergeTree() ORDER BY k")
            ch.insert("cx.t", ["d", "k"], [(date(2024, 3, 10), "acknowledged")])

            server.kill()  # SIGKILL: no chance to flush anything
            with pytest.raises(ClickHouseError):
                ch.execute("SELECT 1")
            server.start()
            assert server.url == url
            # the same client reconnects by itself
            assert ch.execute("SELECT k FROM cx.t") == [("acknowledged",)]

            server.stop()
            server.start()
            assert ch.execute("SELECT count() FROM cx.t") == [(1,)]
            assert ch.execute("SELECT timezone()") in ([("UTC",)], [("Etc/UTC",)])
        finally:
            ch.close()
        root = server.root
    assert not root.exists()


@pytest.mark.integration
def test_a_server_that_died_under_a_test_is_reported_when_it_is_stopped(capsys: pytest.CaptureFixture) -> None:
    # A crash explains a test's "Unexpected EOF": the stop says so, with the server's last log lines.
    import os
    import signal

    _needs_the_server_binary()
    with ClickHouseServer() as server:
        assert server.exit_report() is None  # running
        server.log_path.write_text(server.log_path.read_text() + "<Fatal> BaseDaemon: the line a crash leaves\n")
        os.kill(server._proc.pid, signal.SIGKILL)  # not server.kill(): the server dies by itself, as in a crash
        server._proc.wait(timeout=10)
        port = server.tcp_port
        server.stop()
        assert server.exit_report() is None  # stopped: nothing left to report
    err = capsys.readouterr().err
    assert f"clickhouse-server on port {port} had exited by itself (exit code -9)" in err
    assert err.rstrip().endswith("<Fatal> BaseDaemon: the line a crash leaves")


@pytest.mark.integration
def test_a_server_stopped_while_running_reports_nothing(capsys: pytest.CaptureFixture) -> None:
    _needs_the_server_binary()
    with ClickHouseServer():
        pass
    assert "had exited by itself" not in capsys.readouterr().err
