"""The ClickHouse sink: buffer rows per table, write them with one insert per table.

Modelled on Quix Streams' batching sinks: ``add_*`` only buffers, ``flush``
writes at the checkpoint. The worker calls ``flush()`` after each consumed
batch and commits Kafka offsets only after it returned, so a row is never
acknowledged before it is stored.

Failure: ``flush`` raises ``SinkError`` and keeps the rows of every table
whose insert did not succeed (tables already written are cleared). The
caller may retry ``flush()`` in place (the worker does, with backoff, while
ClickHouse is down) or drop them with ``clear()`` and replay from its last
committed offset, Quix style. Either way nothing is double counted: every
table is keyed by a deterministic record id and read with ``FINAL``, so a
row written twice is one row.
"""

from __future__ import annotations

from typing import Callable, Iterable

from sinks.client import ClickHouse, ClickHouseError
from sinks.rows import (
    DEADLETTER_COLUMNS,
    EVENT_COLUMNS,
    FACT_TABLES,
    TRIGGER_COLUMNS,
    deadletter_row,
    event_row,
    trigger_row,
)

__all__ = ["ClickHouseSink", "SinkError", "EVENTS_TABLE", "TRIGGERS_TABLE", "DEADLETTERS_TABLE"]

EVENTS_TABLE = "cx.events"
TRIGGERS_TABLE = "cx.triggers"
DEADLETTERS_TABLE = "cx.deadletters"

Row = dict | tuple


class SinkError(RuntimeError):
    """A flush failed because ClickHouse failed or is unreachable; retrying may succeed.

    The unwritten rows are still buffered (see the module docstring).
    """


class _Buffer:
    def __init__(self, table: str, columns: tuple[str, ...], to_row: Callable[[dict], tuple]) -> None:
        self.table = table
        self.columns = list(columns)
        self.to_row = to_row
        self.rows: list[tuple] = []

    def add(self, items: Iterable[Row]) -> None:
        # Dicts are mapped here, so a malformed record fails at add time, in
        # the worker's own stack, not later inside a flush retry loop.
        to_row = self.to_row
        self.rows.extend(item if isinstance(item, tuple) else to_row(item) for item in items)


class ClickHouseSink:
    """Buffers rows for ``cx.events``, ``cx.triggers`` and ``cx.deadletters``; not thread-safe."""

    def __init__(self, ch: ClickHouse) -> None:
        self.ch = ch
        self._events = _Buffer(EVENTS_TABLE, EVENT_COLUMNS, event_row)
        self._triggers = _Buffer(TRIGGERS_TABLE, TRIGGER_COLUMNS, trigger_row)
        self._deadletters = _Buffer(DEADLETTERS_TABLE, DEADLETTER_COLUMNS, deadletter_row)
        self._facts: dict[str, _Buffer] = {}
        self._buffers: tuple[_Buffer, ...] = (self._events, self._triggers, self._deadletters)

    def add_events(self, rows: Iterable[Row]) -> None:
        """Buffer stored events: worker event dicts (mapped by ``event_row``) or ready row tuples."""
        self._events.add(rows)

    def add_triggers(self, rows: Iterable[Row]) -> None:
        """Buffer triggers: trigger dicts (mapped by ``trigger_row``) or ready row tuples."""
        self._triggers.add(rows)

    def add_deadletters(self, rows: Iterable[Row]) -> None:
        """Buffer dead letters: dead-letter dicts (mapped by ``deadletter_row``) or ready row tuples."""
        self._deadletters.add(rows)

    def add_facts(self, table: str, rows: Iterable[Row]) -> None:
        """Buffer rows for a fact table registered in ``sinks.rows.FACT_TABLES`` (friction, support, ...)."""
        buffer = self._facts.get(table)
        if buffer is None:
            try:
                columns, to_row = FACT_TABLES[table]
            except KeyError:
                raise ValueError(f"no fact table {table!r} in sinks.rows.FACT_TABLES") from None
            buffer = self._facts[table] = _Buffer(table, columns, to_row)
            self._buffers = (*self._buffers, buffer)
        buffer.add(rows)

    def pending(self) -> int:
        """Rows buffered and not yet written."""
        return sum(len(b.rows) for b in self._buffers)

    def clear(self) -> None:
        """Drop every buffered row (for a caller that replays from its committed offset instead)."""
        for buffer in self._buffers:
            buffer.rows = []

    def flush(self) -> int:
        """Write each non-empty buffer with one insert; return the number of rows written.

        Runs after each consumed batch, before offsets are committed. Raises
        SinkError when ClickHouse fails: the tables not written keep their
        rows. TypeError/ValueError mean rows that do not fit their table (a
        bug; retrying cannot help).
        """
        written = 0
        for buffer in self._buffers:
            if not buffer.rows:
                continue
            try:
                self.ch.insert(buffer.table, buffer.columns, buffer.rows)
            except ClickHouseError as exc:
                raise SinkError(f"writing {len(buffer.rows)} rows to {buffer.table} failed: {exc}") from exc
            written += len(buffer.rows)
            buffer.rows = []
        return written
