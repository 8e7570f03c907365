"""The stored-id lookup benchmark measures each layout through the worker's own lookup, and checks its answers."""

from __future__ import annotations

from sinks.client import ClickHouse
from pipeline.tools.lookup_bench import LAYOUTS, measure


def test_lookup_bench_measures_each_layout_and_group_size_on_exact_counts(ch_backend: ClickHouse) -> None:
    results = measure(ch_backend, rows=3_000, id_counts=[20, 100], repeat=3)
    assert [(r["layout"], r["ids"]) for r in results] == [
        (LAYOUTS[0][0], 20), (LAYOUTS[0][0], 100), (LAYOUTS[1][0], 20), (LAYOUTS[1][0], 100),
        (LAYOUTS[2][0], 20), (LAYOUTS[2][0], 100),
    ]  # fmt: skip
    assert {r["rows"] for r in results} == {3_000}
    assert {r["lookups"] for r in results} == {3}
    assert all(0 < r["median_ms"] <= r["max_ms"] for r in results)
    # the copy of the old layout was put back: cx.event_ids is the real table again
    granularity = ch_backend.execute("SELECT engine_full FROM system.tables WHERE database = 'cx' AND name = 'event_ids'")
    assert "index_granularity = 256" in granularity[0][0]
