"""``cxstream backtest``: rule sets, inputs, hand-computed outcomes, and the live store left alone."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from pipeline.tools.backtest import (
    BacktestError,
    load_file,
    parse_duration_ms,
    partition_events,
    partition_of,
    rule_sets,
    run_rule_set,
)
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
    short, long = (run_rule_set(rs, partition_events(journeys(), 1), tmp_path / rs.name) for rs in sets)
    assert (short.triggers, short.holdout, short.offers, short.recovered_treatment) == (2, 0, 1, 1)
    assert (short.recovered_revenue, short.est_discount_cost) == pytest.approx((120.0, 18.0))
    assert (long.triggers, long.offers, long.recovered_treatment, long.est_discount_cost) == (1, 0, 0, 0.0)


def test_the_same_replay_gives_the_same_trigger_ids_and_arms(tmp_path: Path) -> None:
    from sinks.client import connect

    (rs,) = rule_sets(Rules(), ["30m"], [])  # the default 10 % holdout: both journeys fall in treatment
    run_rule_set(rs, partition_events(journeys(), 1), tmp_path / "a")
    ch = connect(f"chdb://{tmp_path / 'a'}")
    got = ch.execute("SELECT trigger_id, kind, action, holdout FROM cx.triggers FINAL ORDER BY trigger_id")
    ch.close()
    # Written down once: the ids are hashes of the events alone, so any run, on any machine, gives these.
    assert got == [
        ("6352af460e07fa57fcd4e16035f32360", "cart_abandoned", "offer", 0),  # anon-1's cart at T0+31m
        ("f23cb121fe24d9bc1d0bdcb13f9c07ae", "offer_cancelled", "none", 0),  # its cancellation at T0+90m
        ("fae3a584c10f91882c96c64ba5181bb7", "cart_abandoned", "none", 0),  # anon-2's cart at T0+32m
    ]


def test_file_of_segment_messages_is_normalized_and_bad_ones_reported(tmp_path: Path) -> None:
    path = tmp_path / "export.jsonl"
    lines = [
        {"type": "track", "event": "Product Added", "anonymousId": "a1", "messageId": "m1",
         "timestamp": "2026-01-01T10:00:00.000Z", "properties": {"product_id": "p1", "price": 10}},
        {"type": "track", "event": "Product Added", "anonymousId": "a1", "messageId": "m2",
         "timestamp": "2026-01-01T10:01:00.000Z", "properties": {"product_id": "p2"}},  # no price
    ]  # fmt: skip
    path.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in lines) + b"\n")
    loaded = load_file(path, "shop-x", Settings(_env_file=None), 1)
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
    assert "from demo seed 7, 300 visitors, 1 day; " in result.output  # one day, not "1 days"
    header = next(line for line in result.output.splitlines() if line.startswith("┃"))
    assert [c.strip() for c in header.split("┃")[2:-1]] == ["30m", "1h", "4h"]
    triggers = next(line for line in result.output.splitlines() if line.startswith("│ triggers"))
    counts = [int(c.strip().replace(",", "")) for c in triggers.split("│")[2:-1]]
    assert counts[0] >= counts[1] >= counts[2] > 0  # a longer delay lets more carts be ordered first


def test_demo_replay_at_30m_finds_the_ledgers_abandoned_and_recovered_carts(tmp_path: Path) -> None:
    from pipeline.tools.backtest import load_demo
    from pipeline.demo.storefront import generate

    settings = Settings(_env_file=None)
    loaded = load_demo(11, 400, 2.0, "demo-shop", settings)
    expected = generate(11, visitors=400, start_ms=1_767_225_600_000, span_ms=2 * 86_400_000).expected
    assert len(loaded.rejected) == expected.invalid
    (rs,) = rule_sets(Rules.from_settings(settings), ["30m"], [])
    outcome = run_rule_set(rs, loaded.partitions, tmp_path / "30m")
    # every abandoned cart of the ledger is one trigger; each cart its owner came back
    # to order (within 7 days, same device) is one recovered trigger, whichever arm
    assert outcome.abandoned == expected.abandoned_carts
    assert outcome.abandoned_recovered == expected.recovered_carts


# -- partitions -------------------------------------------------------------------------------

PARTITIONS = 3
HOUR_PAGES = [page(T0 + h * HOUR, anon="anon-x") for h in range(11)]


def customers_c_and_d() -> list[dict]:
    """anon-c: identify cust-c (consent) T0, adds 2 x 60.00 at T0+1m, orders o-c (total 120) at T0+90m;
    anon-d: identify cust-d (consent) T0, adds 30.00 at T0+2m, never returns."""
    return [
        identify(T0, "cust-c", True, anon="anon-c"),
        add(T0 + MIN, "sku-1", 60.0, 2, anon="anon-c"),
        track("Order Completed", T0 + 90 * MIN, anon="anon-c", user="cust-c", order_id="o-c", total=120.0),
        identify(T0, "cust-d", True, anon="anon-d"),
        add(T0 + 2 * MIN, "sku-2", 30.0, anon="anon-d"),
    ]


def three_partitions() -> list[dict]:
    """Three visitors on three partitions, in the order of an export sorted by visitor.

    anon-x  partition 0: a page every hour from T0 to T0+10h (its partition's watermark runs ahead)
    anon-c  partition 1: identify cust-c (consent) T0, adds 2 x 60.00 at T0+1m,
            orders o-c (total 120) at T0+90m
            30m: abandoned T0+31m, offer 15 % (cart 120), cancelled and recovered at T0+90m: cost 18.00
            4h:  the order comes before the deadline (T0+4h01m): no trigger, no offer
    anon-d  partition 2: identify cust-d (consent) T0, adds 30.00 at T0+2m, never returns
            30m: abandoned T0+32m, offer 10 %;  4h: abandoned T0+4h02m, offer 10 %; not recovered
    """
    return [*HOUR_PAGES, *customers_c_and_d()]


def decisions(store: Path) -> list[tuple]:
    from sinks.client import connect

    ch = connect(f"chdb://{store}")
    try:
        return ch.execute(
            "SELECT customer_id, kind, toUInt64(event_time_ms), action, discount_pct FROM cx.triggers FINAL"
            " ORDER BY event_time_ms, kind"
        )
    finally:
        ch.close()


def write_jsonl(path: Path, objs: list[dict]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(o) + b"\n" for o in objs))
    return path


def test_events_without_a_partition_go_where_the_collector_puts_them_in_file_order(tmp_path: Path) -> None:
    assert [partition_of(e, PARTITIONS) for e in (HOUR_PAGES[0], three_partitions()[11], three_partitions()[14])] == [
        0, 1, 2,
    ]  # fmt: skip  (Kafka's murmur2 partitioner on shop-a\x1fanon-x, -c, -d)
    loaded = load_file(write_jsonl(tmp_path / "e.jsonl", three_partitions()), "shop-a", Settings(_env_file=None), 3)
    assert sorted(loaded.partitions) == [0, 1, 2]
    # one record per event, offsets 0, 1, ... in file order within each partition
    assert [(o, e["event_time_ms"] - T0) for o, (e,) in loaded.partitions[0]] == [(h, h * HOUR) for h in range(11)]
    assert [(o, e["event_time_ms"] - T0) for o, (e,) in loaded.partitions[1]] == [(0, 0), (1, MIN), (2, 90 * MIN)]
    assert [(o, e["event_time_ms"] - T0) for o, (e,) in loaded.partitions[2]] == [(0, 0), (1, 2 * MIN)]


def test_each_partition_has_its_own_watermark_so_a_busy_partition_never_decides_another_ones_carts(
    tmp_path: Path,
) -> None:
    loaded = load_file(write_jsonl(tmp_path / "e.jsonl", three_partitions()), "shop-a", Settings(_env_file=None), 3)
    short, long = rule_sets(NO_HOLDOUT, ["30m", "4h"], [])
    s = run_rule_set(short, loaded.partitions, tmp_path / "30m")
    g = run_rule_set(long, loaded.partitions, tmp_path / "4h")
    assert (s.triggers, s.abandoned, s.offers, s.recovered_treatment) == (2, 2, 2, 1)
    assert (s.recovered_revenue, s.est_discount_cost) == pytest.approx((120.0, 18.0))
    assert (g.triggers, g.abandoned, g.offers, g.recovered_treatment, g.est_discount_cost) == (1, 1, 1, 0, 0.0)
    assert decisions(tmp_path / "30m") == [
        ("cust-c", "cart_abandoned", T0 + 31 * MIN, "offer", 15),
        ("cust-d", "cart_abandoned", T0 + 32 * MIN, "offer", 10),
        ("cust-c", "offer_cancelled", T0 + 90 * MIN, "none", 0),
    ]
    # cust-c ordered at T0+90m: under the 4 h rule only cust-d's cart is abandoned
    assert decisions(tmp_path / "4h") == [("cust-d", "cart_abandoned", T0 + 242 * MIN, "offer", 10)]


def test_a_recorded_partition_and_offset_are_kept(tmp_path: Path) -> None:
    # The export says every event was on partition 0, in this order: anon-x's ten hours came
    # first. The pipeline would then have seen cust-c's cart only after the watermark passed
    # T0+10h, so the 4 h rule abandons it (T0+4h01m) before its T0+90m order is read: an
    # offer of 15 %, cancelled by that order; the order is older than the trigger, so it
    # recovers nothing. Replayed as recorded.
    lines = [{**e, "kafka_partition": 0} for e in three_partitions()]
    loaded = load_file(write_jsonl(tmp_path / "e.jsonl", lines), "shop-a", Settings(_env_file=None), 3)
    assert list(loaded.partitions) == [0] and len(loaded.partitions[0]) == 16
    (long,) = rule_sets(NO_HOLDOUT, ["4h"], [])
    g = run_rule_set(long, loaded.partitions, tmp_path / "4h")
    assert (g.triggers, g.offers, g.recovered_treatment, g.est_discount_cost) == (2, 2, 0, 0.0)
    assert decisions(tmp_path / "4h") == [
        ("cust-c", "offer_cancelled", T0 + 90 * MIN, "none", 0),
        ("cust-c", "cart_abandoned", T0 + 241 * MIN, "offer", 15),
        ("cust-d", "cart_abandoned", T0 + 242 * MIN, "offer", 10),
    ]
    # records: events with the same partition and offset form one record, in offset order
    lines = [
        {**three_partitions()[11], "kafka_partition": 1, "kafka_offset": 7},
        {**three_partitions()[12], "kafka_partition": 1, "kafka_offset": 5},
        {**three_partitions()[13], "kafka_partition": 1, "kafka_offset": 7},
    ]
    loaded = load_file(write_jsonl(tmp_path / "r.jsonl", lines), "shop-a", Settings(_env_file=None), 3)
    assert [(o, [e["event_id"] for e in events]) for o, events in loaded.partitions[1]] == [
        (5, [lines[1]["event_id"]]), (7, [lines[0]["event_id"], lines[2]["event_id"]]),
    ]  # fmt: skip
    assert all("kafka_partition" not in e and "kafka_offset" not in e for e in loaded.events)
    with pytest.raises(BacktestError, match="r.jsonl:1: kafka_offset without kafka_partition"):
        load_file(write_jsonl(tmp_path / "r.jsonl", [{**lines[0], "kafka_partition": None}]), "shop-a",
                  Settings(_env_file=None), 3)  # fmt: skip


def test_export_replays_on_the_same_partitions_and_offsets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CX_DATA_DIR", str(tmp_path / "live"))
    source = write_jsonl(tmp_path / "e.jsonl", three_partitions())
    exported = tmp_path / "export.jsonl"
    args = ["backtest", "--file", str(source), "--partitions", "3", "--delay", "4h", "--out", str(tmp_path / "bt")]
    result = CliRunner().invoke(cli, [*args, "--export", str(exported)], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    assert "16 events in 3 partitions" in result.output
    lines = [orjson.loads(line) for line in exported.read_bytes().splitlines()]
    assert [(x["kafka_partition"], x["kafka_offset"]) for x in lines][10:] == [
        (0, 10), (1, 0), (1, 1), (1, 2), (2, 0), (2, 1),
    ]  # fmt: skip
    # read back with one partition as the default: the recorded partitions win
    again = load_file(exported, "shop-a", Settings(_env_file=None), 1)
    assert again.partitions == load_file(source, "shop-a", Settings(_env_file=None), 3).partitions
