"""What the worker logs and dead-letters about a row ClickHouse refused: the error code, never the value."""

from __future__ import annotations

from pipeline.runtime.worker import clickhouse_refusal


def test_a_clickhouse_refusal_keeps_its_code_and_drops_the_quoted_value() -> None:
    text = "Code: 27. DB::Exception: Cannot parse input: expected ',' before: 'someone@example.com'"
    assert clickhouse_refusal(text) == "ClickHouse error code 27"
    assert "someone" not in clickhouse_refusal(text)


def test_a_refusal_without_a_code_is_named_without_its_text() -> None:
    assert clickhouse_refusal("value 'ann@example.com' is out of range") == "ClickHouse refused it (no error code)"
