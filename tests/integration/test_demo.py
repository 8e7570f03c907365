"""``cxstream demo`` as docs/demo.md runs it, shortened: 60 visitors sent at 200 messages per second.

It starts its own embedded broker and a chdb store in a temporary
directory, sends a generated day through the collector with the Segment
SDK, and prints what it found. The tests read that output: the report must
show non-zero sessions, carts, orders and abandonment rate, the ClickHouse
counts equal to the generator's ledger, and every abandoned cart read back
from Kafka as a ``cart_abandoned`` trigger.

The default run starts the demo once, with ``--dashboard``: the report is
printed before the dashboard's address, so one run checks the report, the
dashboard's numbers and the stop on Ctrl-C (exit 0: the report's verdict).
The same run without ``--dashboard``, which must end by itself, needs
``CX_SLOW=1``.

The demo's day ends 45 minutes before now, so what it holds depends on
when the test runs. With 60 visitors and seed 7, every start minute of a week
gives at least 11 carts, 4 orders and 4 abandoned carts and at most 879
messages (852 on whole hours: a bound of 852 failed on a Sunday at 14:45).
The test asks for at least 8 carts and 3 orders, and at most 1,000 messages
(5 s of sending at the test's rate).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.processes import stop_process_tree

pytestmark = pytest.mark.integration

RATE_PER_S = 200


def _number(cell: str) -> float:
    return float(cell.replace(",", ""))


def _rows(out: str, title: str) -> list[list[str]]:
    """The body rows (cells) of the table printed under ``title``; its header is drawn with ┃."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    rows = []
    for line in lines[start + 1 :]:
        if line.startswith("└"):
            break
        if line.startswith("│"):
            rows.append([cell.strip() for cell in line.strip().strip("│").split("│")])
    return rows


def _table(out: str, title: str) -> dict[str, list[str]]:
    """The table printed under ``title``: first cell -> the other cells."""
    return {row[0]: row[1:] for row in _rows(out, title)}


def _check_report(out: str) -> int:
    """Assert the demo's report in ``out`` (see the module docstring); returns the orders it measured."""
    assert "demo complete" in out, out

    ledger = re.search(r"storefront: ([\d,]+) messages, ([\d,]+) carts, ([\d,]+) orders", out)
    assert ledger, out
    messages, carts, orders = (int(_number(g)) for g in ledger.groups())
    assert messages <= 1_000 and carts >= 8 and orders >= 3

    # Paced by --rate: message i is handed to the SDK i / rate seconds after the first.
    sent = re.search(r"sent ([\d,]+) messages in ([\d.]+) s", out)
    assert sent, out
    assert int(_number(sent.group(1))) == messages
    assert float(sent.group(2)) >= (messages - 1) / RATE_PER_S

    kpi = _table(out, "cx.kpi_daily for tenant demo-shop")
    assert sum(_number(c) for c in kpi["sessions"]) > 0
    assert sum(_number(c) for c in kpi["carts"]) == carts
    assert sum(_number(c) for c in kpi["orders"]) == orders
    rates = [_number(c) for c in kpi["cart_abandonment_rate"]]
    assert max(rates) > 0 and all(0 <= r <= 1 for r in rates)

    check = _table(out, "measured in ClickHouse vs the storefront's ledger")
    assert {name: measured == expected for name, (measured, expected) in check.items()} == {
        "events stored": True,
        "dead letters": True,
        "carts": True,
        "orders": True,
        "carts abandoned (triggers)": True,
    }
    assert check["carts"] == [f"{carts:,}", f"{carts:,}"]
    assert check["orders"] == [f"{orders:,}", f"{orders:,}"]
    abandoned = int(_number(check["carts abandoned (triggers)"][1]))
    assert abandoned >= 4

    read_back = re.search(r"cx\.triggers: (\d+) cart_abandoned read back from Kafka", out)
    assert read_back, out
    assert int(read_back.group(1)) == abandoned
    sample = _rows(out, "cx.triggers:")  # event_time, customer, cart value, action, offer, holdout
    assert len(sample) == min(abandoned, 5)
    assert all(row[3] in ("offer", "assist", "none") for row in sample)
    return orders


def _demo(tmp_path: Path, *extra: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CX_")}  # the embedded defaults
    env.update({"COLUMNS": "200", "PYTHONIOENCODING": "utf-8"})
    args = ["demo", "--rate", str(RATE_PER_S), "--visitors", "60", "--seed", "7", "--data-dir", str(tmp_path / "demo"), *extra]
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


@pytest.mark.slow
def test_demo_runs_to_completion_with_kpis_and_triggers_read_back(tmp_path: Path) -> None:
    demo = _demo(tmp_path)
    try:
        out, _ = demo.communicate(timeout=150)
    finally:
        stop_process_tree(demo)
    assert demo.returncode == 0, out
    _check_report(out)


def test_demo_with_the_dashboard_reports_the_ledger_serves_the_days_numbers_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    import signal
    import time
    import urllib.request

    import orjson

    from tests.integration.processes import alive, descendants

    demo = _demo(tmp_path, "--dashboard")
    seen = []
    try:
        deadline = time.monotonic() + 150
        url = None
        while time.monotonic() < deadline and url is None:
            line = demo.stdout.readline()
            if not line:
                break
            seen.append(line)
            if line.startswith("dashboard http://"):
                url = line.split()[1]  # not a terminal: the URL without its token
        assert url is not None, "".join(seen)
        orders = _check_report("".join(seen))
        token = (tmp_path / "demo" / "worker.token").read_text().strip()
        request = urllib.request.Request(f"{url}api/data?tenant=demo-shop&days=30", headers={"Authorization": f"Bearer {token}"})
        charts = orjson.loads(urllib.request.urlopen(request, timeout=60).read())
        funnel = next(c for c in charts["charts"] if c["id"] == "funnel")
        # The dashboard's funnel counts the orders the report just measured in ClickHouse.
        assert funnel["columns"] == ["stage", "total"]
        assert int(dict(funnel["rows"])["orders"]) == orders > 0
        children = descendants(demo.pid)
        demo.send_signal(signal.SIGINT)
        assert demo.wait(timeout=60) == 0  # the report's verdict: every count equal to the ledger
        assert [p for p in children if alive(p)] == []
    finally:
        stop_process_tree(demo)
