"""The dashboard's SQL on both engines: embedded chdb 26.9 and the ClickHouse server (18.16 in CI).

A few hand-made rows for two tenants; each chart's query, run as an
analyst's read-only query (as the dashboard runs it), must give the counts
worked out by hand below, and must not count the other tenant.
"""

from __future__ import annotations

from datetime import date, datetime

from pipeline.analyst_sql import QueryLimits, run_analyst_query
from pipeline.dashboard.charts import CHARTS, TENANTS_SQL, render
from sinks.client import ClickHouse

BY_ID = {chart.id: chart for chart in CHARTS}
EVENT_COLUMNS = ["tenant", "event_id", "day", "event_time", "event_time_ms", "type", "event",
                 "anonymous_id", "session_id", "cart_key", "order_id", "checkout_id", "revenue"]  # fmt: skip


def _event(tenant: str, n: int, day: date, event: str, session: str, cart: str = "", order: str = "",
           checkout: str = "", revenue: float = 0.0) -> tuple:  # fmt: skip
    at = datetime(day.year, day.month, day.day, 10, n % 60)
    return (tenant, f"{tenant}-e{n}", day, at, int(at.timestamp() * 1000), "track", event, "a-" + session,
            session, cart, order, checkout, revenue)  # fmt: skip


def _load(ch: ClickHouse) -> None:
    d9, d10 = date(2026, 3, 9), date(2026, 3, 10)
    rows = [
        # shop-x, 9 March: s1 buys (cart c1, checkout k1, order o1 for 50), s2 leaves a cart
        _event("shop-x", 1, d9, "Page Viewed", "s1"),
        _event("shop-x", 2, d9, "Product Added", "s1", cart="c1"),
        _event("shop-x", 3, d9, "Checkout Started", "s1", cart="c1", checkout="k1"),
        _event("shop-x", 4, d9, "Order Completed", "s1", order="o1", checkout="k1", revenue=50.0),
        _event("shop-x", 5, d9, "Product Added", "s2", cart="c2"),
        # shop-x, 10 March: s3 only looks
        _event("shop-x", 6, d10, "Page Viewed", "s3"),
        # shop-y: a whole purchase that shop-x's page must not show
        _event("shop-y", 1, d9, "Product Added", "s9", cart="c9"),
        _event("shop-y", 2, d9, "Checkout Started", "s9", cart="c9", checkout="k9"),
        _event("shop-y", 3, d9, "Order Completed", "s9", order="o9", checkout="k9", revenue=80.0),
    ]
    ch.insert("cx.events", EVENT_COLUMNS, rows)
    ch.insert(
        "cx.deadletters",
        ["tenant", "dl_id", "day", "received_at", "reason", "detail", "source", "payload", "payload_bytes"],
        [
            ("shop-x", "dl1", d10, datetime(2026, 3, 10, 9), "bad_json", "", "collector", "", 3),
            ("shop-x", "dl2", d10, datetime(2026, 3, 10, 9), "bad_json", "", "collector", "", 3),
            ("shop-y", "dl3", d10, datetime(2026, 3, 10, 9), "oversize", "", "collector", "", 3),
        ],
    )


def _run(ch: ClickHouse, chart_id: str, tenant: str = "shop-x") -> tuple[list[str], list[tuple]]:
    columns, rows = run_analyst_query(ch, render(BY_ID[chart_id], tenant, date(2026, 3, 1)), QueryLimits())
    return columns, [tuple(r) for r in rows]


def test_funnel_counts_one_tenants_sessions_carts_checkouts_and_orders(ch_backend: ClickHouse) -> None:
    _load(ch_backend)
    assert _run(ch_backend, "funnel") == (
        ["stage", "total"],
        [("sessions", 3), ("carts", 2), ("checkouts", 1), ("orders", 1)],
    )
    assert _run(ch_backend, "funnel", "shop-y")[1] == [("sessions", 1), ("carts", 1), ("checkouts", 1), ("orders", 1)]


def test_abandonment_by_day_has_the_days_carts_and_no_recovery_without_triggers(ch_backend: ClickHouse) -> None:
    _load(ch_backend)
    columns, rows = _run(ch_backend, "abandonment")
    assert columns[:4] == ["day", "carts", "abandoned_carts", "cart_abandonment_rate"]
    by_day = {str(r[0]): r[1:] for r in rows}
    assert by_day["2026-03-09"] == (2, 0, 0.0, 0.0, 0.0, 0)
    assert by_day["2026-03-10"] == (0, 0, 0.0, 0.0, 0.0, 0)


def test_dead_letters_by_day_and_reason_of_one_tenant(ch_backend: ClickHouse) -> None:
    _load(ch_backend)
    _, rows = _run(ch_backend, "deadletters")
    assert [(str(d), reason, n) for d, reason, n in rows] == [("2026-03-10", "bad_json", 2)]


def test_every_chart_runs_as_an_analyst_query_and_tenants_are_listed(ch_backend: ClickHouse) -> None:
    _load(ch_backend)
    for chart in CHARTS:
        columns, _ = _run(ch_backend, chart.id)
        assert columns, chart.id
    support_columns, [support] = _run(ch_backend, "support")
    assert dict(zip(support_columns, support))["tickets"] == 0
    assert [tuple(r) for r in run_analyst_query(ch_backend, TENANTS_SQL, QueryLimits())[1]] == [("shop-x",), ("shop-y",)]
