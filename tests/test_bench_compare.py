"""`cxstream bench-compare`: two bench JSON files side by side (pipeline/tools/bench_compare.py)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from pipeline.cli import cli
from pipeline.tools.bench_compare import CompareError, compare_figures, compare_targets, load_run
from pipeline.tools.bench_targets import judge

# A file from before the bench judged targets: figures only, no allowed lateness (the default, 1 s).
OLDER = {
    "figures": {
        "raw_consumer_events_per_s": 80_000,
        "workers_1_events_per_s": 10_000,
        "workers_1_ratio_to_raw": 0.125,
        "workers_1_cpu_us_per_event_processing": 80.0,
        "live_2000_checkout_friction_p99_ms": 300,
        "live_2000_cart_abandoned_p99_ms": 1_290,
        "collector_events_per_s": 0,
    }
}
NEWER = {
    "figures": {
        "raw_consumer_events_per_s": 100_000,
        "workers_1_events_per_s": 12_500,
        "workers_1_ratio_to_raw": 0.125,
        "workers_1_cpu_us_per_event_processing": 60.0,
        "live_2000_checkout_friction_p99_ms": 200,
        "live_2000_cart_abandoned_p99_ms": 1_290,
        "targets_judged": 4,
        "targets_met": 2,
    },
    "allowed_lateness_ms": 250,
}


def test_each_figure_of_either_run_with_its_change() -> None:
    rows = [change.cells() for change in compare_figures(OLDER, NEWER)]
    assert rows == [
        ("raw_consumer_events_per_s", "80,000", "100,000", "+25.0%"),
        ("workers_1_events_per_s", "10,000", "12,500", "+25.0%"),
        ("workers_1_ratio_to_raw", "0.125", "0.125", "+0.0%"),
        ("workers_1_cpu_us_per_event_processing", "80", "60", "-25.0%"),
        ("live_2000_checkout_friction_p99_ms", "300", "200", "-33.3%"),
        ("live_2000_cart_abandoned_p99_ms", "1,290", "1,290", "+0.0%"),
        ("targets_judged", "-", "4", ""),  # only the newer run has it
        ("targets_met", "-", "2", ""),
        ("collector_events_per_s", "0", "-", ""),  # only the older run has it: after the newer one's
    ]


def test_targets_are_judged_in_each_run_with_that_run_s_allowed_lateness() -> None:
    rows = {a.target.name: (a.text(), b.text()) for a, b in compare_targets(OLDER, NEWER)}
    assert rows["checkout_friction_2000_p99"] == ("300 ms: missed by 50 ms", "200 ms: met")
    # 1,290 ms: under 1,000 + 300 in the older run, over 250 + 300 in the newer one.
    assert rows["cart_abandoned_2000_p99"] == ("1,290 ms: met", "1,290 ms: missed by 740 ms")
    assert rows["one_worker_ratio_to_raw"] == ("12.5%: missed by 17.5 points",) * 2
    assert rows["worker_cpu_per_event"] == ("80.0 us: missed by 60.0 us", "60.0 us: missed by 40.0 us")
    assert rows["checkout_friction_10000_p99"] == ("not measured in this run",) * 2
    # No collector in the newer run; a rate of 0 in the older one is not a measurement.
    assert rows["collector_per_process"] == ("not measured in this run",) * 2


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "No such file or directory"),
        (b"not json", "not JSON"),
        (b"[1, 2]", "no `figures` object"),
        (b'{"runs": []}', "no `figures` object"),
        (b'{"figures": {"workers_1_events_per_s": "fast"}}', "figure 'workers_1_events_per_s' is not a number"),
    ],
)
def test_a_file_that_is_no_bench_result_is_named_in_one_line(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "run.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CompareError, match=message) as caught:
        load_run(path)
    assert str(path) in str(caught.value)


def test_the_command_prints_both_tables(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_bytes(orjson.dumps(OLDER))
    (tmp_path / "b.json").write_bytes(orjson.dumps(NEWER))
    out = CliRunner().invoke(cli, ["bench-compare", str(tmp_path / "a.json"), str(tmp_path / "b.json")])
    assert out.exit_code == 0, out.output
    lines = [" ".join(line.replace("│", " ").split()) for line in out.output.splitlines()]
    assert "workers_1_events_per_s 10,000 12,500 +25.0%" in lines
    # The targets' table wraps its first column at 80 columns; the first row's line holds both verdicts.
    [row] = [line for line in lines if line.startswith("checkout_friction at") and "300 ms" in line]
    assert row.endswith("300 ms: missed by 50 ms 200 ms: met")


def test_the_command_with_a_bad_file_exits_1_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "b.json").write_bytes(orjson.dumps(NEWER))
    out = CliRunner().invoke(cli, ["bench-compare", str(tmp_path / "missing.json"), str(tmp_path / "b.json")])
    assert out.exit_code == 1
    assert out.output.strip() == f"bench-compare: {tmp_path / 'missing.json'}: No such file or directory"


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)  # fmt: skip
_figure_names = st.sampled_from([
    "workers_1_ratio_to_raw", "workers_1_cpu_us_per_event_processing", "live_2000_checkout_friction_p99_ms",
    "live_2000_cart_abandoned_p99_ms", "collector_events_per_s_per_process", "raw_consumer_events_per_s",
]) | st.text(max_size=12)  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.one_of(
        st.binary(max_size=64),
        _json.map(orjson.dumps),
        st.fixed_dictionaries({"figures": _json}, optional={"options": _json, "allowed_lateness_ms": _json}).map(orjson.dumps),
    )
)
def test_any_file_is_compared_or_refused_in_one_line(tmp_path: Path, body: bytes) -> None:
    path = tmp_path / "run.json"
    path.write_bytes(body)
    try:
        run = load_run(path)
    except CompareError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc)
        return
    rows = compare_figures(run, run)
    assert all(change.change in (None, 0.0) for change in rows)
    for before, after in compare_targets(run, run):
        assert before.text() == after.text()


@settings(max_examples=300, deadline=None)
@given(
    figures=st.dictionaries(_figure_names, st.integers(0, 10**9) | st.floats(0, 1e9), max_size=8),
    lateness=st.integers(0, 10**7),
    options=st.none() | st.dictionaries(
        st.sampled_from(["events", "live_seconds", "collector_events", "seed"]), st.integers(0, 10**7) | st.text(max_size=3)
    ),
)
def test_any_figures_are_judged_as_met_missed_or_not_judged(figures: dict, lateness: int, options: dict | None) -> None:
    for verdict in judge(figures, lateness, options):
        text = verdict.text()
        if verdict.met is None:
            assert text == "not measured in this run" or ": too small to judge (" in text
        else:
            assert text.endswith(": met") == verdict.met and (verdict.met or ": missed by " in text)
