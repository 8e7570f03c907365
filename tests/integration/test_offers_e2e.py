"""Offers end to end on a real broker and both ClickHouse backends: offers_daily and customers by hand.

The journeys, both arms and every expected number are in ``offer_journeys.py``.
"""

from __future__ import annotations

import datetime as dt

import pytest

from pipeline.supervisor.runner import Pipeline
from pipeline.settings import Settings
from tests.integration.helpers import BACKENDS, e2e_pipeline, post_batch, read_triggers, scalar, wait_until
from tests.integration.journeys import day_d
from tests.integration.offer_journeys import (
    EXPECTED_CUSTOMERS,
    EXPECTED_OFFERS,
    HOLDOUT_PCT,
    customer_ids,
    offer_messages,
)

pytestmark = pytest.mark.integration


@pytest.fixture(params=BACKENDS)
def pipeline(request, kafka: str, fresh_settings: Settings, tmp_path):  # noqa: ANN001
    with e2e_pipeline(request, kafka, fresh_settings, tmp_path, "wk_offers", allowed_lateness_ms=5 * 60_000, holdout_pct=HOLDOUT_PCT) as running:
        yield running


def at(day: dt.date, minute: int | None) -> dt.datetime:
    if minute is None:
        return dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    return dt.datetime(day.year, day.month, day.day, 10, tzinfo=dt.timezone.utc) + dt.timedelta(minutes=minute)


def test_offer_journeys_give_hand_computed_offers_daily_and_customers(pipeline: Pipeline) -> None:
    tenant, day = pipeline.tenant, day_d()
    resp = post_batch(pipeline.collector_url, "wk_offers", offer_messages(tenant, pipeline.settings.kafka_partitions, day))
    assert resp.status_code == 200, resp.text

    # 4 cart_abandoned + 1 offer_cancelled; 2 recoveries
    q = f"SELECT count() FROM cx.triggers FINAL WHERE tenant = '{tenant}'"
    wait_until(lambda: scalar(pipeline, q) == 5, what="5 triggers in ClickHouse")
    q = f"SELECT count() FROM cx.recoveries FINAL WHERE tenant = '{tenant}'"
    wait_until(lambda: scalar(pipeline, q) == 2, what="2 recoveries in ClickHouse")

    cols, rows = pipeline.query(
        "SELECT arm, triggers, offers, assists, recovered_orders, recovered_revenue, recovery_rate, est_discount_cost"
        f" FROM cx.offers_daily WHERE tenant = '{tenant}' AND day = '{day.isoformat()}' AND experiment = 'default'"
    )
    got = {r[0]: tuple(r[1:]) for r in rows}
    assert set(got) == set(EXPECTED_OFFERS)
    for arm, expected in EXPECTED_OFFERS.items():
        assert got[arm][:4] == expected[:4], arm
        assert got[arm][4:] == pytest.approx(expected[4:]), arm

    ids = customer_ids(tenant)
    _, rows = pipeline.query(
        # epoch seconds: ClickHouse 18.16 prints DateTime 0 as 0000-00-00 00:00:00, newer ones as 1970-01-01
        "SELECT customer_id, toUnixTimestamp(first_order_at), orders, ltv, repeat_buyer, toUnixTimestamp(last_seen_at),"
        " loyalty_score"
        f" FROM cx.customers WHERE tenant = '{tenant}'"
    )
    got_customers = {r[0]: tuple(r[1:]) for r in rows}
    assert set(got_customers) == set(ids.values())
    for letter, (first, orders, ltv, repeat, seen, loyalty) in EXPECTED_CUSTOMERS.items():
        row = got_customers[ids[letter]]
        expected_first, expected_seen = int(at(day, first).timestamp()), int(at(day, seen).timestamp())
        assert row == (expected_first, orders, pytest.approx(ltv), repeat, expected_seen, loyalty), letter

    triggers = read_triggers(pipeline, expected=5)
    by_customer = {(t["customer_id"], t["kind"]): t for t in triggers}
    p_offer = by_customer[(ids["P"], "cart_abandoned")]
    assert (p_offer["action"], p_offer["offer"]["discount_pct"], p_offer["holdout"]) == ("offer", 15, False)
    assert by_customer[(ids["Q"], "cart_abandoned")]["offer"]["discount_pct"] == 10
    assert by_customer[(ids["P"], "offer_cancelled")]["ref_trigger_id"] == p_offer["trigger_id"]
    for letter in "HK":
        held = by_customer[(ids[letter], "cart_abandoned")]
        assert (held["action"], held["offer"], held["holdout"]) == ("none", None, True)
