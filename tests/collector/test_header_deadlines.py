"""HeaderDeadlines: a connection closed when its headers are late, the oldest one past the limit, counted by reason."""

from __future__ import annotations

import asyncio

from prometheus_client import generate_latest

from pipeline.collector.server import HeaderDeadlines
from pipeline.metrics import CollectorMetrics


class Conn:
    """Stands for aiohttp's connection handler: only ``force_close`` is called."""

    def __init__(self, name: str, closed: list[str]) -> None:
        self.name, self.closed = name, closed

    def force_close(self) -> None:
        self.closed.append(self.name)


async def test_late_headers_close_the_connection_and_arrived_ones_do_not() -> None:
    closed: list[str] = []
    reasons: list[str] = []
    deadlines = HeaderDeadlines(0.05, 10, reasons.append)
    slow, quick = Conn("slow", closed), Conn("quick", closed)
    deadlines.wait(slow)
    deadlines.wait(quick)
    deadlines.arrived(quick)
    await asyncio.sleep(0.15)
    assert (closed, reasons, deadlines.pending) == (["slow"], ["header_timeout"], {})


async def test_past_the_limit_the_oldest_waiting_connection_is_closed() -> None:
    closed: list[str] = []
    reasons: list[str] = []
    deadlines = HeaderDeadlines(60, 2, reasons.append)
    a, b, c = (Conn(n, closed) for n in "abc")
    deadlines.wait(a)
    deadlines.wait(b)
    deadlines.wait(c)
    assert (closed, reasons, list(deadlines.pending)) == (["a"], ["pending_limit"], [b, c])
    deadlines.arrived(b)
    deadlines.arrived(c)
    assert deadlines.pending == {}


async def test_a_kept_alive_connection_rests_for_the_idle_time_then_its_next_headers_get_the_header_time() -> None:
    closed: list[str] = []
    reasons: list[str] = []
    deadlines = HeaderDeadlines(0.1, 10, reasons.append, idle_s=0.3)
    conn = Conn("kept-alive", closed)
    deadlines.rest(conn)  # an answer was sent
    await asyncio.sleep(0.2)  # longer than the header time: resting is not late
    assert (closed, len(deadlines.pending)) == ([], 1)
    deadlines.data(conn)  # the first byte of the next request
    deadlines.data(conn)  # more bytes of the same headers: the deadline does not move
    await asyncio.sleep(0.15)
    assert (closed, reasons) == (["kept-alive"], ["header_timeout"])


async def test_an_idle_kept_alive_connection_is_closed_after_the_idle_time() -> None:
    closed: list[str] = []
    reasons: list[str] = []
    deadlines = HeaderDeadlines(0.05, 10, reasons.append, idle_s=0.1)
    deadlines.rest(Conn("idle", closed))
    await asyncio.sleep(0.2)
    assert (closed, reasons, deadlines.pending, deadlines.idle) == (["idle"], ["idle_timeout"], {}, set())


async def test_bytes_on_a_new_connection_do_not_move_its_deadline() -> None:
    closed: list[str] = []
    deadlines = HeaderDeadlines(0.1, 10)
    conn = Conn("dripping", closed)
    deadlines.wait(conn)
    for _ in range(3):
        await asyncio.sleep(0.04)
        deadlines.data(conn)
    await asyncio.sleep(0.05)
    assert closed == ["dripping"]


def test_closed_connections_are_counted_by_reason() -> None:
    metrics = CollectorMetrics(["shop-a"])
    metrics.connection_closed("header_timeout")
    metrics.connection_closed("pending_limit")
    metrics.connection_closed("pending_limit")
    text = generate_latest(metrics.registry).decode()
    assert 'cxstream_collector_connections_closed_total{reason="header_timeout"} 1.0' in text
    assert 'cxstream_collector_connections_closed_total{reason="pending_limit"} 2.0' in text
