"""The collector's metrics port on a fake producer: series and their values after a known set of requests."""

from __future__ import annotations

import orjson
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from pipeline.collector.server import make_app, make_metrics_app
from pipeline.settings import Settings
from tests.collector.conftest import RECEIVED, basic, ms
from tests.collector.fakes import FakeProducer
from tests.collector.test_server import track


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """(sample name, sorted labels) -> value."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_requests_events_and_dead_letters_are_counted_by_tenant_type_and_outcome(
    settings: Settings, producer: FakeProducer
) -> None:
    app = make_app(settings, producer, now_ms=lambda: ms(RECEIVED))
    async with TestClient(TestServer(app)) as client, TestClient(TestServer(make_metrics_app(app))) as metrics:
        no_price = track(3, event="Product Added", properties={"product_id": "p3"})
        page = {"type": "page", "anonymousId": "anon-2", "messageId": "m-4", "timestamp": "2024-03-10T10:00:00Z"}
        batch = {"batch": [track(1), track(2), no_price, page, {"type": "bogus", "anonymousId": "a"}]}
        assert (await client.post("/v1/batch", data=orjson.dumps(batch), headers=basic("wk_shop_a"))).status == 200
        assert (await client.post("/v1/track", data=orjson.dumps(track(5)), headers=basic("wk_shop_b"))).status == 200
        assert (await client.post("/v1/batch", data=b"{oops", headers=basic("wk_shop_b"))).status == 400
        assert (await client.post("/v1/batch", data=b"{}", headers=basic("wk_nobody"))).status == 401
        preflight = {"Origin": "https://shop.example", "Access-Control-Request-Method": "POST"}
        assert (await client.options("/v1/batch", headers=preflight)).status in (200, 204)
        producer.down = True
        assert (await client.post("/v1/page", data=orjson.dumps(page), headers=basic("wk_shop_a"))).status == 503

        answer = await metrics.get("/metrics")
        assert answer.status == 200
        got = samples(await answer.text())

    def value(name: str, **labels: str) -> float | None:
        return got.get((name, tuple(sorted(labels.items()))))

    assert value("cxstream_collector_requests_total", tenant="shop-a", call="batch", status="200") == 1
    assert value("cxstream_collector_requests_total", tenant="shop-b", call="track", status="200") == 1
    assert value("cxstream_collector_requests_total", tenant="shop-b", call="batch", status="400") == 1
    assert value("cxstream_collector_requests_total", tenant="none", call="batch", status="401") == 1
    assert value("cxstream_collector_requests_total", tenant="shop-a", call="page", status="503") == 1
    assert sum(v for (name, _), v in got.items() if name == "cxstream_collector_requests_total") == 5  # no preflight
    assert value("cxstream_collector_events_total", tenant="shop-a", type="track", status="accepted") == 2
    assert value("cxstream_collector_events_total", tenant="shop-a", type="track", status="dead_letter") == 1
    assert value("cxstream_collector_events_total", tenant="shop-a", type="page", status="accepted") == 1
    assert value("cxstream_collector_events_total", tenant="shop-a", type="other", status="dead_letter") == 1
    assert value("cxstream_collector_events_total", tenant="shop-b", type="track", status="accepted") == 1
    # The 503's page was not acknowledged: not counted.
    assert value("cxstream_collector_events_total", tenant="shop-a", type="page", status="dead_letter") is None
    assert value("cxstream_collector_deadletters_total", tenant="shop-a", reason="missing_property") == 1
    assert value("cxstream_collector_deadletters_total", tenant="shop-a", reason="unknown_type") == 1
    assert value("cxstream_collector_deadletters_total", tenant="shop-b", reason="bad_json") == 1
    # Produce calls: the batch, the track, the bad_json dead letter acknowledged; the 503's failed.
    assert value("cxstream_kafka_produce_seconds_count", client="collector", outcome="ok") == 3
    assert value("cxstream_kafka_produce_seconds_count", client="collector", outcome="failed") == 1
    assert value("cxstream_collector_inflight_bytes") == 0
    assert value("cxstream_supervisor_restarts", component="collector") == 0


async def test_a_tenant_not_configured_is_counted_as_other(settings: Settings, producer: FakeProducer) -> None:
    from pipeline.metrics import Labels

    labels = Labels(settings.write_key_map.values())
    assert [labels.tenant(t) for t in ("shop-a", "shop-b", "shop-zz", "", None)] == ["shop-a", "shop-b", "other", "none", "none"]
    assert [labels.reason(r) for r in ("too_old", "made_up")] == ["too_old", "other"]
    assert [labels.kind(k) for k in ("cart_abandoned", "x")] == ["cart_abandoned", "other"]


async def test_metrics_port_answers_health_and_ready(settings: Settings, producer: FakeProducer) -> None:
    app = make_app(settings, producer, now_ms=lambda: ms(RECEIVED))
    async with TestClient(TestServer(make_metrics_app(app))) as metrics:
        assert (await metrics.get("/health")).status == 200
        assert (await metrics.get("/ready")).status == 200
        producer.down = True
        assert (await metrics.get("/ready")).status == 503
        assert (await metrics.get("/v1/batch")).status == 404  # the event routes are not on this port
