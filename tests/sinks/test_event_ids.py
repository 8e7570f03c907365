"""cx.events keeps the first-received event of an id, whatever the insert order, merges or replays."""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from datetime import date
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.detect.ids import fingerprint
from pipeline.runtime.faust_adapter import create_app
from pipeline.runtime.worker import Worker
from pipeline.settings import Settings
from sinks.backend_server import ServerClickHouse
from sinks.client import ClickHouse, ClickHouseError, connect
from sinks.migrate import _BOOTSTRAP, DDL_DIR, migrate
from sinks import sink as sink_module
from sinks.rows import EVENT_COLUMNS, event_row
from infra.clickhouse_server import ClickHouseServer, server_command
from sinks.sink import (
    EVENT_ID_SET,
    INLINE_LOOKUP_MAX,
    LOOKUP_TEXT_MAX,
    SET_PROBE_MAX,
    ClickHouseSink,
    _chunks,
    id_hash,
    stored_fingerprints,
)
from tests.sinks.records import event, ms

A_ORDER = event("shop-a", "X", "2024-03-10 10:00:00", "Order Completed", "s-a", props={"order_id": "o-1", "revenue": 30})
# Visitor B reuses A's id 2 minutes later for an unrelated page view.
B_PAGE = {**event("shop-a", "X", "2024-03-10 10:02:00", None, "s-b", call="page"), "anonymous_id": "anon-b"}


def write(ch: ClickHouse, *events: dict) -> None:
    sink = ClickHouseSink(ch)
    sink.add_events(list(events))
    sink.flush()


def migrate_up_to(ch: ClickHouse, version: int, tmp_path: Path) -> list[str]:
    """A fresh schema as a version that shipped the migrations up to ``version`` made it."""
    old = tmp_path / f"ddl_{version:04d}"
    old.mkdir()
    for path in DDL_DIR.glob("*.sql"):
        if int(path.name[:4]) <= version:
            shutil.copy(path, old / path.name)
    ch.execute("DROP DATABASE IF EXISTS cx")
    return migrate(ch, old)


def stored(ch: ClickHouse, final: str = "FINAL") -> list[tuple]:
    return ch.execute(f"SELECT event_id, anonymous_id, event FROM cx.events {final} ORDER BY event_id, anonymous_id")


def orders(ch: ClickHouse) -> list[tuple]:
    return ch.execute("SELECT day, orders, revenue FROM cx.kpi_daily WHERE tenant = 'shop-a' ORDER BY day")


@pytest.mark.parametrize("order", ["first_written_first", "first_written_last"])
def test_first_received_row_wins_after_merges_in_either_insert_order(ch_backend: ClickHouse, order: str) -> None:
    # Two workers raced: both rows were written, in either order, in two parts.
    first, second = (A_ORDER, B_PAGE) if order == "first_written_first" else (B_PAGE, A_ORDER)
    write(ch_backend, first)
    write(ch_backend, second)
    assert stored(ch_backend) == [("X", "anon-s-a", "Order Completed")]
    assert orders(ch_backend) == [(date(2024, 3, 10), 1, 30.0)]
    ch_backend.execute("OPTIMIZE TABLE cx.events FINAL")
    assert stored(ch_backend, final="") == [("X", "anon-s-a", "Order Completed")]  # merged: B's row is gone
    assert orders(ch_backend) == [(date(2024, 3, 10), 1, 30.0)]


def test_replaying_both_rows_leaves_the_first(ch_backend: ClickHouse) -> None:
    write(ch_backend, A_ORDER, B_PAGE)
    ch_backend.execute("OPTIMIZE TABLE cx.events FINAL")
    write(ch_backend, B_PAGE)  # the replay writes the same ver as before
    write(ch_backend, A_ORDER)
    assert stored(ch_backend) == [("X", "anon-s-a", "Order Completed")]
    ch_backend.execute("OPTIMIZE TABLE cx.events FINAL")
    assert stored(ch_backend, final="") == [("X", "anon-s-a", "Order Completed")]


def test_rows_of_one_id_in_different_months_still_collapse(ch_backend: ClickHouse) -> None:
    # Event times on both sides of a month boundary: one partition holds them.
    early = event("shop-a", "M", "2024-03-31 23:59:00", "Order Completed", "s-a", props={"order_id": "o-9", "total": 5})
    late = {**event("shop-a", "M", "2024-04-01 00:01:00", None, "s-b", call="page"), "anonymous_id": "anon-b"}
    write(ch_backend, late)
    write(ch_backend, early)
    ch_backend.execute("OPTIMIZE TABLE cx.events FINAL")
    assert stored(ch_backend, final="") == [("M", "anon-s-a", "Order Completed")]
    assert orders(ch_backend) == [(date(2024, 3, 31), 1, 5.0)]


def test_stored_fingerprints_return_the_winning_rows_hash(ch_backend: ClickHouse) -> None:
    odd = event("shop-a", "id,with\x1fcomma'\"é", "2024-03-10 11:00:00", "Product Viewed", "s-a")
    write(ch_backend, B_PAGE, odd)
    write(ch_backend, A_ORDER)
    want = {("shop-a", "X"): fingerprint(A_ORDER), ("shop-a", odd["event_id"]): fingerprint(odd)}
    ids = {"shop-a": ["X", odd["event_id"], "not-stored"], "shop-b": ["X"]}
    assert stored_fingerprints(ch_backend, ids) == want
    assert fingerprint(A_ORDER) != fingerprint(B_PAGE)


def test_stored_fingerprints_of_many_ids_in_one_lookup(ch_backend: ClickHouse) -> None:
    events = [event("shop-a", f"e-{i:05d}", "2024-03-10 12:00:00", "Product Viewed", "s-a") for i in range(5_000)]
    write(ch_backend, *events)
    asked = [e["event_id"] for e in events[::2]] + [f"x-{i}" for i in range(5_000)]
    got = stored_fingerprints(ch_backend, {"shop-a": asked, "shop-b": [e["event_id"] for e in events[:10]]})
    assert got == {("shop-a", e["event_id"]): fingerprint(e) for e in events[::2]}
    assert stored_fingerprints(ch_backend, {}) == {}
    # the probe table is the connection's own and gone after the lookup
    assert ch_backend.execute("SELECT count() FROM system.tables WHERE name = 'cx_id_probe'") == [(0,)]


def test_stored_fingerprints_answer_the_same_through_the_query_and_the_probe_table(ch_backend: ClickHouse) -> None:
    # Up to INLINE_LOOKUP_MAX ids go in one parameterized query, more through the probe table.
    events = [event("shop-a", f"q-{i:04d}'", "2024-03-10 12:00:00", "Product Viewed", "s-a") for i in range(40)]
    write(ch_backend, *events)
    stored_ids = [e["event_id"] for e in events]
    absent = [f"absent-{i}" for i in range(INLINE_LOOKUP_MAX)]
    want = {("shop-a", e["event_id"]): fingerprint(e) for e in events}
    inline_ids = stored_ids + absent[: INLINE_LOOKUP_MAX - 40]
    probe_ids = stored_ids + absent
    assert len(inline_ids) == INLINE_LOOKUP_MAX < len(probe_ids)
    assert stored_fingerprints(ch_backend, {"shop-a": inline_ids}) == want
    assert stored_fingerprints(ch_backend, {"shop-a": probe_ids}) == want
    assert len(want) == 40


LEGACY_COLUMNS = [c for c in EVENT_COLUMNS if c not in ("payload_hash", "ver")]


def test_migration_0008_keeps_existing_rows_and_lets_the_first_of_unmerged_ones_win(
    ch_backend: ClickHouse, tmp_path: Path
) -> None:
    assert migrate_up_to(ch_backend, 7, tmp_path)[-1] == "0007_events_context"

    def legacy_row(ev: dict) -> tuple:
        return event_row(ev)[: len(LEGACY_COLUMNS)]

    other = event("shop-a", "Y", "2024-03-11 09:00:00", "Product Viewed", "s-c", props={"product_id": "p-1"})
    # the old table: A's order and B's later row with the same id in two parts, not yet merged
    ch_backend.insert("cx.events", LEGACY_COLUMNS, [legacy_row(A_ORDER), legacy_row(other)])
    ch_backend.insert("cx.events", LEGACY_COLUMNS, [legacy_row(B_PAGE)])
    applied = migrate(ch_backend)
    assert applied[0] == "0008_events_first_wins" and "0010_drop_events_0007" in applied
    assert stored(ch_backend) == [("X", "anon-s-a", "Order Completed"), ("Y", "anon-s-c", "Product Viewed")]
    assert ch_backend.execute(
        "SELECT event_id, product_id, payload_hash, ver FROM cx.events FINAL ORDER BY event_id"
    ) == [
        # ver from received_at in whole seconds: (2^42 - 1 - seconds * 1000) * 2^22
        ("X", "", 0, (4_398_046_511_103 - (ms("2024-03-10 10:00:00") // 1000) * 1000) * 4_194_304),
        ("Y", "p-1", 0, (4_398_046_511_103 - (ms("2024-03-11 09:00:00") // 1000) * 1000) * 4_194_304),
    ]
    assert orders(ch_backend) == [(date(2024, 3, 10), 1, 30.0), (date(2024, 3, 11), 0, 0.0)]
    names = [r[0] for r in ch_backend.execute("SELECT name FROM system.tables WHERE database = 'cx'")]
    assert "events_0007" not in names and "events_0008" not in names
    # a stored row of before the migration: its content is unknown, a resend stays a duplicate
    assert stored_fingerprints(ch_backend, {"shop-a": ["Y"]}) == {("shop-a", "Y"): 0}
    assert migrate(ch_backend) == []


def test_migration_0008_finishes_when_its_swap_was_done_but_not_recorded(ch_backend: ClickHouse) -> None:
    # A start after a crash between the RENAME and the record (or a second
    # worker that meets the first one's swap): the guard sees the new table.
    write(ch_backend, A_ORDER)
    # forget the record of 0008 and later (18.16's ALTER ... DELETE is asynchronous: rebuild the table)
    kept = ch_backend.execute(
        "SELECT version, name, checksum, applied_at FROM cx.schema_migrations FINAL WHERE version < 8"
    )
    ch_backend.execute("DROP TABLE cx.schema_migrations")
    ch_backend.execute(_BOOTSTRAP[1])
    ch_backend.insert("cx.schema_migrations", ["version", "name", "checksum", "applied_at"], kept)
    applied = migrate(ch_backend)
    assert applied[0] == "0008_events_first_wins" and "0010_drop_events_0007" in applied
    assert stored(ch_backend) == [("X", "anon-s-a", "Order Completed")]
    assert stored_fingerprints(ch_backend, {"shop-a": ["X"]}) == {("shop-a", "X"): fingerprint(A_ORDER)}


def test_worker_id_lookup_answers_while_its_writing_connection_is_busy(
    ch_backend: ClickHouse, fresh_settings: Settings
) -> None:
    """The lookup of a group's ids does not queue behind the window's inserts (one call at a time per connection)."""
    write(ch_backend, A_ORDER)
    worker = Worker(create_app(fresh_settings, "127.0.0.1:9"), fresh_settings, ch_backend)  # no broker is contacted
    try:
        if isinstance(ch_backend, ServerClickHouse):
            assert worker.lookups is not ch_backend
        else:
            # chdb is one session in this process: nothing to open twice.
            assert worker.lookups is ch_backend
            return
        busy = threading.Thread(target=ch_backend.execute, args=("SELECT sleep(2)",))  # an insert that takes 2 s
        busy.start()
        time.sleep(0.3)  # the writing connection is now inside its call
        found = asyncio.run(worker._stored_fingerprints([(None, [A_ORDER, B_PAGE])]))  # type: ignore[list-item]
        answered_while_busy = busy.is_alive()
        busy.join()
        assert found == {("shop-a", "X"): fingerprint(A_ORDER)}
        assert answered_while_busy
    finally:
        if worker.lookups is not ch_backend:
            worker.lookups.close()


def test_migration_0013_copies_the_ids_stored_before_it(ch_backend: ClickHouse, tmp_path: Path) -> None:
    assert migrate_up_to(ch_backend, 12, tmp_path)[-1] == "0012_kpi_backend_orders"
    # rows written by a version without cx.event_ids: straight into cx.events
    ch_backend.insert("cx.events", list(EVENT_COLUMNS), [event_row({**A_ORDER, "payload_hash": fingerprint(A_ORDER)})])
    assert migrate(ch_backend) == [
        "0013_event_ids", "0014_drop_event_ids_0013", "0015_event_id_set", "0016_drop_event_id_set_0015"
    ]  # fmt: skip
    assert stored_fingerprints(ch_backend, {"shop-a": ["X", "Y"]}) == {("shop-a", "X"): fingerprint(A_ORDER)}
    names = [r[0] for r in ch_backend.execute("SELECT name FROM system.tables WHERE database = 'cx'")]
    assert "event_ids" in names and "event_ids_0013" not in names
    assert migrate(ch_backend) == []


def store_ids(ch: ClickHouse, n: int) -> None:
    """A fresh schema with ``n`` ids stored (``id-000000`` on, fingerprint 7) as the sink leaves them, merged."""
    ch.execute("DROP DATABASE IF EXISTS cx")
    migrate(ch)
    stored = [("shop-a", f"id-{i:06d}", 7, 1) for i in range(n)]
    ch.insert("cx.event_ids", ["tenant", "event_id", "payload_hash", "ver"], stored)
    ch.insert(EVENT_ID_SET, ["h"], [(id_hash(t, e),) for t, e, _, _ in stored])
    ch.execute("OPTIMIZE TABLE cx.event_ids FINAL")


def test_server_lookup_reads_by_the_primary_key_not_every_stored_row(clickhouse_server) -> None:  # noqa: ANN001
    """18.16 reads a local table's every row for GLOBAL IN: one server's lookup must use IN, the index with it."""
    setup = connect(clickhouse_server.url)
    # A scan of more rows than the ids' granules (256 rows each) fails the query.
    limited = connect(f"{clickhouse_server.url}?max_rows_to_read=40000&read_overflow_mode=throw")
    try:
        store_ids(setup, 100_000)
        for asked in (10, INLINE_LOOKUP_MAX + 36):  # the parameterized query, then the probe table
            ids = [f"id-{i:06d}" for i in range(0, 100_000, 100_000 // asked)][:asked] + ["absent"]
            found = stored_fingerprints(limited, {"shop-a": ids})
            assert found == {("shop-a", i): 7 for i in ids[:-1]}
        with pytest.raises(ClickHouseError, match="[Ll]imit for rows"):
            limited.execute("SELECT count() FROM cx.event_ids WHERE payload_hash = 7")  # the limit does bite
    finally:
        setup.close()
        limited.close()


def test_cluster_lookup_chunks_hold_at_most_the_count_and_about_the_bytes() -> None:
    rows = [("shop-a", f"e{i}") for i in range(2_500)]
    assert [len(c) for c in _chunks(rows, 1_000)] == [1_000, 1_000, 500]
    big = [("shop-a", "x" * 40_000)] * 5  # 40,006 bytes each: two fit under LOOKUP_TEXT_MAX (100,000)
    assert [len(c) for c in _chunks(big, 1_000)] == [2, 2, 1]
    huge = [("shop-a", "y" * (LOOKUP_TEXT_MAX + 1))] * 2  # one id over the budget still goes, alone
    assert [len(c) for c in _chunks(huge, 1_000)] == [1, 1]
    assert [c for chunk in _chunks(rows, 64) for c in chunk] == rows


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(st.tuples(st.text(max_size=20), st.text(max_size=60_000)), max_size=40),
    most=st.integers(min_value=1, max_value=50),
)
def test_lookup_chunks_keep_every_id_in_order_within_both_limits(rows: list[tuple[str, str]], most: int) -> None:
    chunks = list(_chunks(rows, most))
    assert [r for chunk in chunks for r in chunk] == rows
    for chunk in chunks:
        assert 1 <= len(chunk) <= most
        size = sum(len(t.encode()) + len(e.encode()) for t, e in chunk)
        assert len(chunk) == 1 or size <= LOOKUP_TEXT_MAX


# -- cx.event_id_set: the hashes probed before cx.event_ids is read ------------

ODD_IDS = [("shop-a", "e-1"), ("shop-ü", "ünïcode-✓"), ("t", ""), ("t", "a'b\\c\x1f%(x)s"), ("", "only-id")]


def test_id_hash_in_python_is_the_hash_migration_0015_computes_in_sql(ch_backend: ClickHouse) -> None:
    ch_backend.execute("CREATE DATABASE IF NOT EXISTS scratch")
    ch_backend.execute("CREATE TABLE scratch.ids (tenant String, event_id String) ENGINE = MergeTree ORDER BY tenant")
    try:
        ch_backend.insert("scratch.ids", ["tenant", "event_id"], ODD_IDS)
        # The expression of sinks/ddl/0015_event_id_set.sql, as written there.
        sql = "SELECT tenant, event_id, cityHash64(concat(tenant, '\\x1F', event_id)) FROM scratch.ids"
        got = {(t, e): int(h) for t, e, h in ch_backend.execute(sql)}
        assert got == {(t, e): id_hash(t, e) for t, e in ODD_IDS}
    finally:
        ch_backend.execute("DROP DATABASE IF EXISTS scratch")


def test_id_hash_agrees_with_clickhouse_on_any_text(tmp_path: Path) -> None:
    ch = connect(f"chdb://{tmp_path / 'chdb'}")

    @settings(max_examples=60, deadline=None)
    @given(st.lists(st.tuples(st.text(max_size=12), st.text(max_size=40)), min_size=1, max_size=20))
    def agrees(pairs: list[tuple[str, str]]) -> None:
        pairs = [(t, e) for t, e in pairs if _encodable(t) and _encodable(e)]
        if not pairs:
            return
        params = {f"t{i}": t for i, (t, _) in enumerate(pairs)} | {f"e{i}": e for i, (_, e) in enumerate(pairs)}
        listed = ", ".join(f"cityHash64(concat(%(t{i})s, '\\x1F', %(e{i})s))" for i in range(len(pairs)))
        (row,) = ch.query(f"SELECT [{listed}]", params)[1]
        assert [int(h) for h in row[0]] == [id_hash(t, e) for t, e in pairs]

    try:
        agrees()
    finally:
        ch.close()


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:  # a lone surrogate: no JSON request can carry it
        return False
    return True


def test_migration_0015_puts_the_hash_of_every_stored_id_in_the_set(ch_backend: ClickHouse, tmp_path: Path) -> None:
    assert migrate_up_to(ch_backend, 14, tmp_path)[-1] == "0014_drop_event_ids_0013"
    rows = [(t, e, 100 + i, 1) for i, (t, e) in enumerate(ODD_IDS)]
    ch_backend.insert("cx.event_ids", ["tenant", "event_id", "payload_hash", "ver"], rows)
    assert migrate(ch_backend) == ["0015_event_id_set", "0016_drop_event_id_set_0015"]
    asked = {}
    for t, e in [*ODD_IDS, ("shop-a", "never-stored"), ("shop-b", "e-1")]:
        asked.setdefault(t, []).append(e)
    assert stored_fingerprints(ch_backend, asked) == {(t, e): 100 + i for i, (t, e) in enumerate(ODD_IDS)}
    names = [r[0] for r in ch_backend.execute("SELECT name FROM system.tables WHERE database = 'cx'")]
    assert "event_id_set" in names and "event_id_set_0015" not in names
    assert migrate(ch_backend) == []


def test_sink_writes_the_hashes_before_the_ids_so_an_id_stored_is_never_missed(ch_backend: ClickHouse) -> None:
    migrate(ch_backend)
    write(ch_backend, A_ORDER)
    (row,) = ch_backend.query(
        f"SELECT arrayFilter(h -> h IN {EVENT_ID_SET}, [{id_hash('shop-a', 'X')}, {id_hash('shop-a', 'Y')}])"
    )[1]
    assert [int(h) for h in row[0]] == [id_hash("shop-a", "X")]
    assert stored_fingerprints(ch_backend, {"shop-a": ["X", "Y"]}) == {("shop-a", "X"): fingerprint(A_ORDER)}


def test_hashes_that_fit_a_smaller_type_are_still_probed_as_the_sets_uint64(
    ch_backend: ClickHouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    migrate(ch_backend)
    small = {"a": 7, "b": 300, "c": 70_000}  # UInt8, UInt16, UInt32 as literals
    monkeypatch.setattr(sink_module, "id_hash", lambda tenant, event_id: small[event_id])
    ch_backend.insert("cx.event_ids", ["tenant", "event_id", "payload_hash", "ver"], [("t", "a", 1, 1), ("t", "c", 3, 1)])
    ch_backend.insert(EVENT_ID_SET, ["h"], [(7,), (70_000,)])
    assert stored_fingerprints(ch_backend, {"t": ["a"]}) == {("t", "a"): 1}
    assert stored_fingerprints(ch_backend, {"t": ["a", "b", "c"]}) == {("t", "a"): 1, ("t", "c"): 3}
    many = {f"n{i}": 10**6 + i for i in range(SET_PROBE_MAX + 1)}  # through the temporary table too
    small |= many
    assert stored_fingerprints(ch_backend, {"t": ["a", "c", *many]}) == {("t", "a"): 1, ("t", "c"): 3}


class _Unreachable:
    """A ClickHouse that fails every call: what is answered without it made none."""

    def __getattr__(self, name: str):  # noqa: ANN204
        raise AssertionError(f"ClickHouse was asked: {name}")


def test_a_lookup_of_no_ids_asks_nothing() -> None:
    assert stored_fingerprints(_Unreachable(), {}) == {}  # type: ignore[arg-type]
    assert stored_fingerprints(_Unreachable(), {"shop-a": []}) == {}  # type: ignore[arg-type]


def test_an_id_in_event_ids_without_its_hash_is_not_looked_up(ch_backend: ClickHouse) -> None:
    """What the sink's order guards against: the set decides which ids cx.event_ids is asked about."""
    migrate(ch_backend)
    ch_backend.insert("cx.event_ids", ["tenant", "event_id", "payload_hash", "ver"], [("shop-a", "X", 5, 1)])
    assert stored_fingerprints(ch_backend, {"shop-a": ["X"]}) == {}
    ch_backend.insert(EVENT_ID_SET, ["h"], [(id_hash("shop-a", "X"),)])
    assert stored_fingerprints(ch_backend, {"shop-a": ["X"]}) == {("shop-a", "X"): 5}


def test_server_lookup_of_new_ids_reads_no_stored_row(clickhouse_server) -> None:  # noqa: ANN001
    """New ids (nearly all of them) are answered by the set: cx.event_ids is not read at all."""
    many = SET_PROBE_MAX + 500  # more than the query takes: through the temporary table
    setup = connect(clickhouse_server.url)
    # Reading one row (the query's own system.one) or the probe table's rows, and not one more.
    one_row = connect(f"{clickhouse_server.url}?max_rows_to_read=1&read_overflow_mode=throw")
    probe_rows = connect(f"{clickhouse_server.url}?max_rows_to_read={many}&read_overflow_mode=throw")
    try:
        store_ids(setup, 100_000)
        new = [f"id-{i:06d}-new" for i in range(0, 100_000, 100_000 // many)][:many]  # between stored ids
        assert stored_fingerprints(one_row, {"shop-a": new[:SET_PROBE_MAX]}) == {}
        assert stored_fingerprints(probe_rows, {"shop-a": new}) == {}
        with pytest.raises(ClickHouseError, match="[Ll]imit for rows"):
            stored_fingerprints(one_row, {"shop-a": [*new[:10], "id-000005"]})  # a hit reads cx.event_ids
        with pytest.raises(ClickHouseError, match="[Ll]imit for rows"):
            stored_fingerprints(probe_rows, {"shop-a": new}, id_set=False)  # without the set: granules
        assert stored_fingerprints(setup, {"shop-a": [*new[:10], "id-000005"]}) == {("shop-a", "id-000005"): 7}
    finally:
        setup.close()
        one_row.close()
        probe_rows.close()


@pytest.mark.integration
def test_the_id_set_survives_a_killed_server(tmp_path: Path) -> None:
    try:
        server_command()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    with ClickHouseServer() as server:
        ch = connect(server.url)
        try:
            migrate(ch)
            write(ch, A_ORDER)
            server.kill()  # SIGKILL: the set is read back from its files at start
            server.start()
            assert stored_fingerprints(ch, {"shop-a": ["X", "Y"]}) == {("shop-a", "X"): fingerprint(A_ORDER)}
        finally:
            ch.close()
