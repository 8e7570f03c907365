"""sinks.blocks: the compiled codec writes the bytes clickhouse-driver writes, or leaves the block to it."""

from __future__ import annotations

import math
from datetime import date, datetime, timezone
from contextlib import contextmanager
from typing import Any

import pytest
from clickhouse_driver.block import RowOrientedBlock
from clickhouse_driver.bufferedwriter import BufferedSocketWriter
from clickhouse_driver.context import Context
from clickhouse_driver.streams.native import BlockOutputStream
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline import native
from sinks import blocks

pytestmark = pytest.mark.skipif(
    not blocks.available(),
    reason=f"the block codec is not compiled here ({native.summary()}): `cxstream build-native`, which infra/setup.sh runs",
)

OLD_REVISION = 54_413  # ClickHouse 18.16: block info, no serialization flag
NEW_REVISION = 54_468  # a current server: a 0 byte after each column's type


class _Socket:
    def __init__(self) -> None:
        self.sent = bytearray()

    def sendall(self, data: bytes) -> None:
        self.sent += data


class _ServerInfo:
    def __init__(self, revision: int) -> None:
        self.used_revision = revision

    def get_timezone(self) -> str:
        return "UTC"


def driver_block(columns: list[tuple[str, str]], rows: list[tuple], revision: int) -> bytes:
    """What clickhouse-driver writes for the block (its block info, then the columns)."""
    socket = _Socket()
    context = Context()
    context.settings = {}
    context.client_settings = {"strings_as_bytes": False, "strings_encoding": "utf-8", "use_numpy": False,
                               "input_format_null_as_default": False}
    context.server_info = _ServerInfo(revision)
    out = BlockOutputStream(BufferedSocketWriter(socket, 1 << 16), context)
    out.write(RowOrientedBlock(columns, [tuple(row) for row in rows]))
    return bytes(socket.sent)


def codec_block(columns: list[tuple[str, str]], rows: list[tuple], revision: int) -> bytes | None:
    payload = blocks.encode([n for n, _ in columns], [t for _, t in columns], rows,
                            serialization_flag=revision >= 54_454)
    if payload is None:
        return None
    block_info = b"\x01\x00\x02\xff\xff\xff\xff\x00"  # is_overflows 0, bucket_num -1, end
    return block_info + payload


# Values each column type takes, over its whole range.
VALUES: dict[str, st.SearchStrategy] = {
    "String": st.one_of(st.text(), st.binary(max_size=40)),
    "UInt8": st.integers(0, 2**8 - 1),
    "UInt16": st.integers(0, 2**16 - 1),
    "UInt32": st.integers(0, 2**32 - 1),
    "UInt64": st.integers(0, 2**64 - 1),
    "Int8": st.integers(-(2**7), 2**7 - 1),
    "Int16": st.integers(-(2**15), 2**15 - 1),
    "Int32": st.integers(-(2**31), 2**31 - 1),
    "Int64": st.integers(-(2**63), 2**63 - 1),
    "Float32": st.floats(width=32),
    "Float64": st.one_of(st.floats(), st.integers(-(2**53), 2**53)),
    "Date": st.dates(),
    "DateTime": st.integers(0, 2**32 - 1),
    "DateTime('UTC')": st.integers(0, 2**32 - 1),
    "Array(String)": st.one_of(st.lists(st.text(max_size=8), max_size=4),
                               st.lists(st.text(max_size=8), max_size=4).map(tuple)),
}

# Anything a row could hold by mistake.
HOSTILE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(-(2**70), 2**70),
    st.floats(),
    st.floats(width=32),
    st.text(),
    st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=3),
    st.binary(max_size=10),
    st.dates(),
    st.datetimes(),
    st.just([1, 2]),
    st.lists(st.one_of(st.text(max_size=3), st.none(), st.integers()), max_size=3),
    st.sets(st.text(max_size=3), max_size=2),
)


@st.composite
def well_typed_blocks(draw: st.DrawFn) -> tuple[list[tuple[str, str]], list[tuple]]:
    types = draw(st.lists(st.sampled_from(sorted(VALUES)), min_size=1, max_size=6))
    columns = [(f"c{i}", spec) for i, spec in enumerate(types)]
    rows = draw(st.lists(st.tuples(*(VALUES[spec] for spec in types)), min_size=1, max_size=12))
    return columns, rows


@st.composite
def hostile_blocks(draw: st.DrawFn) -> tuple[list[tuple[str, str]], list[tuple]]:
    types = draw(st.lists(st.sampled_from(sorted(VALUES)), min_size=1, max_size=4))
    columns = [(f"c{i}", spec) for i, spec in enumerate(types)]
    cell = lambda spec: st.one_of(VALUES[spec], HOSTILE)  # noqa: E731
    rows = draw(st.lists(st.tuples(*(cell(spec) for spec in types)), min_size=1, max_size=6))
    return columns, rows


PROPERTY = settings(max_examples=400, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@PROPERTY
@given(well_typed_blocks(), st.sampled_from([OLD_REVISION, NEW_REVISION]))
def test_well_typed_rows_are_encoded_by_the_codec_to_the_drivers_bytes(block, revision: int) -> None:
    columns, rows = block
    ours = codec_block(columns, rows, revision)
    assert ours is not None, "a row of the sink's own types must not be left to the driver"
    assert ours == driver_block(columns, rows, revision)


@PROPERTY
@given(hostile_blocks())
def test_any_value_is_either_encoded_to_the_drivers_bytes_or_left_to_the_driver(block) -> None:
    columns, rows = block
    ours = codec_block(columns, rows, OLD_REVISION)
    if ours is None:
        return  # the driver gets the block: its conversion or its error, as before the codec
    assert ours == driver_block(columns, rows, OLD_REVISION)


def test_a_date_before_1970_or_after_2149_is_written_as_day_zero_as_the_driver_writes_it() -> None:
    columns = [("d", "Date")]
    rows = [(date(1969, 12, 31),), (date(2149, 6, 6),), (date(2149, 6, 7),), (date(2024, 3, 9),)]
    ours = codec_block(columns, rows, OLD_REVISION)
    assert ours is not None
    assert ours.endswith(b"\x00\x00" + b"\xff\xff" + b"\x00\x00" + (19_791).to_bytes(2, "little"))
    assert ours == driver_block(columns, rows, OLD_REVISION)


@pytest.mark.parametrize(
    ("spec", "value"),
    [
        ("String", None),
        ("String", 5),
        ("String", "\udc80"),  # a lone surrogate: not UTF-8
        ("UInt8", 256),
        ("UInt64", -1),
        ("Int64", 2**63),
        ("DateTime", datetime(2024, 3, 9, tzinfo=timezone.utc)),
        ("DateTime", -1),
        ("Float32", 1e39),
        ("Float64", "1.5"),
        ("Date", datetime(2024, 3, 9, 12, 0)),
        ("Array(String)", ["a", None]),
        ("Array(String)", {"a"}),
        ("Array(String)", "ab"),
    ],
)
def test_a_value_the_codec_does_not_encode_leaves_the_block_to_the_driver(spec: str, value: Any) -> None:
    assert codec_block([("ok", "String"), ("v", spec)], [("a", value)], OLD_REVISION) is None


INTEGER_RANGES = {
    "Int8": (-128, 127), "Int16": (-32_768, 32_767), "Int32": (-(2**31), 2**31 - 1), "Int64": (-(2**63), 2**63 - 1),
    "UInt8": (0, 255), "UInt16": (0, 65_535), "UInt32": (0, 2**32 - 1), "UInt64": (0, 2**64 - 1),
    "DateTime": (0, 2**32 - 1),
}  # fmt: skip


@pytest.mark.parametrize("spec", sorted(INTEGER_RANGES))
def test_each_integer_type_takes_its_whole_range_and_leaves_one_past_it_to_the_driver(spec: str) -> None:
    low, high = INTEGER_RANGES[spec]
    columns = [("v", spec)]
    rows = [(low,), (high,), (1,)]
    assert codec_block(columns, rows, OLD_REVISION) == driver_block(columns, rows, OLD_REVISION)
    assert codec_block(columns, [(low - 1,)], OLD_REVISION) is None
    assert codec_block(columns, [(high + 1,)], OLD_REVISION) is None


def test_a_column_type_the_codec_does_not_know_leaves_the_block_to_the_driver() -> None:
    assert blocks.kinds_of(["String", "Array(UInt8)"]) is None
    assert blocks.kinds_of(["Array(Array(String))"]) is None
    assert blocks.kinds_of(["Nullable(String)"]) is None
    assert blocks.kinds_of(["LowCardinality(String)"]) is None
    assert blocks.kinds_of(["String", "DateTime('Europe/Berlin')"]) == [1, 13]


def test_a_row_that_is_not_a_tuple_of_the_columns_leaves_the_block_to_the_driver() -> None:
    assert blocks.encode(["a", "b"], ["String", "String"], [("x", "y"), ["x", "y"]], serialization_flag=False) is None
    assert blocks.encode(["a", "b"], ["String", "String"], [("x",)], serialization_flag=False) is None


def test_nan_and_infinities_are_written_as_the_driver_writes_them() -> None:
    columns = [("f", "Float64"), ("g", "Float32")]
    rows = [(math.nan, math.inf), (-math.inf, -0.0), (1e308, 3.4028234663852886e38)]
    assert codec_block(columns, rows, NEW_REVISION) == driver_block(columns, rows, NEW_REVISION)


# --- against a real server (ClickHouse 18.16 here; a current image where Docker runs) ---

ALL_KINDS_TABLE = """
CREATE TABLE blocks_test.t (
    s String, u8 UInt8, u16 UInt16, u32 UInt32, u64 UInt64, i8 Int8, i16 Int16, i32 Int32, i64 Int64,
    f32 Float32, f64 Float64, d Date, t DateTime, tz DateTime('UTC'), a Array(String)
) ENGINE = MergeTree() ORDER BY s
"""
ALL_KINDS = ["s", "u8", "u16", "u32", "u64", "i8", "i16", "i32", "i64", "f32", "f64", "d", "t", "tz", "a"]
# Each column's extremes, and text that is not ASCII.
EDGE_ROWS = [
    ("été ✓", 255, 65535, 2**32 - 1, 2**64 - 1, -128, -32768, -(2**31), -(2**63), 1.5, -0.1,
     date(2024, 3, 9), 1_710_000_000, 1_710_000_001, ["x", "é", ""]),
    ("", 0, 0, 0, 0, 127, 32767, 2**31 - 1, 2**63 - 1, -2.0, 1e300, date(1970, 1, 1), 0, 4_294_967_295, []),
]


@contextmanager
def _server(url: str, query: str = ""):  # noqa: ANN202 - a ServerClickHouse
    """A connection to the test server (``query``: driver options in the URL) with an empty ``blocks_test.t``."""
    from sinks.backend_server import ServerClickHouse

    if query:
        url += ("&" if "?" in url else "?") + query
    ch = ServerClickHouse.from_url(url)
    try:
        ch.execute("DROP DATABASE IF EXISTS blocks_test")
        ch.execute("CREATE DATABASE blocks_test")
        ch.execute(ALL_KINDS_TABLE)
        yield ch
    finally:
        ch.close()


@pytest.mark.integration
@pytest.mark.parametrize("query", ["", "compression=lz4"], ids=["plain", "lz4"])
def test_rows_written_by_the_codec_are_stored_with_every_value_intact(clickhouse_server, query: str) -> None:
    with _server(clickhouse_server.url, query) as ch:
        rows = EDGE_ROWS
        ch.insert("blocks_test.t", ALL_KINDS, rows)
        assert ch._client.blocks_encoded == 1
        stored = ch.execute(f"SELECT {', '.join(ALL_KINDS)} FROM blocks_test.t ORDER BY s DESC")
        utc = timezone.utc
        assert [row[:12] for row in stored] == [row[:12] for row in rows]
        assert [(row[12].replace(tzinfo=utc).timestamp(), row[13].timestamp(), row[14]) for row in stored] == [
            (1_710_000_000, 1_710_000_001, ["x", "é", ""]), (0, 4_294_967_295, [])]


@pytest.mark.integration
def test_rows_the_codec_leaves_to_the_driver_are_stored_by_the_driver(clickhouse_server) -> None:
    with _server(clickhouse_server.url) as ch:
        row = ("a", 1, 1, 1, 1, 1, 1, 1, 1, 1.0, 1.0, date(2024, 3, 9), datetime(2024, 3, 9, 16, 0),
               datetime(2024, 3, 9, 16, 0, tzinfo=timezone.utc), ["x"])  # datetimes: the driver converts them
        ch.insert("blocks_test.t", ALL_KINDS, [row])
        assert ch._client.blocks_encoded == 0
        assert ch.execute("SELECT toUnixTimestamp(tz), count() FROM blocks_test.t GROUP BY tz") == [(1_709_999_999 + 1, 1)]
        ch.insert("blocks_test.t", ALL_KINDS, [(None, *row[1:])])  # the driver stores a None as ''
        with pytest.raises(TypeError, match="not text in a String column"):  # the driver's `.encode` on an int
            ch.insert("blocks_test.t", ALL_KINDS, [(5, *row[1:])])
        assert ch._client.blocks_encoded == 0
        assert ch.execute("SELECT s, count() FROM blocks_test.t GROUP BY s ORDER BY s") == [("", 1), ("a", 1)]


@pytest.mark.integration
def test_the_sinks_event_rows_go_through_the_codec(clickhouse_server) -> None:
    from pipeline.tools.insert_bench import synthetic_rows
    from sinks.migrate import migrate
    from sinks.rows import EVENT_COLUMNS

    with _server(clickhouse_server.url) as ch:
        ch.execute("DROP DATABASE IF EXISTS cx")
        migrate(ch)
        before = ch._client.blocks_encoded
        rows = synthetic_rows(500)
        ch.insert("cx.events", list(EVENT_COLUMNS), rows)
        ch.insert("cx.event_ids", ["tenant", "event_id", "payload_hash", "ver"],
                  [(r[0], r[1], r[22], r[23]) for r in rows])
        assert ch._client.blocks_encoded == before + 2
        assert ch.execute("SELECT count(), uniqExact(event_id), sum(revenue) FROM cx.events") == [
            (500, 500, sum(r[15] for r in rows))]
        assert ch.execute("SELECT count() FROM cx.event_ids") == [(500,)]
        ch.execute("DROP DATABASE IF EXISTS cx")


# --- the embedded store: chdb reads the same block as its Native input format ---

@contextmanager
def _chdb(tmp_path):  # noqa: ANN001, ANN202
    """An embedded store in ``tmp_path`` with an empty ``blocks_test.t``."""
    from sinks.client import connect

    ch = connect(f"chdb://{tmp_path / 'chdb'}")
    try:
        ch.execute("CREATE DATABASE blocks_test")
        ch.execute(ALL_KINDS_TABLE)
        yield ch
    finally:
        ch.close()


def test_chdb_stores_the_codecs_block_with_every_value_intact(tmp_path) -> None:
    with _chdb(tmp_path) as ch:
        ch.insert("blocks_test.t", ALL_KINDS, EDGE_ROWS)
        assert ch.blocks_encoded == 1
        stored = ch.execute(f"SELECT {', '.join(ALL_KINDS[:12])}, toUnixTimestamp(t), toUnixTimestamp(tz), a "
                            "FROM blocks_test.t ORDER BY s DESC")
        assert stored == EDGE_ROWS


def test_chdb_takes_rows_the_codec_leaves_as_an_arrow_stream(tmp_path) -> None:
    with _chdb(tmp_path) as ch:
        row = ("a", 1, 1, 1, 1, 1, 1, 1, 1, 1.0, 1.0, date(2024, 3, 9), 1_710_000_000,
               datetime(2024, 3, 9, 16, 0, tzinfo=timezone.utc), ("x",))  # a datetime: not the codec's
        ch.insert("blocks_test.t", ALL_KINDS, [row])
        assert ch.blocks_encoded == 0
        assert ch.execute("SELECT toUnixTimestamp(tz) FROM blocks_test.t") == [(1_710_000_000,)]
