"""One customer on two devices and the shop's backend, through the real Segment SDK, down to ClickHouse.

Segment's Python SDK plays the two browsers (anonymous id, then identify)
and the backend (user id only, as Segment advises for orders). Times are
yesterday from 10:00 UTC; a page view on each partition at 14:00 carries
every watermark past every deadline (30 minutes after the last cart
activity). Expected, by hand:

- ana: the phone's cart (deadline 10:31) gets the offer; the laptop's
  (10:36) is capped, one offer per customer per 24 h;
- ben: consented on the phone, said no on the laptop at 10:10: his phone
  cart (10:32) gets none;
- cleo: offer at 10:33; the backend's order at 11:00 cancels it;
- dora: the backend's order at 10:15 names her cart: bought, no trigger,
  one ``cx.cart_conversions`` row, and her browsing session converted in
  ``cx.kpi_daily``;
- eve: adds to a cart anonymously at 10:05, never identifies in the
  browser; the backend aliases the browser's anonymous id to her at 10:06
  (``previousId`` and ``userId`` only, as server-side SDKs send it) and
  sends her order naming that cart at 10:20: bought, like dora's.
"""

from __future__ import annotations

import datetime as dt

import pytest
import requests
from segment.analytics import Client

from pipeline.supervisor.runner import Pipeline
from pipeline.settings import Settings
from tests.integration.helpers import BACKENDS, e2e_pipeline, scalar, wait_until
from tests.integration.journeys import day_d, tick_ids

pytestmark = pytest.mark.integration


@pytest.fixture(params=BACKENDS)
def pipeline(request, kafka: str, fresh_settings: Settings, tmp_path):  # noqa: ANN001
    with e2e_pipeline(request, kafka, fresh_settings, tmp_path, "wk_identity", allowed_lateness_ms=5 * 60_000,
                      holdout_pct=0.0) as running:  # fmt: skip
        yield running


def test_customers_on_two_devices_and_the_backend_get_per_person_decisions(pipeline: Pipeline) -> None:
    day = day_d()
    start = dt.datetime(day.year, day.month, day.day, 10, tzinfo=dt.timezone.utc)

    def at(minute: int) -> dt.datetime:
        return start + dt.timedelta(minutes=minute)

    errors: list[str] = []
    sdk = Client("wk_identity", host=pipeline.collector_url, on_error=lambda e, batch: errors.append(str(e)))

    def browser_cart(user: str, anon: str, minute: int, cart: str, consent: bool = True) -> None:
        sdk.identify(user, {"consent_marketing": consent}, anonymous_id=anon, timestamp=at(minute))
        sdk.track(user, "Product Added", {"cart_id": cart, "product_id": "p1", "price": 40.0, "quantity": 1},
                  anonymous_id=anon, timestamp=at(minute + 1))  # fmt: skip

    browser_cart("ana", "ana-phone", 0, "c-ana-1")
    browser_cart("ana", "ana-laptop", 5, "c-ana-2")
    browser_cart("ben", "ben-phone", 1, "c-ben")
    sdk.identify("ben", {"consent_marketing": False}, anonymous_id="ben-laptop", timestamp=at(10))
    browser_cart("cleo", "cleo-phone", 2, "c-cleo")
    browser_cart("dora", "dora-phone", 3, "c-dora")
    sdk.track(None, "Product Added", {"cart_id": "c-eve", "product_id": "p1", "price": 40.0, "quantity": 1},
              anonymous_id="eve-phone", timestamp=at(5))  # fmt: skip
    # The backend: user id only.
    sdk.alias("eve-phone", "eve", timestamp=at(6))
    sdk.track("eve", "Order Completed", {"order_id": "o-eve", "total": 40.0, "cart_id": "c-eve"}, timestamp=at(20))
    sdk.track("cleo", "Order Completed", {"order_id": "o-cleo", "total": 40.0}, timestamp=at(60))
    sdk.track("dora", "Order Completed", {"order_id": "o-dora", "total": 40.0, "cart_id": "c-dora"}, timestamp=at(15))
    for anon in tick_ids(pipeline.tenant, pipeline.settings.kafka_partitions):
        sdk.page(anonymous_id=anon, name="Home", properties={"path": "/"}, timestamp=at(240))
    sdk.flush()
    sdk.join()
    assert errors == []

    tenant = pipeline.tenant
    q = f"SELECT count() FROM cx.triggers FINAL WHERE tenant = '{tenant}'"
    wait_until(lambda: scalar(pipeline, q) == 5, what="5 triggers in ClickHouse")
    _, rows = pipeline.query(
        "SELECT customer_id, anonymous_id, kind, action FROM cx.triggers FINAL "
        f"WHERE tenant = '{tenant}' ORDER BY event_time_ms, kind"
    )
    assert [tuple(r) for r in rows] == [
        ("ana", "ana-phone", "cart_abandoned", "offer"),  # 10:31
        ("ben", "ben-phone", "cart_abandoned", "none"),  # 10:32, consent withdrawn on the laptop
        ("cleo", "cleo-phone", "cart_abandoned", "offer"),  # 10:33
        ("ana", "ana-laptop", "cart_abandoned", "none"),  # 10:36, capped
        ("cleo", "cleo-phone", "offer_cancelled", "none"),  # 11:00, the backend's order
    ]
    # The worker timed each cart the customer stage decided (cxstream bench's "where a customer-stage
    # cart's time goes"): the candidate sent, taken from cx.customers, released, handed to Kafka.
    url = f"http://{pipeline.worker_host}:{pipeline.worker_port}/cx/trigger-times"
    timed = requests.get(url, headers=pipeline.worker_headers, timeout=10).json()["customer"]
    carts = [dict(zip(timed["fields"], row)) for row in timed["triggers"]]
    _, ids = pipeline.query(f"SELECT trigger_id FROM cx.triggers FINAL WHERE tenant = '{tenant}' AND kind = 'cart_abandoned'")
    assert sorted(c["trigger_id"] for c in carts) == sorted(i for (i,) in ids)
    for c in carts:
        assert c["candidate_ms"] <= c["taken_ms"] <= c["released_ms"] <= c["sent_ms"], c
    # The window's tables are inserted one after the other: wait for this one too.
    q = f"SELECT count() FROM cx.cart_conversions FINAL WHERE tenant = '{tenant}'"
    wait_until(lambda: scalar(pipeline, q) == 2, what="dora's and eve's cart conversions in ClickHouse")
    _, conversions = pipeline.query(
        "SELECT customer_id, cart_key, ordered_at_ms FROM cx.cart_conversions FINAL "
        f"WHERE tenant = '{tenant}' ORDER BY customer_id"
    )
    assert [(c, k) for c, k, _ in conversions] == [("dora", "dora-phone/c-dora"), ("eve", "eve-phone/c-eve")]
    # 10:15 and 10:20, give or take the collector's clock-skew correction (sentAt against its own clock).
    for (_, _, ordered_at_ms), minute in zip(conversions, (15, 20)):
        assert abs(ordered_at_ms - int(at(minute).timestamp() * 1000)) < 1000
    # The backend's order for cleo counts once for her, with the browser's history.
    q = (
        "SELECT argMax(orders, scored_at_ms) FROM cx.customer_scores FINAL "
        f"WHERE tenant = '{tenant}' AND customer_id = 'cleo'"
    )
    wait_until(lambda: scalar(pipeline, q) == 1, what="cleo's score row counting the backend's order")
    # kpi_daily: 9 browsing sessions (ana x2, ben x2, cleo, dora, eve, the two page views at 14:00); the
    # backend's orders are no sessions (eve's alias names her browser: it is in her session). dora's
    # order (10:15) came 11 minutes after her session's last event (10:04): converted; eve's (10:20),
    # 14 minutes after hers (the alias at 10:06): converted. cleo's (11:00) came 57 minutes after hers
    # (10:03): not. 6 carts, 4 abandoned (dora's and eve's were bought); 3 orders.
    _, kpi = pipeline.query(
        "SELECT sessions, carts, orders, conversion_rate, cart_abandonment_rate FROM cx.kpi_daily "
        f"WHERE tenant = '{tenant}'"
    )
    ((sessions, carts, orders, conversion_rate, abandonment_rate),) = kpi
    assert (sessions, carts, orders) == (9, 6, 3)
    assert conversion_rate == pytest.approx(2 / 9)
    assert abandonment_rate == pytest.approx(4 / 6)
