"""End to end on a real broker and both ClickHouse backends: collector -> Kafka -> worker -> ClickHouse.

The scripted journeys and every expected number are in ``journeys.py``.
"""

from __future__ import annotations

import pytest

from pipeline.supervisor.runner import Pipeline
from pipeline.settings import Settings
from tests.integration.helpers import BACKENDS, e2e_pipeline, post_batch, read_triggers, scalar, wait_until
from tests.integration.journeys import EXPECTED, day_d, journey_batches

pytestmark = pytest.mark.integration


@pytest.fixture(params=BACKENDS)
def pipeline(request, kafka: str, fresh_settings: Settings, tmp_path):  # noqa: ANN001
    with e2e_pipeline(request, kafka, fresh_settings, tmp_path, "wk_e2e", allowed_lateness_ms=5 * 60_000, holdout_pct=0.0) as running:
        yield running


def test_scripted_journeys_give_hand_computed_kpis_and_triggers(pipeline: Pipeline) -> None:
    tenant = pipeline.tenant
    day = day_d()
    for batch in journey_batches(tenant, pipeline.settings.kafka_partitions, day):
        resp = post_batch(pipeline.collector_url, "wk_e2e", batch)
        assert resp.status_code == 200, resp.text
        assert resp.json() == {"success": True}

    q = f"SELECT count() FROM cx.triggers FINAL WHERE tenant = '{tenant}'"
    wait_until(lambda: scalar(pipeline, q) == 3, what="3 triggers in ClickHouse")
    wait_until(
        lambda: scalar(pipeline, f"SELECT count() FROM cx.events FINAL WHERE tenant = '{tenant}'") == EXPECTED["events"],
        what="17 stored events",
    )
    wait_until(
        lambda: scalar(pipeline, f"SELECT count() FROM cx.deadletters FINAL WHERE tenant = '{tenant}'") == 1,
        what="1 dead letter",
    )

    cols, rows = pipeline.query(
        "SELECT sessions, carts, orders, revenue, conversion_rate, cart_abandonment_rate, aov "
        f"FROM cx.kpi_daily WHERE tenant = '{tenant}' AND day = '{day.isoformat()}'"
    )
    assert len(rows) == 1
    kpi = dict(zip(cols, rows[0]))
    assert kpi["sessions"] == EXPECTED["sessions"]
    assert kpi["carts"] == EXPECTED["carts"]
    assert kpi["orders"] == EXPECTED["orders"]
    assert kpi["revenue"] == pytest.approx(EXPECTED["revenue"])
    assert kpi["conversion_rate"] == pytest.approx(EXPECTED["conversion_rate"])
    assert kpi["cart_abandonment_rate"] == pytest.approx(EXPECTED["cart_abandonment_rate"])
    assert kpi["aov"] == pytest.approx(EXPECTED["aov"])

    _, dl = pipeline.query(f"SELECT reason, events FROM cx.deadletter_daily WHERE tenant = '{tenant}'")
    assert {r[0]: r[1] for r in dl} == EXPECTED["deadletters"]

    triggers = read_triggers(pipeline, expected=3)
    kinds = sorted(t["kind"] for t in triggers)
    assert kinds == ["cart_abandoned", "cart_abandoned", "offer_cancelled"]
    by_cart = {t["cart_id"]: t for t in triggers if t["kind"] == "cart_abandoned"}
    anon_cart = by_cart["c-a"]
    assert anon_cart["action"] == "none" and anon_cart["customer_id"] is None
    # 2 x 20.00: the resend of its Product Added in the second request changed nothing.
    assert anon_cart["cart_value"] == pytest.approx(40.0)
    assert anon_cart["items"] == [{"product_id": "p1", "name": None, "price": 20.0, "quantity": 2}]
    assert anon_cart["_key"] == b"anon-a"
    c_cart = by_cart[None]  # C's cart had no cart_id: the visitor's open cart
    assert c_cart["customer_id"] == "u-c" and c_cart["action"] == "offer" and c_cart["offer"]["discount_pct"] == 10
    cancelled = next(t for t in triggers if t["kind"] == "offer_cancelled")
    assert cancelled["ref_trigger_id"] == c_cart["trigger_id"]
    assert {t["trigger_id"] for t in triggers} == set(
        r[0] for r in pipeline.query(f"SELECT trigger_id FROM cx.triggers FINAL WHERE tenant = '{tenant}'")[1]
    )
