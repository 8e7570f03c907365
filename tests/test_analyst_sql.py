"""The running worker answers analysts' reading SQL and refuses statements that change the store."""

from __future__ import annotations

import pytest

from pipeline.analyst_sql import read_only_refusal


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM cx.kpi_daily",
        "  select count() from cx.events;",
        "WITH 1 AS x SELECT x",
        "(SELECT 1) UNION ALL (SELECT 2)",
        "-- yesterday's KPIs\nSELECT * FROM cx.kpi_daily",
        "/* note */ DESCRIBE TABLE cx.events",
        "SHOW TABLES FROM cx",
        "EXPLAIN SELECT 1",
        "EXISTS TABLE cx.events",
        "SELECT count() FROM cx.events WHERE event = 'a;b -- c'",
    ],
)
def test_reading_statements_are_answered(sql: str) -> None:
    assert read_only_refusal(sql) is None


@pytest.mark.parametrize(
    ("sql", "word"),
    [
        ("DROP TABLE cx.events", "DROP"),
        ("insert into cx.events VALUES ()", "INSERT"),
        ("ALTER TABLE cx.events DELETE WHERE 1", "ALTER"),
        ("TRUNCATE TABLE cx.triggers", "TRUNCATE"),
        ("-- SELECT\nDROP DATABASE cx", "DROP"),
    ],
)
def test_statements_that_change_the_store_are_refused_naming_the_statement(sql: str, word: str) -> None:
    refusal = read_only_refusal(sql)
    assert refusal is not None and refusal.endswith(f"got {word!r}"), refusal


def test_a_second_statement_after_a_select_is_refused() -> None:
    assert read_only_refusal("SELECT 1; DROP TABLE cx.events") == "one statement per query"


def test_an_empty_query_is_refused() -> None:
    assert read_only_refusal("  -- nothing\n ") == "empty query"
