"""An error of the environment a command meets is one line and an exit code, never a traceback.

Files and directories that cannot be made, ports taken, names that do not
resolve, Kafka and ClickHouse refusing: ``pipeline.cli.main`` turns each into
``cxstream <command>: <why>`` on stderr. Data shown by a command is shown as
written: rich would read ``[/]`` or ``[href]`` in a value as markup.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from typer.testing import CliRunner

from pipeline import cli as cli_module
from pipeline.cli import cli
from pipeline.exitcodes import EXIT_PORT_TAKEN, EXIT_UNAVAILABLE
from pipeline.settings import Settings, SettingsError

SALT = {"CX_PII_SALT": "test-salt-for-cli-errors"}


def _main(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:  # noqa: ANN001 - pytest fixtures
    """``cxstream args`` run through ``main`` in this process: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["cxstream", *args])
    with pytest.raises(SystemExit) as ended:
        cli_module.main()
    out = capsys.readouterr()
    return ended.value.code, out.out, out.err


def _run(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    """``cxstream args`` as a process of its own (the embedded store opens one directory per process)."""
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args], env={**os.environ, **SALT, **env},
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def test_a_data_dir_that_cannot_be_made_is_one_line(monkeypatch, capsys, tmp_path) -> None:
    a_file = tmp_path / "not-a-dir"
    a_file.write_text("x")
    monkeypatch.setenv("CX_DATA_DIR", str(a_file))
    code, out, err = _main(monkeypatch, capsys, "dashboard", "--port", "0")
    assert code == 1
    assert err == f"cxstream dashboard: [Errno 20] Not a directory: '{a_file / 'worker.token'}'\n"
    assert out == ""


def test_a_port_taken_stops_the_worker_before_it_starts_with_one_line(monkeypatch, capsys) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        monkeypatch.setattr(cli_module, "_require_broker", lambda settings, command: "127.0.0.1:9")
        for name, value in {**SALT, "CX_WORKER_WEB_PORT": str(port), "CX_KAFKA_BOOTSTRAP": "127.0.0.1:9"}.items():
            monkeypatch.setenv(name, value)
        code, _, err = _main(monkeypatch, capsys, "worker")
    assert code == EXIT_PORT_TAKEN
    assert err == (
        f"cxstream worker: [Errno 98] cannot listen on 127.0.0.1:{port} "
        "(CX_WORKER_WEB_BIND:CX_WORKER_WEB_PORT): Address already in use\n"
    )


def test_a_collector_host_that_does_not_resolve_is_one_line(monkeypatch, capsys) -> None:
    monkeypatch.setattr(cli_module, "_require_broker", lambda settings, command: "127.0.0.1:9")
    for name, value in {**SALT, "CX_COLLECTOR_HOST": "nohost.invalid", "CX_KAFKA_BOOTSTRAP": "127.0.0.1:9"}.items():
        monkeypatch.setenv(name, value)
    code, _, err = _main(monkeypatch, capsys, "collector")
    assert code == 1
    # glibc's words for EAI_NONAME
    assert err == (
        "cxstream collector: [Errno -2] cannot listen on nohost.invalid:8088 (CX_COLLECTOR_HOST:CX_COLLECTOR_PORT): "
        "Name or service not known\n"
    )


def test_kafka_settings_the_client_refuses_are_one_line_and_a_configuration_error(monkeypatch, capsys) -> None:
    env = {**SALT, "CX_KAFKA_BOOTSTRAP": "127.0.0.1:1", "CX_KAFKA_SECURITY_PROTOCOL": "SSL",
           "CX_KAFKA_SSL_CAFILE": "/nonexistent/ca.pem"}  # fmt: skip
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code, _, err = _main(monkeypatch, capsys, "worker")
    assert code == 2
    assert err.startswith("cxstream worker: the Kafka client refused its settings (Failed to create admin client: ")
    assert err.endswith("); check the CX_KAFKA_SECURITY_* settings\n")
    assert err.count("\n") == 1


def test_up_on_your_own_kafka_that_does_not_answer_is_one_line_before_anything_starts(monkeypatch, capsys, tmp_path) -> None:
    env = {**SALT, "CX_DATA_DIR": str(tmp_path / "data"), "CX_KAFKA_BOOTSTRAP": "127.0.0.1:1",
           "CX_KAFKA_CHECK_TIMEOUT_S": "1"}  # fmt: skip
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code, _, err = _main(monkeypatch, capsys, "up")
    assert code == EXIT_UNAVAILABLE
    assert err == (
        "cxstream up: no Kafka broker answered at 127.0.0.1:1 within 1 s (Failed to get metadata: Local: Broker "
        "transport failure); check CX_KAFKA_BOOTSTRAP and the CX_KAFKA_SECURITY_* settings\n"
    )
    assert not (tmp_path / "data").exists()  # nothing was started, not even the data dir


def test_a_kafka_error_inside_a_command_is_one_line_with_exit_69(monkeypatch, capsys) -> None:
    from confluent_kafka import KafkaError, KafkaException

    def fail(*_: object, **__: object) -> None:
        raise KafkaException(KafkaError(KafkaError._TRANSPORT, "Failed to get metadata: Local: Broker transport failure"))

    monkeypatch.setattr(cli_module, "load_settings", lambda component=None: fail())
    code, _, err = _main(monkeypatch, capsys, "query", "select 1")
    assert code == EXIT_UNAVAILABLE
    assert err == (
        "cxstream query: Kafka: Failed to get metadata: Local: Broker transport failure "
        "(check CX_KAFKA_BOOTSTRAP and the CX_KAFKA_SECURITY_* settings)\n"
    )


def test_a_clickhouse_error_is_one_line_without_the_server_s_stack_trace(monkeypatch, capsys) -> None:
    from sinks.client import ClickHouseError

    def fail(component: str | None = None) -> Settings:
        raise ClickHouseError("statement failed: Code: 241. Memory limit exceeded\nStack trace:\n0. DB::Exception")

    monkeypatch.setattr(cli_module, "load_settings", fail)
    code, _, err = _main(monkeypatch, capsys, "status")
    assert code == 1
    assert err == "cxstream status: ClickHouse: statement failed: Code: 241. Memory limit exceeded\n"


def test_a_bug_keeps_its_traceback(monkeypatch, capsys) -> None:
    def bug(component: str | None = None) -> Settings:
        raise ZeroDivisionError("a bug, not the environment")

    monkeypatch.setattr(cli_module, "load_settings", bug)
    monkeypatch.setattr(sys, "argv", ["cxstream", "status"])
    with pytest.raises(ZeroDivisionError):
        cli_module.main()


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("CX_TOPIC_EVENTS", "", "CX_TOPIC_EVENTS: Value error, '' is not a Kafka topic name"),
        ("CX_TOPIC_TRIGGERS", "cx/triggers", "CX_TOPIC_TRIGGERS: Value error, 'cx/triggers' is not a Kafka topic name"),
        ("CX_TOPIC_CUSTOMERS", "..", "CX_TOPIC_CUSTOMERS: Value error, '..' is not a Kafka topic name"),
        ("CX_TOPIC_DEADLETTER", "x" * 250, "CX_TOPIC_DEADLETTER: Value error, 'xxxx"),
        ("CX_DATA_DIR", "", "CX_DATA_DIR: Value error, must name a directory (empty would be the working directory)"),
        ("CX_DATA_DIR", "  ", "CX_DATA_DIR: Value error, must name a directory"),
    ],
)
def test_a_setting_that_would_lose_events_or_write_elsewhere_is_refused(monkeypatch, variable, value, message) -> None:
    # An empty events topic let the collector answer 200 for events no worker could read.
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as refused:
        Settings.load()
    assert message in str(refused.value)


def test_topic_names_kafka_accepts_are_kept(monkeypatch) -> None:
    monkeypatch.setenv("CX_TOPIC_EVENTS", "shop_1.cx-events")
    monkeypatch.setenv("CX_TOPIC_CUSTOMERS", "")
    settings = Settings.load()
    assert settings.topic_events == "shop_1.cx-events"
    assert settings.customers_topic == "shop_1.cx-events.customers"


def test_a_dotenv_that_is_not_text_is_a_configuration_error(monkeypatch, tmp_path) -> None:
    (tmp_path / ".env").write_bytes(b"CX_DATA_DIR=\xff\xfe\x00\n")
    monkeypatch.chdir(tmp_path)
    out = CliRunner().invoke(cli, ["query", "select 1"])
    assert out.exit_code == 2
    assert out.output == f"invalid configuration: .env in {tmp_path} is not UTF-8 text (invalid start byte)\n"


def test_a_dotenv_line_without_an_equals_sign_is_a_configuration_error(monkeypatch, tmp_path) -> None:
    # python-dotenv only warned and skipped the line: the pipeline then ran on the embedded broker.
    (tmp_path / ".env").write_text("# the shop's Kafka\nCX_PII_SALT=abc\n\nCX_KAFKA_BOOTSTRAP broker:9092\nCX_DATA_DIR\n")
    monkeypatch.chdir(tmp_path)
    out = CliRunner().invoke(cli, ["query", "select 1"])
    assert out.exit_code == 2
    assert out.stdout == ""
    assert out.stderr == (
        f"invalid configuration: .env in {tmp_path}:\n"
        "  line 4: 'CX_KAFKA_BOOTSTRAP broker:9092' is not NAME=value\n"
        "  line 5: 'CX_DATA_DIR' is not NAME=value\n"
    )


def test_a_dotenv_with_comments_export_and_quotes_is_read(monkeypatch, tmp_path) -> None:
    for name in ("CX_KAFKA_BOOTSTRAP", "CX_PII_SALT"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / ".env").write_text(
        "# a comment\nexport CX_KAFKA_BOOTSTRAP=broker:9092\n\nCX_PII_SALT='s alt'  # trailing\nOTHER_TOOL_FLAG\n"
    )
    monkeypatch.chdir(tmp_path)
    settings = Settings.load()
    assert (settings.kafka_bootstrap, settings.pii_salt) == ("broker:9092", "s alt")


def test_an_empty_query_is_refused_in_one_line(tmp_path) -> None:
    out = CliRunner().invoke(cli, ["query", "   "], env={**SALT, "CX_DATA_DIR": str(tmp_path)})
    assert out.exit_code == 1
    assert out.output == "cxstream query: empty query\n"


def test_query_values_and_names_with_brackets_are_shown_as_written(tmp_path) -> None:
    # Stored CSS selectors (cx.friction) look like rich markup; "[/]" made rich raise.
    done = _run(["query", "SELECT '[/]' AS `[b]x`, 'a[href]' AS s, '[role=textbox]' AS t"],
                {"CX_DATA_DIR": str(tmp_path), "COLUMNS": "120"})  # fmt: skip
    assert done.returncode == 0, done.stderr
    for shown in ("[/]", "[b]x", "a[href]", "[role=textbox]"):
        assert shown in done.stdout


def test_a_query_on_the_store_when_nothing_runs_has_the_query_limits(tmp_path) -> None:
    # Before, this grew to 10 GB and ignored Ctrl-C.
    done = _run(["query", "SELECT * FROM system.numbers"],
                {"CX_DATA_DIR": str(tmp_path), "CX_QUERY_MAX_RESULT_ROWS": "1000"})  # fmt: skip
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith("cxstream query: ")
    assert "TOO_MANY_ROWS_OR_BYTES" in done.stderr
    assert done.stderr.count("\n") == 1


def test_ctrl_c_ends_a_running_query_at_once(monkeypatch) -> None:
    # The embedded engine does not stop for SIGINT; the query runs in a thread and the command ends with 130.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    monkeypatch.setattr(cli_module.os, "_exit", lambda code: (_ for _ in ()).throw(SystemExit(code)))
    threading.Timer(0.3, signal.raise_signal, (signal.SIGINT,)).start()
    started = time.monotonic()
    try:
        with pytest.raises(SystemExit) as ended:
            cli_module._interruptible(lambda: time.sleep(10))
    finally:
        signal.signal(signal.SIGINT, previous)
    assert ended.value.code == 130
    assert time.monotonic() - started < 5


def test_a_running_query_s_error_and_result_reach_the_caller() -> None:
    assert cli_module._interruptible(lambda: [1, 2]) == [1, 2]
    with pytest.raises(ValueError, match="from the thread"):
        cli_module._interruptible(lambda: (_ for _ in ()).throw(ValueError("from the thread")))


def test_bench_compare_shows_file_names_and_figure_names_as_written(tmp_path) -> None:
    folder = tmp_path / "[" / "b]"  # the path's text holds "[/b]", a closing tag to rich
    folder.mkdir(parents=True)
    run = b'{"figures": {"[/]": 1, "[bold]x[/bold]": 2}, "options": {}}'
    (folder / "a.json").write_bytes(run)
    (folder / "b.json").write_bytes(run)
    out = CliRunner().invoke(cli, ["bench-compare", str(folder / "a.json"), str(folder / "b.json")])
    assert out.exit_code == 0, out.output
    assert f"old: {folder / 'a.json'}" in out.output
    assert "[/]" in out.output and "[bold]x[/bold]" in out.output


def test_bench_compare_refuses_a_file_without_end_in_one_line() -> None:
    out = CliRunner().invoke(cli, ["bench-compare", "/dev/zero", "/dev/zero"])
    assert out.exit_code == 1
    assert out.output == "bench-compare: /dev/zero: over 16 MB, not a `cxstream bench --json` file\n"


def test_up_with_an_address_that_does_not_resolve_is_one_line_before_anything_starts(monkeypatch, capsys, tmp_path) -> None:
    # Before, the collector failed at each restart until up gave up its restart budget (48 s), exit 70.
    env = {**SALT, "CX_DATA_DIR": str(tmp_path / "data"), "CX_COLLECTOR_HOST": "nohost.invalid"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code, _, err = _main(monkeypatch, capsys, "up")
    assert code == 1
    assert err == "cxstream up: [Errno -2] CX_COLLECTOR_HOST nohost.invalid: Name or service not known\n"
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    ("port", "metrics", "processes", "message"),
    [
        ("9200", "9200", "1", "the collector processes' metrics ports (9200) include CX_COLLECTOR_PORT 9200"),
        ("9201", "9200", "3", "the collector processes' metrics ports (9200 to 9202) include CX_COLLECTOR_PORT 9201"),
    ],
)
def test_a_collector_port_among_its_metrics_ports_is_a_configuration_error(monkeypatch, port, metrics, processes, message) -> None:
    monkeypatch.setenv("CX_COLLECTOR_PORT", port)
    monkeypatch.setenv("CX_COLLECTOR_METRICS_PORT", metrics)
    monkeypatch.setenv("CX_COLLECTOR_PROCESSES", processes)
    with pytest.raises(SettingsError) as refused:
        Settings.load()
    assert f"CX_COLLECTOR_METRICS_PORT: Value error, {message}" in str(refused.value)


def test_metrics_ports_next_to_the_collector_port_are_kept(monkeypatch) -> None:
    monkeypatch.setenv("CX_COLLECTOR_PORT", "9200")
    monkeypatch.setenv("CX_COLLECTOR_METRICS_PORT", "9201")
    monkeypatch.setenv("CX_COLLECTOR_PROCESSES", "4")
    assert Settings.load().collector_metrics_port == 9201


def test_two_statements_on_the_store_alone_are_refused_by_clickhouse_s_parser(tmp_path) -> None:
    # The engine ran both and returned both outputs one after the other ("invalid literal for int(): 'UInt8'").
    done = _run(["query", "SELECT 1; SELECT 2"], {"CX_DATA_DIR": str(tmp_path)})
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith("cxstream query: Code: 62. DB::Exception: Syntax error (Multi-statements are not allowed)")


def test_bytes_that_are_not_utf8_are_shown_as_replacement_characters(tmp_path) -> None:
    done = _run(["query", "SELECT unhex('ff41') AS b, 'ok' AS c", "--format", "json"], {"CX_DATA_DIR": str(tmp_path)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == '[{"b":"\ufffdA","c":"ok"}]\n'


@pytest.mark.parametrize("url", ["clickhouse://", "clickhouses:///db", "clickhouse://user:pw@:9000/db"])
def test_a_clickhouse_url_without_a_server_is_a_configuration_error(monkeypatch, url) -> None:
    # Before, the first connection reported "Connection refused (None:9000)".
    monkeypatch.setenv("CX_CLICKHOUSE_URL", url)
    with pytest.raises(SettingsError) as refused:
        Settings.load()
    assert "CX_CLICKHOUSE_URL: Value error, names no server: clickhouse://user:password@host:9000/db" in str(refused.value)


def test_a_dashboard_port_taken_is_one_line_and_exit_78(monkeypatch, capsys, tmp_path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        monkeypatch.setenv("CX_DATA_DIR", str(tmp_path))
        code, _, err = _main(monkeypatch, capsys, "dashboard", "--port", str(port))
    assert code == EXIT_PORT_TAKEN
    assert err.startswith("cxstream dashboard: [Errno 98] ")
    assert err.endswith("address already in use\n") and err.count("\n") == 1


def test_a_failed_query_writes_nothing_to_the_csv_it_was_piped_into(tmp_path) -> None:
    # `cxstream query ... -f csv > out.csv`: the error goes to the terminal, not into the file.
    done = _run(["query", "SELECT no_such_column", "--format", "csv"], {"CX_DATA_DIR": str(tmp_path)})
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith("cxstream query: Code: 47. DB::Exception: Unknown expression identifier")
