"""``cxstream backtest``: rule sets, inputs, hand-computed outcomes, and the live store left alone."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from pipeline.backtest import BacktestError, load_file, parse_duration_ms, rule_sets, run_rule_set
from pipeline.cli import cli
from pipeline.detect import Rules
from pipeline.settings import Settings
from tests.detect.helpers import HOUR, MIN, T0, add, identify, page, track

NO_HOLDOUT = Rules(holdout_pct=0.0)


def test_durations_and_rule_sets() -> None:
    assert [parse_duration_ms(d) for d in ("90s", "30m", "1h", "4h", "1d")] == [
        90_000, 1_800_000, 3_600_000, 14_400_000, 86_400_000,
    ]  # fmt: skip
    with pytest.raises(BacktestError, match="positive duration"):
        parse_duration_ms("0m")
    sets = rule_sets(NO_HOLDOUT, ["30m", "4h"], ["100=15", "50=5,150=10"])
    assert [(s.name, s.rules.abandon_after_ms, s.rules.offer_discount_tiers) for s in sets] == [
        ("30m tiers 100=15", 30 * MIN, ((100.0, 15),)),
        ("30m tiers 50=5,150=10", 30 * MIN, ((50.0, 5), (150.0, 10))),
        ("4h tiers 100=15", 4 * HOUR, ((100.0, 15),)),
        ("4h tiers 50=5,150=10", 4 * HOUR, ((50.0, 5), (150.0, 10))),
    ]
    assert [s.name for s in rule_sets(NO_HOLDOUT, ["30m", "1h"], [])] == ["30m", "1h"]


def journeys() -> list[dict]:
    """Two visitors.

    anon-1  identify cust-1 (consent) T0, adds 2 x 60.00 at T0+1m, comes back and orders o-1
            (total 120) at T0+1h30m
            30m: abandoned T0+31m with an offer of 15 % (cart 120 >= 100), recovered: cost 18.00
            4h:  the order comes before the deadline: no trigger
    anon-2  adds 30.00 at T0+2m and never returns
            30m and 4h: abandoned (anonymous: action none), not recovered
    """
    return [
        identify(T0, "cust-1", True, anon="anon-1"),
        add(T0 + MIN, "sku-1", 60.0, 2, anon="anon-1"),
        add(T0 + 2 * MIN, "sku-2", 30.0, anon="anon-2"),
        page(T0 + 50 * MIN, anon="anon-3"),
        track("Order Completed", T0 + 90 * MIN, anon="anon-1", user="cust-1", order_id="o-1", total=120.0),
    ]


def test_replay_under_two_delays_gives_hand_computed_outcomes(tmp_path: Path) -> None:
    sets = rule_sets(NO_HOLDOUT, ["30m", "4h"], [])
    short, long = (run_rule_set(rs, journeys(), tmp_path / rs.name) for rs in sets)
    assert (short.triggers, short.holdout, short.offers, short.recovered_treatment) == (2, 0, 1, 1)
    assert (short.recovered_revenue, short.est_discount_cost) == pytest.approx((120.0, 18.0))
    assert (long.triggers, long.offers, long.recovered_treatment, long.est_discount_cost) == (1, 0, 0, 0.0)


def test_the_same_replay_gives_the_same_trigger_ids(tmp_path: Path) -> None:
    from sinks.client import connect

    (rs,) = rule_sets(Rules(), ["30m"], [])
    ids = []
    for run in ("a", "b"):
        run_rule_set(rs, journeys(), tmp_path / run)
        ch = connect(f"chdb://{tmp_path / run}")
        ids.append(ch.execute("SELECT trigger_id, kind, action, holdout FROM cx.triggers FINAL ORDER BY trigger_id"))
        ch.close()
    assert ids[0] == ids[1]
    assert sorted(r[1] for r in ids[0]) == ["cart_abandoned", "cart_abandoned", "offer_cancelled"]


def test_file_of_segment_messages_is_normalized_and_bad_ones_reported(tmp_path: Path) -> None:
    path = tmp_path / "export.jsonl"
    lines = [
        {"type": "track", "event": "Product Added", "anonymousId": "a1", "messageId": "m1",
         "timestamp": "2026-01-01T10:00:00.000Z", "properties": {"product_id": "p1", "price": 10}},
        {"type": "track", "event": "Product Added", "anonymousId": "a1", "messageId": "m2",
         "timestamp": "2026-01-01T10:01:00.000Z", "properties": {"product_id": "p2"}},  # no price
    ]  # fmt: skip
    path.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in lines) + b"\n")
    loaded = load_file(path, "shop-x", Settings(_env_file=None))
    assert [(e["tenant"], e["event"], e["event_time_ms"]) for e in loaded.events] == [
        ("shop-x", "Product Added", 1_767_261_600_000)
    ]
    assert loaded.rejected == ["line 2: missing_property: price is required"]
    path.write_bytes(b'{"type": "page"}\n{oops\n')
    with pytest.raises(BacktestError, match="export.jsonl:2: not JSON"):
        load_file(path, "shop-x", Settings(_env_file=None))


def test_cli_on_an_exported_file_prints_rule_sets_side_by_side_and_leaves_the_live_store_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CX_DATA_DIR", str(tmp_path / "live"))
    monkeypatch.setenv("CX_HOLDOUT_PCT", "0")
    export = tmp_path / "events.jsonl"
    export.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in journeys()))
    result = CliRunner().invoke(
        cli, ["backtest", "--file", str(export), "--delay", "30m", "--delay", "4h", "--out", str(tmp_path / "bt")],
        env={"COLUMNS": "160"},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]] for line in result.output.splitlines()
            if line.startswith("│")}  # fmt: skip
    assert rows["triggers"] == ["2", "1"]
    assert rows["offers"] == ["1", "0"]
    assert rows["recovered (treatment)"] == ["1", "0"]
    assert rows["est. discount cost"] == ["18.00", "0.00"]
    assert not (tmp_path / "live").exists()  # the configured store was never opened
    refused = CliRunner().invoke(
        cli, ["backtest", "--file", str(export), "--out", str(tmp_path / "live")], env={"COLUMNS": "400"}
    )
    assert refused.exit_code == 2 and "overlaps the pipeline's store" in refused.output


def test_cli_runs_on_the_demo_traffic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CX_DATA_DIR", str(tmp_path / "live"))
    result = CliRunner().invoke(
        cli, ["backtest", "--demo", "--visitors", "300", "--days", "1", "--out", str(tmp_path / "bt")],
        env={"COLUMNS": "160"},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    header = next(line for line in result.output.splitlines() if line.startswith("┃"))
    assert [c.strip() for c in header.split("┃")[2:-1]] == ["30m", "1h", "4h"]
    triggers = next(line for line in result.output.splitlines() if line.startswith("│ triggers"))
    counts = [int(c.strip().replace(",", "")) for c in triggers.split("│")[2:-1]]
    assert counts[0] >= counts[1] >= counts[2] > 0  # a longer delay lets more carts be ordered first


def test_demo_replay_at_30m_finds_the_ledgers_abandoned_and_recovered_carts(tmp_path: Path) -> None:
    from pipeline.backtest import load_demo
    from pipeline.demo.storefront import generate

    settings = Settings(_env_file=None)
    loaded = load_demo(11, 400, 2.0, "demo-shop", settings)
    expected = generate(11, visitors=400, start_ms=1_767_225_600_000, span_ms=2 * 86_400_000).expected
    assert len(loaded.rejected) == expected.invalid
    (rs,) = rule_sets(Rules.from_settings(settings), ["30m"], [])
    outcome = run_rule_set(rs, loaded.events, tmp_path / "30m")
    # every abandoned cart of the ledger is one trigger; each cart its owner came back
    # to order (within 7 days, same device) is one recovered trigger, whichever arm
    assert outcome.abandoned == expected.abandoned_carts
    assert outcome.abandoned_recovered == expected.recovered_carts
