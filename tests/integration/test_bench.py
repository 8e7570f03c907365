"""``cxstream bench --quick`` end to end: every section runs, and ClickHouse holds exactly the ledger's counts.

No rate is asserted (the machine decides those); the counts are exact.
"""

from __future__ import annotations

import dataclasses

import pytest

from pipeline.tools.bench import BenchOptions, report_rows, run_bench
from pipeline.settings import Settings

pytestmark = pytest.mark.integration


def test_quick_bench_stores_exactly_what_the_generator_planned(kafka: str, clickhouse_server, fresh_settings: Settings, tmp_path) -> None:
    # Smaller than --quick (every section still runs): the counts are what is asserted, not rates.
    opts = dataclasses.replace(BenchOptions.quick(), events=2_500, live_seconds=3.0, collector_events=2_000)
    result = run_bench(
        opts, fresh_settings, bootstrap=kafka, clickhouse_url=clickhouse_server.url, work_dir=tmp_path, progress=print
    )
    e = result.expected
    # The ledger itself: a day of the demo shop with carts, orders and invalid events.
    assert e["messages"] > 2_000 and e["invalid"] > 0 and e["abandoned_carts"] > 0

    [run] = result.runs
    assert run.workers == 1
    assert run.counts.events_in == e["messages"]
    assert run.counts.events_stored == e["messages"] - e["invalid"]
    assert run.counts.dead_letters == e["invalid"]
    assert run.counts.triggers["cart_abandoned"] == e["abandoned_carts"]
    # Every stored event was consumed once by the worker, plus one clock event per partition.
    assert run.events == e["messages"] - e["invalid"] + opts.partitions
    assert run.event_inserts >= 1 and run.peak_rss_mb[0] > 0

    # One state per browser device, per helpdesk user id (not in the ledger) and per clock visitor.
    assert result.state_bytes["visitors"] >= e["visitors"] + opts.partitions
    assert 0 < result.state_bytes["mean_bytes"] <= result.state_bytes["max_bytes"]

    [live] = result.live
    assert live["requested_rate"] == opts.live_rates[0] and live["achieved_rate"] > 0
    assert live["latency"]["cart_abandoned"]["count"] > 0
    assert live["latency"]["checkout_friction"] == {"count": 0, "note": "no checkout_friction trigger in this run"} or (
        live["latency"]["checkout_friction"]["count"] > 0
    )
    assert result.collector["messages"] > 0 and result.collector["events_per_s"] > 0
    # One collector process by default: the rate per process is the rate; its CPU was measured.
    assert result.collector["processes"] == 1
    assert result.collector["events_per_s_per_process"] == result.collector["events_per_s"]
    assert result.collector["cpu_us_per_event"] > 0
    assert any(metric.startswith("1 worker(s): end to end") for metric, _ in report_rows(result))

    # The JSON's flat figures carry the same numbers under stable names.
    import orjson

    data = orjson.loads(result.to_json())
    figures = data["figures"]
    rate = opts.live_rates[0]
    # The targets: a quick run has no live run at 2,000 or 10,000/s, and its other sections are
    # smaller than the targets are stated for: it measures three and judges none.
    assert rate not in (2000, 10000)
    measured = {t["name"]: t["value"] for t in data["targets"] if t["value"] is not None}
    assert measured == {
        "one_worker_ratio_to_raw": figures["workers_1_ratio_to_raw"],
        "worker_cpu_per_event": figures["workers_1_cpu_us_per_event_processing"],
        "collector_per_process": figures["collector_events_per_s_per_process"],
    }
    assert all(t["met"] is None and t["too_small"] for t in data["targets"] if t["value"] is not None)
    assert figures["targets_judged"] == 0
    assert figures["workers_1_events_stored"] == e["messages"] - e["invalid"]
    assert figures["workers_1_dead_letters"] == e["invalid"]
    assert figures["workers_1_events_per_s"] == run.events_per_s and figures["raw_consumer_events_per_s"] > 0
    assert figures[f"live_{rate}_cart_abandoned_count"] == live["latency"]["cart_abandoned"]["count"]
    assert figures[f"live_{rate}_cart_abandoned_p99_ms"] == live["latency"]["cart_abandoned"]["p99_ms"]
    assert figures["collector_events_per_s"] == result.collector["events_per_s"]
    assert figures["collector_cpu_us_per_event"] == result.collector["cpu_us_per_event"]
    # Start-up, group join and recovery are left out of the processing figure, so it is the smaller.
    assert 0 < figures["workers_1_cpu_us_per_event_processing"] < figures["workers_1_cpu_us_per_event"]

    # The machine's speed: the worker's pure path alone, before and after the workers, on the same events.
    before, after = result.pure_path
    assert before["events"] == after["events"] > opts.cpu_events * 0.9 and before["digest"] == after["digest"]
    assert figures["pure_path_before_us_per_event"] == before["us_per_event"] > 0
    assert figures["pure_path_after_us_per_event"] == after["us_per_event"] > 0
    mean = round((before["us_per_event"] + after["us_per_event"]) / 2, 2)
    assert figures["workers_1_cpu_over_pure_path"] == round(figures["workers_1_cpu_us_per_event_processing"] / mean, 2)


def test_bench_without_a_clickhouse_server_says_how_to_get_one_in_one_line(kafka: str, monkeypatch, tmp_path) -> None:
    import infra.clickhouse_server
    from typer.testing import CliRunner

    from pipeline.cli import cli

    def no_server() -> list[str]:
        raise FileNotFoundError("no clickhouse-server binary found; install it with `bash infra/setup.sh --clickhouse-server`")

    monkeypatch.setattr(infra.clickhouse_server, "server_command", no_server)
    monkeypatch.setenv("CX_KAFKA_BOOTSTRAP", kafka)
    monkeypatch.setenv("CX_DATA_DIR", str(tmp_path))
    out = CliRunner().invoke(cli, ["bench", "--quick"])
    assert out.exit_code == 1
    assert isinstance(out.exception, SystemExit)  # typer's Exit(1), not an error escaping the command
    text = " ".join(out.output.split())  # the console wraps long lines at its width
    assert "Traceback" not in text and text.count("bench failed") == 1
    assert "install it with `bash infra/setup.sh --clickhouse-server`" in text and "--clickhouse-url" in text


def test_a_failed_bench_keeps_the_directory_its_error_points_at(kafka: str, monkeypatch, capsys, tmp_path) -> None:
    import tempfile

    import infra.clickhouse_server
    from pipeline.tools.bench_common import BenchError

    def no_server() -> list[str]:
        raise FileNotFoundError("no clickhouse-server binary found")

    monkeypatch.setattr(infra.clickhouse_server, "server_command", no_server)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the bench makes its own directory
    with pytest.raises(BenchError):
        run_bench(BenchOptions.quick(), Settings(kafka_bootstrap=kafka), bootstrap=kafka, progress=print)
    [kept] = tmp_path.glob("cx-bench-*")
    assert kept.is_dir()
    assert f"the run's logs are kept in {kept}" in capsys.readouterr().err


def test_a_bench_that_succeeds_removes_its_directory(tmp_path) -> None:
    from pipeline.tools.bench import _remove_unless_failed

    (tmp_path / "run" / "w1-0").mkdir(parents=True)
    _remove_unless_failed(tmp_path / "run", lambda: False)
    assert not (tmp_path / "run").exists()
