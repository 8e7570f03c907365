"""The ClickHouse sink: buffer rows per table, write them with one insert per table.

Modelled on Quix Streams' batching sinks: ``add_*`` only buffers, ``flush``
writes at the checkpoint. The worker calls ``flush()`` after each consumed
batch and commits Kafka offsets only after it returned, so a row is never
acknowledged before it is stored.

Failure: a transient one (ClickHouse down, a timeout, too many parts; see
``sinks.client.PERMANENT_CODES`` for the other kind) makes ``flush`` raise
``SinkError`` and keep the rows of every table whose insert did not succeed
(tables already written are cleared). The caller may retry ``flush()`` in
place (the worker does, with backoff, while ClickHouse is down) or drop them
with ``clear()`` and replay from its last committed offset, Quix style.
Either way nothing is double counted: every table is keyed by a
deterministic record id and read with ``FINAL``, so a row written twice is
one row.

A permanent failure (ClickHouse refuses the data itself: a type mismatch, a
value out of range, a row the client library cannot encode) is not retried
as is: the table's rows are bisected, halves inserted apart, down to the
single rows that fail; those are set aside (``take_rejected``) and every
other row is written. One bad row among n costs about 2 log2(n) inserts.
"""

from __future__ import annotations

import operator
import struct
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

from clickhouse_cityhash.cityhash import CityHash64

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

__all__ = [
    "ClickHouseSink",
    "RejectedRow",
    "SinkError",
    "is_permanent",
    "stored_fingerprints",
    "EVENTS_TABLE",
    "EVENT_IDS_TABLE",
    "EVENT_ID_SET",
    "id_hash",
    "TRIGGERS_TABLE",
    "DEADLETTERS_TABLE",
]

EVENTS_TABLE = "cx.events"
# The ids of cx.events, read by ``stored_fingerprints`` (sinks/ddl/0013_event_ids.sql).
EVENT_IDS_TABLE = "cx.event_ids"
EVENT_ID_COLUMNS = ("tenant", "event_id", "payload_hash", "ver")
# An event row's id columns as one tuple (``itemgetter`` of several indexes returns one).
_ID_COLUMNS_OF = operator.itemgetter(*(EVENT_COLUMNS.index(c) for c in EVENT_ID_COLUMNS))
# A hash of each id of cx.event_ids, in the server's memory (sinks/ddl/0015_event_id_set.sql): one server only.
EVENT_ID_SET = "cx.event_id_set"
_TENANT, _EVENT_ID = EVENT_COLUMNS.index("tenant"), EVENT_COLUMNS.index("event_id")
TRIGGERS_TABLE = "cx.triggers"
DEADLETTERS_TABLE = "cx.deadletters"


def id_hash(tenant: str, event_id: str) -> int:
    """CityHash64 of tenant, 0x1F, event_id: what 0015 computes in SQL (``cityHash64``), in about 0.15 us."""
    return CityHash64(f"{tenant}\x1f{event_id}".encode())


Row = dict | tuple
# Told of every insert: (table, rows, seconds, the error or None, whether it is permanent).
InsertObserver = Callable[[str, int, float, "BaseException | None", bool], None]


class SinkError(RuntimeError):
    """A flush failed because ClickHouse failed or is unreachable; retrying may succeed.

    The unwritten rows are still buffered (see the module docstring).
    """


@dataclass(frozen=True, slots=True)
class RejectedRow:
    """One row ClickHouse refused for good, with the reason it gave."""

    table: str
    columns: tuple[str, ...]
    row: tuple
    error: str


# Raised while rows are encoded for the wire (Arrow, clickhouse-driver):
# the row does not fit its column, and never will.
_ENCODING_ERRORS = (TypeError, ValueError, OverflowError, struct.error)


def is_permanent(exc: BaseException) -> bool:
    """True if inserting the same rows again cannot succeed (see ``sinks.client.PERMANENT_CODES``)."""
    if isinstance(exc, ClickHouseError):
        return exc.permanent
    return isinstance(exc, _ENCODING_ERRORS)


def _describe(exc: BaseException) -> str:
    text = str(exc).split("Stack trace:")[0].strip()
    return f"{type(exc).__name__}: {text}"[:500]


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


def _no_dicts(item: dict) -> tuple:
    raise TypeError("cx.event_ids and cx.event_id_set rows come from the events written, not from add_*")


class ClickHouseSink:
    """Buffers rows for ``cx.events``, ``cx.triggers`` and ``cx.deadletters``; not thread-safe.

    The ids of the events written go to ``cx.event_ids`` right after, only
    once their ``cx.events`` insert succeeded (and without the rows
    ClickHouse refused): an id found there has its event stored. With
    ``id_set`` (one server), their hashes go to ``cx.event_id_set`` between
    the two: an id in ``cx.event_ids`` has its hash there.
    """

    def __init__(self, ch: ClickHouse, observe: InsertObserver | None = None, id_set: bool = True) -> None:
        self.ch = ch
        self.observe = observe
        self._events = _Buffer(EVENTS_TABLE, EVENT_COLUMNS, event_row)
        self._id_set = _Buffer(EVENT_ID_SET, ["h"], _no_dicts) if id_set else None
        self._ids = _Buffer(EVENT_IDS_TABLE, EVENT_ID_COLUMNS, _no_dicts)
        self._triggers = _Buffer(TRIGGERS_TABLE, TRIGGER_COLUMNS, trigger_row)
        self._deadletters = _Buffer(DEADLETTERS_TABLE, DEADLETTER_COLUMNS, deadletter_row)
        self._facts: dict[str, _Buffer] = {}
        # Events first, then their ids' hashes, then their ids: the two are filled when the events are written.
        ids = (self._ids,) if self._id_set is None else (self._id_set, self._ids)
        self._buffers: tuple[_Buffer, ...] = (self._events, *ids, self._triggers, self._deadletters)
        self._derived = ids
        self._rejected: list[RejectedRow] = []

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
        """Rows buffered and not yet written (an event's id row is not counted apart)."""
        return sum(len(b.rows) for b in self._buffers if b not in self._derived)

    def clear(self) -> None:
        """Drop every buffered row (for a caller that replays from its committed offset instead)."""
        for buffer in self._buffers:
            buffer.rows = []

    def take_rejected(self) -> list[RejectedRow]:
        """The rows ClickHouse refused for good since the last call (then forgotten here)."""
        rejected, self._rejected = self._rejected, []
        return rejected

    def flush(self) -> int:
        """Write each non-empty buffer with one insert; return the number of rows written.

        Runs after each consumed batch, before offsets are committed. Raises
        SinkError when ClickHouse fails transiently: the tables not written
        keep their rows. Rows refused for good are isolated and set aside
        (``take_rejected``); the rest is written.
        """
        written = 0
        for buffer in self._buffers:
            if not buffer.rows:
                continue
            rejected: list[RejectedRow] = []
            try:
                self._insert(buffer.table, buffer.columns, buffer.rows)
            except Exception as exc:
                if not is_permanent(exc):
                    if isinstance(exc, ClickHouseError):
                        raise SinkError(f"writing {len(buffer.rows)} rows to {buffer.table} failed: {exc}") from exc
                    raise
                rejected = self._bisect(buffer, exc)
                self._rejected.extend(rejected)
            if buffer is self._events:
                stored = buffer.rows
                if rejected:
                    refused = {id(r.row) for r in rejected}
                    stored = [row for row in stored if id(row) not in refused]
                self._ids.rows += map(_ID_COLUMNS_OF, stored)
                if self._id_set is not None:
                    self._id_set.rows += [(id_hash(row[_TENANT], row[_EVENT_ID]),) for row in stored]
            if buffer not in self._derived:
                written += len(buffer.rows) - len(rejected)
            buffer.rows = []
        return written

    def _insert(self, table: str, columns: list[str], rows: list[tuple]) -> None:
        """One insert, told to the observer (its time, or its error and whether that is permanent)."""
        if self.observe is None:
            self.ch.insert(table, columns, rows)
            return
        started = time.perf_counter()
        try:
            self.ch.insert(table, columns, rows)
        except Exception as exc:
            self.observe(table, len(rows), time.perf_counter() - started, exc, is_permanent(exc))
            raise
        self.observe(table, len(rows), time.perf_counter() - started, None, False)

    def _bisect(self, buffer: _Buffer, error: BaseException) -> list[RejectedRow]:
        """Insert ``buffer``'s rows in halves down to the single rows ClickHouse refuses; return those.

        ``error`` is the permanent failure of the whole buffer. A transient
        failure on the way raises SinkError with every row still buffered
        (the halves already written are written again on the retry:
        harmless, see the module docstring).
        """
        table, columns = buffer.table, tuple(buffer.columns)
        rows = buffer.rows
        if len(rows) == 1:
            return [RejectedRow(table, columns, rows[0], _describe(error))]
        rejected: list[RejectedRow] = []
        mid = len(rows) // 2
        pending = [rows[mid:], rows[:mid]]  # a stack: the first half is inserted first
        while pending:
            rows = pending.pop()
            try:
                self._insert(table, buffer.columns, rows)
            except Exception as exc:
                if not is_permanent(exc):
                    if isinstance(exc, ClickHouseError):
                        raise SinkError(f"writing rows to {table} failed: {exc}") from exc
                    raise
                if len(rows) == 1:
                    rejected.append(RejectedRow(table, columns, rows[0], _describe(exc)))
                else:
                    mid = len(rows) // 2
                    pending += [rows[mid:], rows[:mid]]
        return rejected


# On one server a batch's ids go into a temporary table of the connection
# (one insert, the backends' fast row path) and the lookup reads it as a
# set: one query per batch whatever its size, with no id pasted into SQL.
# Passing them as a query parameter instead cost chdb about 100 ns per byte
# and would have to be split under a server's max_query_size (256 KiB).
# Not on a cluster: there cx.event_ids is Distributed, the shards do not
# have the temporary table, and with GLOBAL IN (the set sent along) 18.16
# reads a shard's every row instead of using the primary key, as it does
# for GLOBAL IN on one server (500 ids in 3,000,000 stored rows: 195 to 211
# ms against 47 to 65 with IN, and growing with the table). So a cluster
# gets the ids as parameters, in queries of at most CLUSTER_LOOKUP_MAX ids
# and LOOKUP_TEXT_MAX bytes of them, which each shard reads by its index.
PROBE_TABLE = "cx_id_probe"
# Up to this many ids are looked up with one parameterized query; more go
# through the temporary table. Measured on 100,000 stored rows, half the ids
# stored, median of 15: the query is as fast at 25-50 ids and slower from
# about 100 (18.16: 13.7 ms against 9.9 at 100 ids, 17.8 against 10.8 at
# 300; chdb: 28.1 against 17.0 at 150), where its text and its parameters
# cost more than the temporary table's four extra round trips.
INLINE_LOOKUP_MAX = 64
CLUSTER_LOOKUP_MAX = 1_000
# Escaping can double an id's bytes: this keeps a query under 256 KiB.
LOOKUP_TEXT_MAX = 100_000
# Up to this many hashes are probed in cx.event_id_set with the numbers
# written into the query; more go through a temporary table (one native
# insert). Measured on 18.16 with 1,000,000 hashes in the set, median of 9:
# 500 hashes 2.2 ms in the query against 2.4 through the table; 2,000: 4.6
# against 2.4; 8,000: 10.7 against 3.3 (chdb: 20.0 against 9.6).
SET_PROBE_MAX = 500
SET_PROBE_TABLE = "cx_id_probe_hashes"
_LOOKUP = (
    f"SELECT tenant, event_id, argMax(payload_hash, ver) FROM {EVENT_IDS_TABLE}"
    f" WHERE (tenant, event_id) IN (SELECT tenant, event_id FROM {PROBE_TABLE})"
    " GROUP BY tenant, event_id"
)


def stored_fingerprints(
    ch: ClickHouse, ids: Mapping[str, Iterable[str]], cluster: bool = False, id_set: bool = True
) -> dict[tuple[str, str], int]:
    """The fingerprint stored in ``cx.events`` for each of ``ids`` (event ids by tenant) that is stored.

    ``{(tenant, event_id): payload_hash}`` of the row ``FINAL`` would keep
    (the highest ``ver``); ids not stored are absent. On one server the ids'
    hashes are probed in ``cx.event_id_set`` first, and only the ids whose
    hash is there (every stored id, nearly never a new one) are read from
    ``cx.event_ids`` (the same ids, fingerprints and versions, in small
    granules) by its primary key, ``(tenant, event_id)``. More than ``INLINE_LOOKUP_MAX``
    ids on one server go through a temporary table of the connection
    (``PROBE_TABLE``), so calls on one connection must not overlap (the
    worker makes them from one agent, under its lock). ``cluster``: ``ch``
    is a server of a cluster (``CX_CLICKHOUSE_CLUSTER``), where
    ``cx.event_ids`` is Distributed and no ``cx.event_id_set`` exists (the
    set is never probed). ``id_set=False`` skips it on one server too
    (``lookup_bench``). Raises ClickHouseError (a connection
    that broke in between lost the temporary table: the caller retries).
    """
    rows = [(tenant, event_id) for tenant, event_ids in ids.items() for event_id in event_ids]
    if rows and id_set and not cluster:
        rows = _hashed_in_set(ch, rows)
    if not rows:
        return {}
    if cluster or len(rows) <= INLINE_LOOKUP_MAX:
        found: dict[tuple[str, str], int] = {}
        for chunk in _chunks(rows, CLUSTER_LOOKUP_MAX if cluster else INLINE_LOOKUP_MAX):
            found.update(_look_up_inline(ch, chunk))
        return found
    found_rows = _through_temporary_table(ch, PROBE_TABLE, {"tenant": "String", "event_id": "String"}, rows, _LOOKUP)
    return {(tenant, event_id): int(fp) for tenant, event_id, fp in found_rows}


def _through_temporary_table(
    ch: ClickHouse, table: str, columns: dict[str, str], rows: list[tuple], query: str
) -> list[tuple]:
    """``query``'s rows, with ``rows`` in the connection's temporary ``table`` (dropped again, whatever happens)."""
    ch.execute(f"DROP TEMPORARY TABLE IF EXISTS {table}")
    ch.execute(f"CREATE TEMPORARY TABLE {table} ({', '.join(f'{c} {t}' for c, t in columns.items())})")
    try:
        ch.insert(table, list(columns), rows)
        return ch.execute(query)
    finally:
        ch.execute(f"DROP TEMPORARY TABLE IF EXISTS {table}")


def _hashed_in_set(ch: ClickHouse, rows: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The ids of ``rows`` whose hash is in ``cx.event_id_set`` (the hashes are numbers: written into the query)."""
    by_hash: dict[int, list[tuple[str, str]]] = {}
    for tenant, event_id in rows:
        by_hash.setdefault(id_hash(tenant, event_id), []).append((tenant, event_id))
    if len(by_hash) <= SET_PROBE_MAX:
        # An array literal takes the smallest type its numbers fit; the set's is UInt64. (Not
        # [toUInt64(x), ...]: that is a call of array() with an argument per number, and 18.16
        # took 130 ms for 2,000 of them, 2 s for 8,000.)
        listed = ",".join(map(str, by_hash))
        hits = ch.query(f"SELECT arrayFilter(h -> h IN {EVENT_ID_SET}, CAST([{listed}] AS Array(UInt64)))")[1][0][0]
    else:
        query = f"SELECT h FROM {SET_PROBE_TABLE} WHERE h IN {EVENT_ID_SET}"
        hits = [h for (h,) in _through_temporary_table(ch, SET_PROBE_TABLE, {"h": "UInt64"}, [(h,) for h in by_hash], query)]
    return [pair for h in hits for pair in by_hash[int(h)]]


def _chunks(rows: list[tuple[str, str]], most: int) -> Iterable[list[tuple[str, str]]]:
    """``rows`` in runs of at most ``most`` ids and about ``LOOKUP_TEXT_MAX`` bytes (one id alone may be more)."""
    chunk: list[tuple[str, str]] = []
    size = 0
    for tenant, event_id in rows:
        n = len(tenant.encode()) + len(event_id.encode())
        if chunk and (len(chunk) == most or size + n > LOOKUP_TEXT_MAX):
            yield chunk
            chunk, size = [], 0
        chunk.append((tenant, event_id))
        size += n
    if chunk:
        yield chunk


def _look_up_inline(ch: ClickHouse, rows: list[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """One query with the ids as parameters (plain ``IN``: on a cluster each shard gets the list)."""
    params: dict[str, str] = {}
    for i, (tenant, event_id) in enumerate(rows):
        params[f"t{i}"], params[f"e{i}"] = tenant, event_id
    pairs = ", ".join(f"(%(t{i})s, %(e{i})s)" for i in range(len(rows)))
    found = ch.query(
        f"SELECT tenant, event_id, argMax(payload_hash, ver) FROM {EVENT_IDS_TABLE}"
        f" WHERE (tenant, event_id) IN ({pairs}) GROUP BY tenant, event_id",
        params,
    )[1]
    return {(tenant, event_id): int(fp) for tenant, event_id, fp in found}
