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


@pytest.mark.integration
def test_killed_server_restarts_on_same_url_with_its_data() -> None:
    try:
        server_command()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
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
