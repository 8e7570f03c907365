"""The ClickHouse API: parameter binding, identifiers, result types, on both backends."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from sinks.backend_chdb import bind_params
from sinks.chtypes import decoder, split_type
from sinks.client import ClickHouse, ClickHouseError, check_identifiers, check_params, connect, parse_version

INJECTION = "'; DROP TABLE cx.events; --"


# -- pure -------------------------------------------------------------------


def test_placeholders_become_typed_chdb_parameters() -> None:
    sql, bound = bind_params(
        "SELECT * FROM t WHERE a = %(a)s AND n > %(n)s AND d = %(d)s AND t < %(t)s AND x LIKE 'p%%'",
        {"a": "x\ty\\", "n": 3, "d": date(2024, 3, 10), "t": datetime(2024, 3, 10, 1, 0, tzinfo=timezone.utc)},
    )
    assert sql == (
        "SELECT * FROM t WHERE a = {a:String} AND n > {n:Int64} AND d = {d:Date}"
        " AND t < {t:DateTime('UTC')} AND x LIKE 'p%'"
    )
    # Values travel in ClickHouse's escaped text form.
    assert bound == {"a": "x\\ty\\\\", "n": "3", "d": "2024-03-10", "t": "2024-03-10 01:00:00"}


def test_sql_without_params_is_left_alone() -> None:
    assert bind_params("SELECT 'a%%b' LIKE '%(x)s'", None) == ("SELECT 'a%%b' LIKE '%(x)s'", {})


def test_a_placeholder_without_a_value_is_an_error() -> None:
    with pytest.raises(KeyError):
        bind_params("SELECT %(missing)s", {"other": 1})


@pytest.mark.parametrize("value", [None, True, ["a"], ("a",), {"a": 1}, b"x"])
def test_parameters_only_one_backend_understands_are_refused(value: object) -> None:
    with pytest.raises(TypeError):
        check_params({"v": value})


def test_aware_datetime_parameters_are_converted_to_utc() -> None:
    paris = datetime.fromisoformat("2024-03-11T00:30:00+01:00")
    assert check_params({"t": paris}) == {"t": datetime(2024, 3, 10, 23, 30)}


@pytest.mark.parametrize(
    "table, columns",
    [("cx.events; DROP TABLE x", ["a"]), ("cx.events", ["a b"]), ("cx.events", ["a", "b)--"]), ("cx.events", [])],
)
def test_insert_identifiers_cannot_carry_sql(table: str, columns: list[str]) -> None:
    with pytest.raises(ValueError):
        check_identifiers(table, columns)


def test_version_text_is_parsed_into_numbers() -> None:
    assert parse_version("18.16.1") == (18, 16, 1)
    assert parse_version("26.9.2.1") == (26, 9, 2, 1)
    assert parse_version("24.3.1-testing") == (24, 3)


def test_nested_type_names_split_at_top_level_commas() -> None:
    assert split_type("Array(Tuple(String, UInt8))") == ("Array", ["Tuple(String, UInt8)"])
    assert split_type("DateTime('Europe/Paris')") == ("DateTime", ["'Europe/Paris'"])
    assert split_type("Decimal(18, 2)") == ("Decimal", ["18", "2"])
    assert split_type("String") == ("String", [])


def test_text_results_decode_to_the_types_clickhouse_driver_returns() -> None:
    assert decoder("DateTime('UTC')")("2024-03-10 23:59:59") == datetime(2024, 3, 10, 23, 59, 59, tzinfo=timezone.utc)
    assert decoder("DateTime")("2024-03-10 23:59:59") == datetime(2024, 3, 10, 23, 59, 59)
    assert decoder("Date")("2024-03-10") == date(2024, 3, 10)
    assert decoder("UInt64")("18446744073709551615") == 2**64 - 1
    assert decoder("Nullable(Float64)")(None) is None
    assert decoder("Array(LowCardinality(String))")(["a", "b"]) == ["a", "b"]
    assert decoder("Tuple(a UInt8, b Date)")([1, "2024-03-10"]) == (1, date(2024, 3, 10))


def test_unknown_url_scheme_is_refused() -> None:
    with pytest.raises(ClickHouseError, match="chdb:///path"):
        connect("postgres://localhost/db")


# -- both backends -------------------------------------------------------------


def test_injection_string_is_stored_and_matched_as_data(ch_backend: ClickHouse) -> None:
    row = (INJECTION, INJECTION, date(2024, 3, 10), "bad_json")
    ch_backend.insert("cx.deadletters", ["tenant", "dl_id", "day", "reason"], [row])
    rows = ch_backend.execute(
        "SELECT tenant, dl_id FROM cx.deadletters FINAL WHERE tenant = %(tenant)s AND dl_id = %(id)s",
        {"tenant": INJECTION, "id": INJECTION},
    )
    assert rows == [(INJECTION, INJECTION)]
    assert ch_backend.execute("EXISTS TABLE cx.events") == [(1,)]


def test_string_parameters_round_trip_control_characters(ch_backend: ClickHouse) -> None:
    tricky = "tab\there\nnewline \\N backslash \\ quote ' double \" percent % unicode é漢😀"
    assert ch_backend.execute("SELECT %(v)s", {"v": tricky}) == [(tricky,)]


def test_query_returns_names_and_python_values(ch_backend: ClickHouse) -> None:
    names, rows = ch_backend.query(
        "SELECT toDate('2024-03-10') AS d, toDateTime(1710115199, 'UTC') AS t, [1, 2] AS a, toUInt8(7) AS u, 1.5 AS f"
    )
    assert names == ["d", "t", "a", "u", "f"]
    assert rows == [(date(2024, 3, 10), datetime(2024, 3, 10, 23, 59, 59, tzinfo=timezone.utc), [1, 2], 7, 1.5)]


def test_bad_sql_raises_clickhouse_error(ch_backend: ClickHouse) -> None:
    with pytest.raises(ClickHouseError):
        ch_backend.execute("SELECT nope FROM cx.no_such_table")


def test_insert_of_no_rows_writes_nothing(ch_backend: ClickHouse) -> None:
    ch_backend.insert("cx.events", ["tenant"], [])
    assert ch_backend.execute("SELECT count() FROM cx.events") == [(0,)]


def test_server_version_is_numeric(ch_backend: ClickHouse) -> None:
    version = ch_backend.server_version()
    assert len(version) >= 2 and version >= (18, 16)


def test_datetime_cells_may_be_epoch_seconds_or_datetimes(ch_backend: ClickHouse) -> None:
    # 2024-03-10 23:59:59 UTC three ways: epoch seconds, aware, naive (read as UTC).
    instant = datetime(2024, 3, 10, 23, 59, 59, tzinfo=timezone.utc)
    cells = [1710115199, instant, instant.replace(tzinfo=None)]
    rows = [("shop-a", f"dl-{i}", date(2024, 3, 10), cell) for i, cell in enumerate(cells)]
    ch_backend.insert("cx.deadletters", ["tenant", "dl_id", "day", "received_at"], rows)
    stored = ch_backend.execute("SELECT DISTINCT received_at FROM cx.deadletters")
    assert stored == [(instant,)]


def test_a_second_chdb_directory_in_one_process_is_refused_clearly(tmp_path) -> None:  # noqa: ANN001
    first = connect(f"chdb://{tmp_path / 'a'}")
    try:
        with pytest.raises(ClickHouseError, match="one directory only"):
            connect(f"chdb://{tmp_path / 'b'}")
    finally:
        first.close()
    second = connect(f"chdb://{tmp_path / 'b'}")  # after close, another directory is fine
    second.close()


def test_chdb_url_must_name_an_absolute_path() -> None:
    with pytest.raises(ClickHouseError, match="chdb:///absolute/path"):
        connect("chdb://relative/dir")
