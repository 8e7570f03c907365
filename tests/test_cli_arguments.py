"""Arguments a command cannot use are a usage error naming the option (exit 2), never a traceback."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from pipeline.cli import cli


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["bench", "--workers", "abc"], "Invalid value for '--workers': 'abc' is not a worker count"),
        (["bench", "--workers", "1,0"], "Invalid value for '--workers': '0' is not a worker count"),
        (["bench", "--live-rate", "2000,fast"], "Invalid value for '--live-rate': 'fast' is not a rate in events/s"),
        (["bench", "--events", "-5"], "Invalid value for '--events'"),
        (["bench", "--cpu-events", "-1"], "Invalid value for '--cpu-events'"),
        (["bench", "--collector-events", "-1"], "Invalid value for '--collector-events'"),
        (["bench-cpu", "--events", "0"], "Invalid value for '--events'"),
        (["demo", "--visitors", "-4"], "Invalid value for '--visitors'"),
        (["demo", "--visitors", "0"], "Invalid value for '--visitors'"),
        (["backtest", "--demo", "--days", "0"], "Invalid value for '--days'"),
        (["backtest", "--demo", "--visitors", "0"], "Invalid value for '--visitors'"),
        (["backtest", "--kafka", "--from-offset", "-3"], "Invalid value for '--from-offset'"),
        (["backtest", "--kafka", "--to-offset", "-1"], "Invalid value for '--to-offset'"),
        (["bench", "--quick", "--targets"], "Invalid value for '--targets': --quick and --targets are two presets"),
        (["bench", "--clickhouse-url", "garbage://x"], "Invalid value for '--clickhouse-url': a ClickHouse server's URL"),
        (["bench", "--clickhouse-url", "chdb:///tmp/x"], "Invalid value for '--clickhouse-url': a ClickHouse server's URL"),
    ],
)
def test_an_argument_out_of_range_is_a_usage_error_naming_the_option(args: list[str], message: str) -> None:
    out = CliRunner().invoke(cli, args)
    assert out.exit_code == 2, out.output
    text = " ".join(out.output.replace("│", " ").split())  # the error box wraps at the console's width
    assert message in text
    assert "Traceback" not in text
    assert isinstance(out.exception, SystemExit)  # click's usage exit, not an error escaping the command


def test_bench_takes_the_worker_counts_and_rates_it_is_given(monkeypatch) -> None:
    opts = _bench_options(monkeypatch, ["--workers", " 1, 2,3 ", "--live-rate", "", "--cpu-events", "0"])
    assert opts.workers == (1, 2, 3) and opts.live_rates == () and opts.cpu_events == 0


def _bench_options(monkeypatch, args: list[str]):  # noqa: ANN001, ANN202
    from pipeline.tools import bench

    seen = {}

    def run_bench(opts, *_, **__):  # noqa: ANN001, ANN002, ANN003 - stands in for the real run
        seen["opts"] = opts
        raise bench.BenchError("stopped by the test")

    monkeypatch.setattr(bench, "run_bench", run_bench)
    out = CliRunner().invoke(cli, ["bench", *args])
    assert out.exit_code == 1 and "bench failed: stopped by the test" in out.output, out.output
    return seen["opts"]


def test_bench_quick_keeps_the_sizes_given_with_it(monkeypatch) -> None:
    import dataclasses

    from pipeline.tools.bench_common import BenchOptions

    assert _bench_options(monkeypatch, ["--quick"]) == BenchOptions.quick()
    opts = _bench_options(monkeypatch, ["--quick", "--collector-events", "0", "--live-rate", "800,1600"])
    assert opts == dataclasses.replace(BenchOptions.quick(), collector_events=0, live_rates=(800, 1600))
    assert opts.events == 4_000 and opts.cpu_events == 2_000  # the quick sizes of the options not given


def test_an_expected_error_is_one_line_however_long_and_printed_as_written(tmp_path) -> None:
    # Longer than the 80 columns a console without a terminal has; brackets that rich would read as markup.
    deep = tmp_path / ("d" * 60) / "[bold]shop[/bold]"
    out = CliRunner().invoke(cli, ["status"], env={"CX_DATA_DIR": str(deep)})
    assert out.exit_code == 1
    assert out.output == f"no cxstream up runs on {deep.resolve()} (no live run.json)\n"


def test_bench_targets_is_the_issue_s_command_and_keeps_the_sizes_given_with_it(monkeypatch) -> None:
    import dataclasses

    from pipeline.tools.bench_common import BenchOptions

    opts = _bench_options(monkeypatch, ["--targets"])
    # `cxstream bench --events 200000 --workers 1 --live-rate 2000,10000 --live-seconds 30 --collector-events 50000`
    assert (opts.events, opts.workers, opts.live_rates, opts.live_seconds, opts.collector_events) == (
        200_000, (1,), (2_000, 10_000), 30.0, 50_000,
    )  # fmt: skip
    assert opts == BenchOptions.targets()
    assert _bench_options(monkeypatch, ["--targets", "--workers", "1,2"]) == dataclasses.replace(
        BenchOptions.targets(), workers=(1, 2)
    )
