"""The real Segment SDK (segment-analytics-python) against the running collector, down to ClickHouse.

Also at the HTTP edge of the running pipeline: an unknown write key is
refused with 401 and produces nothing on the real broker, an oversize batch
is refused with 400.
"""

from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone

import orjson
import pytest
import requests
from confluent_kafka import Consumer, TopicPartition
from segment.analytics import Client

from pipeline.supervisor.runner import Pipeline
from pipeline.wire.topics import kafka_config
from tests.conftest import new_settings
from tests.integration.helpers import e2e_pipeline, scalar, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", params=["chdb"])
def pipeline(request, kafka: str, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN001
    """One running pipeline for the module's tests: none of them needs a fresh one (its tenant is its own)."""
    tmp_path = tmp_path_factory.mktemp("sdk")
    with e2e_pipeline(request, kafka, new_settings(tmp_path), tmp_path, "wk_sdk") as running:
        yield running


def _produced(pipeline: Pipeline) -> int:
    """Records on cx.events and cx.deadletter so far (sum of high watermarks)."""
    s = pipeline.settings
    consumer = Consumer({**kafka_config(s, pipeline.bootstrap), "group.id": f"{s.worker_group}-count"})
    try:
        total = 0
        for topic in (s.topic_events, s.topic_deadletter):
            for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions:
                total += consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
        return total
    finally:
        consumer.close()


def _post(url: str, write_key: str, body: bytes) -> requests.Response:
    auth = base64.b64encode(f"{write_key}:".encode()).decode()
    return requests.post(
        f"{url}/v1/batch", data=body, headers={"Authorization": f"Basic {auth}", "Content-Type": "application/json"}
    )


def test_segment_sdk_calls_reach_clickhouse_with_their_properties(pipeline: Pipeline) -> None:
    errors: list[str] = []
    client = Client("wk_sdk", host=pipeline.collector_url, on_error=lambda e, batch: errors.append(str(e)))
    t = datetime.now(timezone.utc) - timedelta(hours=1)
    client.identify("u-sdk-1", {"email": "ada@example.com", "consent_marketing": True}, anonymous_id="a-sdk-1", timestamp=t)
    client.page(anonymous_id="a-sdk-1", name="Home", properties={"path": "/"}, timestamp=t + timedelta(seconds=5))
    client.track(
        "u-sdk-1",
        "Product Added",
        {"cart_id": "c-sdk", "product_id": "sku-9", "price": 12.5, "quantity": 2},
        anonymous_id="a-sdk-1",
        timestamp=t + timedelta(seconds=9),
        message_id="sdk-m-3",
    )
    client.flush()
    client.join()
    assert errors == []

    tenant = pipeline.tenant
    wait_until(
        lambda: scalar(pipeline, f"SELECT count() FROM cx.events FINAL WHERE tenant = '{tenant}'") == 3,
        what="the 3 SDK calls stored",
    )
    _, rows = pipeline.query(
        "SELECT type, event, anonymous_id, user_id, cart_key, product_id, page_path, email_hash != '' "
        f"FROM cx.events FINAL WHERE tenant = '{tenant}' ORDER BY event_time_ms"
    )
    assert [tuple(r) for r in rows] == [
        ("identify", "", "a-sdk-1", "u-sdk-1", "", "", "", 1),
        ("page", "", "a-sdk-1", "", "", "", "/", 0),
        ("track", "Product Added", "a-sdk-1", "u-sdk-1", "a-sdk-1/c-sdk", "sku-9", "", 0),
    ]
    _, raw = pipeline.query(f"SELECT properties FROM cx.events FINAL WHERE tenant = '{tenant}' AND event_id = 'sdk-m-3'")
    assert orjson.loads(raw[0][0])["price"] == 12.5
    # The email went in as a salted hash only.
    assert scalar(pipeline, "SELECT count() FROM cx.events WHERE position(properties, 'ada@example.com') > 0") == 0


def test_unknown_write_key_is_401_and_nothing_reaches_the_broker(pipeline: Pipeline) -> None:
    before = _produced(pipeline)
    msg = {"type": "track", "event": "Cart Viewed", "anonymousId": "a-x", "properties": {}}
    resp = _post(pipeline.collector_url, "wk_nobody", orjson.dumps({"batch": [msg]}))
    assert resp.status_code == 401
    assert _produced(pipeline) == before


def test_batch_over_500_kb_is_400(pipeline: Pipeline) -> None:
    big = {"type": "track", "event": "Cart Viewed", "anonymousId": "a-x", "properties": {"note": "x" * 20_000}}
    resp = _post(pipeline.collector_url, "wk_sdk", orjson.dumps({"batch": [big] * 30}))
    assert resp.status_code == 400
    assert resp.json()["success"] is False
