"""``cxstream backtest`` on bad input: one line as written (never rich markup), the right exit code, no traceback.

The sweep's cases: text with ``[`` in a setting, an option or a path (it
once crashed rich or vanished), an ``--out``/``--export`` that cannot be
written, no broker for ``--kafka``, and ``--partitions`` without an upper
bound whose replay grew with the cube of the number.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from pipeline.cli import cli
from pipeline.detect import Rules
from pipeline.settings import Settings
from pipeline.tools import backtest as bt
from tests.detect.helpers import MIN, T0, add, identify, page
from tests.test_backtest import customers_c_and_d

NO_HOLDOUT = Rules(holdout_pct=0.0)


@pytest.fixture(autouse=True)
def _env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CX_DATA_DIR", str(tmp_path / "live"))
    monkeypatch.setenv("CX_PII_SALT", "testsalt-xyz")


def run(*args: str, columns: int = 80, **env: str):  # noqa: ANN201 - click's Result
    return CliRunner().invoke(cli, ["backtest", *args], env={"COLUMNS": str(columns), **env})


def no_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if the events are loaded: the check under test must come first."""

    def refuse(*_a: object, **_k: object) -> None:
        raise AssertionError("the events were loaded before the paths were checked")

    monkeypatch.setattr(bt, "load_demo", refuse)
    monkeypatch.setattr(bt, "load_file", refuse)


# -- text as written --------------------------------------------------------------------------


def test_a_tier_list_with_a_closing_tag_is_one_line_as_written() -> None:
    out = run("--demo", "--tiers", "[/x]=5")
    assert out.exit_code == 2
    assert out.output == "backtest: --tiers [/x]=5: expected a number=whole percent, got [/x]=5\n"


def test_a_delay_with_a_closing_tag_is_one_line_as_written() -> None:
    out = run("--demo", "--delay", "[/]")
    assert out.exit_code == 2
    assert out.output == "backtest: not a positive duration: '[/]' (e.g. 30m, 1h, 4h)\n"


def test_a_missing_file_whose_name_holds_tags_is_named_as_written(tmp_path: Path) -> None:
    missing = tmp_path / "[/b]" / "r.json"
    out = run("--file", str(missing))
    assert out.exit_code == 2
    assert out.output == f"backtest: {missing}: No such file or directory\n"


def test_a_setting_with_a_closing_tag_is_shown_as_written() -> None:
    out = run("--demo", CX_WRITE_KEYS="[/]")
    assert out.exit_code == 2 and isinstance(out.exception, SystemExit)
    assert out.output == "invalid configuration:\n  CX_WRITE_KEYS: Value error, expected key=tenant, got '[/]'\n"


def test_a_setting_with_brackets_keeps_them() -> None:
    out = run("--demo", CX_WRITE_KEYS="[x]")
    assert out.exit_code == 2
    assert "got '[x]'" in out.output


def test_a_long_error_is_one_line_on_a_narrow_terminal() -> None:
    delay = "9" * 150 + "x"
    out = run("--demo", "--delay", delay, columns=20)
    assert out.exit_code == 2
    assert out.output == f"backtest: not a positive duration: {delay!r} (e.g. 30m, 1h, 4h)\n"


def test_a_file_name_with_tags_is_shown_as_written_in_the_summary_and_the_table(tmp_path: Path) -> None:
    folder = tmp_path / "[b]dir[/b]"
    folder.mkdir(parents=True)  # "[b]dir[" and in it "b]"
    events = [
        identify(T0, "cust-1", True, anon="anon-1"),
        add(T0 + MIN, "sku-1", 60.0, 2, anon="anon-1"),
        page(T0 + 50 * MIN, anon="anon-3"),
    ]
    path = folder / "[x]e.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    out = run("--file", str(path), "--partitions", "1", "--delay", "30m", "--out", str(tmp_path / "bt"), columns=300)
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert lines[0] == f"3 events in 1 partitions from {path}; 0 rejected"
    title = lines[1 : next(i for i, line in enumerate(lines) if line.startswith("┏"))]
    assert "".join("".join(title).split()) == f"backtest:{path}"  # the table's title, wrapped to its width
    scratch = tmp_path / "bt"
    assert lines[-1] == f"scratch stores: {scratch} (query one with CX_CLICKHOUSE_URL=chdb://{scratch}/<rule set>)"


# -- --out and --export -----------------------------------------------------------------------


def test_an_out_that_is_a_file_is_refused_before_the_events_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_load(monkeypatch)
    a_file = tmp_path / "passwd"
    a_file.write_text("root:x:0:0\n")
    out = run("--demo", "--out", str(a_file))
    assert out.exit_code == 2
    assert out.output == f"backtest: --out {a_file}: not a directory\n"
    assert a_file.read_text() == "root:x:0:0\n"


def test_an_out_that_cannot_be_created_is_one_line_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    no_load(monkeypatch)
    (tmp_path / "f").write_text("")
    below_a_file = tmp_path / "f" / "scratch"
    out = run("--demo", "--out", str(below_a_file))
    assert out.exit_code == 2
    assert out.output == f"backtest: --out {below_a_file}: cannot create the directory (Not a directory)\n"


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_an_out_under_proc_is_one_line_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    no_load(monkeypatch)
    out = run("--demo", "--out", "/proc/x")
    assert out.exit_code == 2
    assert out.output == "backtest: --out /proc/x: cannot create the directory (No such file or directory)\n"


def test_an_export_that_is_a_directory_is_refused_before_the_events_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_load(monkeypatch)
    out = run("--demo", "--export", str(tmp_path))
    assert out.exit_code == 2
    assert out.output == f"backtest: --export {tmp_path}: is a directory\n"


def test_an_export_in_a_missing_directory_is_refused_before_the_events_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_load(monkeypatch)
    target = tmp_path / "x" / "y"
    out = run("--demo", "--export", str(target))
    assert out.exit_code == 2
    assert out.output == f"backtest: --export {target}: {tmp_path / 'x'} does not exist\n"


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_an_export_that_fails_while_written_is_one_line_naming_it() -> None:
    out = run("--demo", "--visitors", "5", "--days", "0.01", "--export", "/dev/full")
    assert out.exit_code == 2
    assert out.output == "backtest: --export /dev/full: cannot write (No space left on device)\n"


def test_an_export_that_is_the_input_file_is_read_before_it_is_written(tmp_path: Path) -> None:
    # The up-front check must not truncate it: it is the file being read.
    events = [add(T0 + MIN, "sku-1", 60.0, 2, anon="anon-1"), page(T0 + 2 * MIN, anon="anon-2")]
    path = tmp_path / "e.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    out = run("--file", str(path), "--partitions", "1", "--delay", "30m", "--out", str(tmp_path / "bt"),
              "--export", str(path), columns=200)  # fmt: skip
    assert out.exit_code == 0, out.output
    assert out.output.startswith("2 events in 1 partitions")
    exported = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    assert [(e["event_id"], e["kafka_partition"], e["kafka_offset"]) for e in exported] == [
        (events[0]["event_id"], 0, 0), (events[1]["event_id"], 0, 1),
    ]  # fmt: skip


# -- --kafka without a broker -----------------------------------------------------------------


def test_kafka_without_a_broker_is_one_line_and_exit_69(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CX_")}
    env.update({"CX_DATA_DIR": str(tmp_path / "live"), "CX_PII_SALT": "testsalt-xyz",
                "CX_KAFKA_BOOTSTRAP": "127.0.0.1:1", "CX_KAFKA_CHECK_TIMEOUT_S": "1", "COLUMNS": "40"})  # fmt: skip
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", "backtest", "--kafka"], env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 69
    assert done.stdout == ""
    assert done.stderr == (  # the one line: librdkafka's own log is off
        "backtest: no Kafka broker answered at 127.0.0.1:1 within 1 s (Failed to get metadata: Local: Broker "
        "transport failure); check CX_KAFKA_BOOTSTRAP and the CX_KAFKA_SECURITY_* settings\n"
    )
    assert time.monotonic() - started < 30  # the check's timeout, not the 10 s of each former attempt


# -- --partitions -----------------------------------------------------------------------------


@pytest.mark.parametrize(("given", "message"), [
    ("0", "Invalid value for '--partitions': Input should be greater than or equal to 1"),
    ("1025", "Invalid value for '--partitions': Input should be less than or equal to 1024"),
])  # fmt: skip
def test_partitions_outside_what_cx_kafka_partitions_allows_is_a_usage_error(given: str, message: str) -> None:
    out = run("--demo", "--partitions", given, columns=200)
    assert out.exit_code == 2 and isinstance(out.exception, SystemExit)
    assert message in " ".join(out.output.replace("│", " ").split())


def three_visitors() -> list[dict]:
    """anon-c: identify cust-c, adds 2 x 60.00 at T0+1m, orders o-c at T0+90m (30m: abandoned T0+31m, offer 15 %,
    cancelled by the order); anon-d: identify cust-d, adds 30.00 at T0+2m, never returns (30m: abandoned T0+32m,
    offer 10 %); anon-x: a page at T0+10h, which moves its partition's watermark past both deadlines."""
    return [*customers_c_and_d(), page(T0 + 600 * MIN, anon="anon-x")]


def decided(partitions: dict[int, list[bt.Record]]) -> list[tuple]:
    triggers = triggers_of(partitions)
    return sorted(
        (t["customer_id"], t["kind"], t["event_time_ms"] - T0, t["action"], (t["offer"] or {}).get("discount_pct", 0))
        for t in triggers
    )


def triggers_of(partitions: dict[int, list[bt.Record]]) -> list[dict]:
    (rs,) = bt.rule_sets(NO_HOLDOUT, ["30m"], [])
    outputs: list = []
    bt.replay(rs.rules, partitions, outputs.extend)
    return [t for out in outputs for t in out.triggers]


HAND_COMPUTED = [
    ("cust-c", "cart_abandoned", 31 * MIN, "offer", 15),
    ("cust-c", "offer_cancelled", 90 * MIN, "none", 0),
    ("cust-d", "cart_abandoned", 32 * MIN, "offer", 10),
]


def test_partitions_far_apart_decide_as_partitions_next_to_each_other() -> None:
    c, d, x = three_visitors()[:3], three_visitors()[3:5], three_visitors()[5:]
    near = {0: [(i, [e]) for i, e in enumerate(c)], 1: [(i, [e]) for i, e in enumerate(d)], 2: [(0, x)]}
    far = {3: near[0], 700: near[1], 1023: near[2]}
    assert decided(near) == HAND_COMPUTED
    assert triggers_of(far) == triggers_of(near)  # the same ids, times of emission and order, too


def test_a_replay_runs_only_the_partitions_that_have_records(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[int] = []
    real = bt.LocalStages

    def spy(*args: object, **kwargs: object):  # noqa: ANN202
        made.append(kwargs["partitions"])
        return real(*args, **kwargs)

    monkeypatch.setattr(bt, "LocalStages", spy)
    c, d = three_visitors()[:3], three_visitors()[3:5]
    decided({5: [(i, [e]) for i, e in enumerate(c)], 1000: [(i, [e]) for i, e in enumerate(d)]})
    assert made == [2]  # before: 1001, each one a source of every customer partition


def test_a_recorded_partition_number_of_a_billion_replays_at_once(tmp_path: Path) -> None:
    # Before, the replay made a billion and one partitions for it.
    lines = [{**e, "kafka_partition": 10**9} for e in three_visitors()]
    path = tmp_path / "e.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in lines))
    loaded = bt.load_file(path, "shop-a", Settings(_env_file=None), 1)
    started = time.monotonic()
    assert [t[:2] for t in decided(loaded.partitions)] == [
        ("cust-c", "cart_abandoned"), ("cust-c", "offer_cancelled"), ("cust-d", "cart_abandoned"),
    ]  # fmt: skip
    assert time.monotonic() - started < 5


def test_the_demo_on_1024_partitions_replays_as_fast_as_on_one() -> None:
    # 47 events of 5 visitors: before, 400 partitions took 12 s of replay and 1,000 over two minutes.
    settings = Settings(_env_file=None, pii_salt="testsalt-xyz")
    (rs,) = bt.rule_sets(Rules.from_settings(settings), ["30m"], [])
    seconds = {}
    for partitions in (1, 1024):
        loaded = bt.load_demo(7, 5, 0.01, "demo-shop", settings, partitions)
        assert len(loaded.events) == 47
        started = time.monotonic()
        bt.replay(rs.rules, loaded.partitions, lambda _outputs: None)
        seconds[partitions] = time.monotonic() - started
    assert seconds[1024] < 2.0, seconds


# -- stored events whose fields detection cannot read ---------------------------------------------


def stored(**fields: object) -> bytes:
    event = {"event_id": "e1", "tenant": "shop", "type": "track", "event": "Product Added", "anonymous_id": "a1",
             "event_time_ms": T0, "received_at_ms": T0, "properties": '{"cart_id":"k1","product_id":"p1"}'}  # fmt: skip
    return orjson.dumps({**event, **fields}) + b"\n"


@pytest.mark.parametrize(
    ("fields", "said"),
    [
        ({"anonymous_id": 5}, "anonymous_id is not a string (or null)"),  # a traceback from the replay before
        ({"user_id": {"id": "c1"}}, "user_id is not a string (or null)"),
        ({"properties": {"cart_id": "k1"}}, "properties is not a string (or null)"),
        ({"sent_at_ms": True}, "sent_at_ms is not an integer (or null)"),
        ({"event_id": 7}, "event_id is not a string"),
        ({"type": "purchase"}, "type 'purchase' is not one of track, page, identify, screen, group, alias"),
    ],
)
def test_a_stored_event_with_a_field_of_another_type_stops_with_its_line(tmp_path, fields, said) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(stored() + stored(**{"event_id": "e2", **fields}))
    out = run("--file", str(path), "--delay", "1h", columns=400)
    assert out.exit_code == 2
    assert out.stdout == ""
    assert out.stderr == f"backtest: {path}:2: {said}\n"


def test_an_event_detection_refuses_stops_the_replay_naming_it(tmp_path, monkeypatch) -> None:
    # The worker dead-letters such an event (processing_error); the replay names it instead of a traceback.
    from pipeline.detect.processor import EventFailed

    def refuse(self, partition, offset, events, wall_ms):  # noqa: ANN001, ANN202 - LocalStages.process's
        raise EventFailed(0, TypeError("unsupported operand"))

    monkeypatch.setattr(bt.LocalStages, "process", refuse)
    path = tmp_path / "events.jsonl"
    path.write_bytes(stored())
    out = run("--file", str(path), "--delay", "1h", columns=400)
    assert out.exit_code == 2
    assert out.stderr == (
        "backtest: event 'e1' of tenant 'shop' could not be replayed (TypeError: unsupported operand); the worker "
        "dead-letters such an event (processing_error): leave it out of the file\n"
    )
