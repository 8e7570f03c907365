"""CORS as browsers check it, and RudderStack's HTTP API (beacon routes, write key in the query string).

The header lists below are what the SDKs send (read from their sources):
analytics-next 1.84 adds ``X-Retry-Count`` on a retry; RudderStack's
analytics-js 3.34 sends ``AnonymousId`` and ``SentAt`` on every XHR and the
``Rsa-*`` headers on retries; its beacon transport posts
``/beacon/v1/batch?writeKey=...`` with a ``text/plain`` blob.
"""

from __future__ import annotations

import base64

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from pipeline.collector.server import make_app
from pipeline.settings import Settings
from tests.collector.conftest import RECEIVED, ms
from tests.collector.fakes import FakeProducer
from tests.collector.test_server import AUTH_A, DEADLETTER, EVENTS, post, track

SHOP = "https://shop.example"


def preflight_headers(origin: str, *headers: str) -> dict[str, str]:
    out = {"Origin": origin, "Access-Control-Request-Method": "POST"}
    if headers:
        out["Access-Control-Request-Headers"] = ",".join(headers)
    return out


@pytest.fixture
async def restricted(settings: Settings, producer: FakeProducer):
    """A collector that serves browsers from SHOP only."""
    app = make_app(
        settings.model_copy(update={"collector_allowed_origins": f"{SHOP}, https://www.shop.example"}),
        producer,
        now_ms=lambda: ms(RECEIVED),
    )
    async with TestClient(TestServer(app)) as c:
        yield c


# -- preflights ----------------------------------------------------------------


async def test_preflight_allows_segment_retry_header(client: TestClient) -> None:
    resp = await client.options("/v1/batch", headers=preflight_headers(SHOP, "content-type", "x-retry-count"))
    assert resp.status == 204
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    assert resp.headers["Access-Control-Allow-Headers"] == "content-type, x-retry-count"
    assert resp.headers["Access-Control-Allow-Methods"] == "POST, OPTIONS"
    assert resp.headers["Access-Control-Max-Age"] == "7200"
    assert resp.headers["Vary"] == "Access-Control-Request-Headers"
    assert "Access-Control-Allow-Credentials" not in resp.headers


async def test_preflight_allows_rudderstack_headers_on_retry(client: TestClient) -> None:
    sent = ("accept", "anonymousid", "authorization", "content-type", "rsa-retry-attempt", "rsa-retry-reason",
            "rsa-since-first-attempt", "rsa-since-last-attempt", "sentat")  # fmt: skip
    resp = await client.options("/v1/track", headers=preflight_headers(SHOP, *sent))
    assert resp.status == 204
    assert resp.headers["Access-Control-Allow-Headers"].split(", ") == list(sent)


async def test_preflight_for_a_header_not_on_the_list_is_403_listing_the_allowed_ones(client: TestClient) -> None:
    resp = await client.options("/v1/batch", headers=preflight_headers(SHOP, "content-type", "x-forwarded-for"))
    assert resp.status == 403
    assert "Access-Control-Allow-Headers" not in resp.headers
    assert (await resp.json())["message"] == (
        "a requested header is not allowed; allowed: accept, anonymousid, authorization, content-encoding, "
        "content-type, sentat, x-retry-count, rsa-*"
    )


async def test_preflight_on_the_beacon_route_is_answered(client: TestClient) -> None:
    resp = await client.options("/beacon/v1/batch?writeKey=wk_shop_a", headers=preflight_headers(SHOP, "content-type"))
    assert resp.status == 204


async def test_listed_origin_is_echoed_with_credentials_and_vary(restricted: TestClient) -> None:
    resp = await restricted.options("/v1/batch", headers=preflight_headers(SHOP, "authorization"))
    assert resp.status == 204
    assert resp.headers["Access-Control-Allow-Origin"] == SHOP
    assert resp.headers["Access-Control-Allow-Credentials"] == "true"
    assert resp.headers["Vary"] == "Origin, Access-Control-Request-Headers"


async def test_unlisted_origin_preflight_is_403_without_allow_origin(restricted: TestClient) -> None:
    resp = await restricted.options("/v1/batch", headers=preflight_headers("https://evil.example", "authorization"))
    assert resp.status == 403
    assert "Access-Control-Allow-Origin" not in resp.headers
    assert resp.headers["Vary"] == "Origin"


async def test_unlisted_origin_post_is_403_and_nothing_produced(restricted: TestClient, producer: FakeProducer) -> None:
    status, answer, _ = await post(restricted, "/v1/batch", {"batch": [track()]}, {**AUTH_A, "Origin": "https://evil.example"})
    assert (status, answer["code"]) == (403, "forbidden")
    assert producer.sent == []


async def test_refusals_quote_neither_the_origin_nor_the_header_names_nor_the_path(
    restricted: TestClient, client: TestClient
) -> None:
    marker = "zz-marker-7f3a"
    origin = f"https://{marker}.example"
    post_refused = await restricted.post("/v1/batch", json={"batch": []}, headers={**AUTH_A, "Origin": origin})
    preflight_origin = await restricted.options("/v1/batch", headers=preflight_headers(origin, "authorization"))
    preflight_header = await client.options("/v1/batch", headers=preflight_headers(SHOP, f"x-{marker}"))
    no_route = await client.post(f"/v1/{marker}", json={}, headers=AUTH_A)
    answers = [(post_refused.status, await post_refused.text()), (preflight_origin.status, await preflight_origin.text()),
               (preflight_header.status, await preflight_header.text()), (no_route.status, await no_route.text())]  # fmt: skip
    assert [status for status, _ in answers] == [403, 403, 403, 404]
    assert [marker in text for _, text in answers] == [False] * 4


async def test_listed_origin_post_is_stored_and_answered_with_its_origin(
    restricted: TestClient, producer: FakeProducer
) -> None:
    status, _, resp = await post(restricted, "/v1/batch", {"batch": [track()]}, {**AUTH_A, "Origin": SHOP})
    assert status == 200
    assert (resp.headers["Access-Control-Allow-Origin"], resp.headers["Vary"]) == (SHOP, "Origin")
    assert [e["event_id"] for e in producer.events(EVENTS)] == ["m-1"]


async def test_request_without_origin_is_served_by_a_restricted_collector(
    restricted: TestClient, producer: FakeProducer
) -> None:
    # Server SDKs send no Origin: the write key alone authenticates them.
    assert (await post(restricted, "/v1/batch", {"batch": [track()]}))[0] == 200
    assert len(producer.events(EVENTS)) == 1


async def test_every_answer_carries_cors_headers_even_errors(client: TestClient) -> None:
    status, _, resp = await post(client, "/v1/batch", b"{not json", {**AUTH_A, "Origin": SHOP})
    assert status == 400
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    resp = await client.post("/nowhere", data=b"{}", headers={"Origin": SHOP})
    assert resp.status == 404
    assert resp.headers["Access-Control-Allow-Origin"] == "*"


# -- RudderStack's HTTP API ------------------------------------------------------


def rudder_event(n: int, anon: str = "rs-anon-1") -> dict:
    """An event as analytics-js 3.34 builds it (fields trimmed to those the collector reads)."""
    return {
        "type": "track",
        "event": "Product Viewed",
        "anonymousId": anon,
        "messageId": f"rs-{n}",
        "channel": "web",
        "properties": {"product_id": f"p{n}"},
        "originalTimestamp": "2024-03-10T10:00:00.000Z",
        "sentAt": "2024-03-10T10:00:00.000Z",
        "context": {"library": {"name": "RudderLabs JavaScript SDK", "version": "3.34.1"}},
    }


async def test_beacon_batch_with_write_key_in_the_query_is_stored(client: TestClient, producer: FakeProducer) -> None:
    body = orjson.dumps({"batch": [rudder_event(1), rudder_event(2)], "sentAt": "2024-03-10T10:00:00.000Z"})
    resp = await client.post("/beacon/v1/batch?writeKey=wk_shop_b", data=body, headers={"Content-Type": "text/plain"})
    assert resp.status == 200
    events = producer.events(EVENTS)
    assert [(e["event_id"], e["tenant"]) for e in events] == [("rs-1", "shop-b"), ("rs-2", "shop-b")]
    # originalTimestamp + (received - sentAt): received 2 s after sentAt
    assert events[0]["event_time_ms"] == ms("2024-03-10T10:00:02+00:00")


@pytest.mark.parametrize(("path", "call"), [("/beacon/v1/track", "track"), ("/beacon/v1/page", "page")])
async def test_single_beacon_call_sets_its_type(client: TestClient, producer: FakeProducer, path: str, call: str) -> None:
    msg = {k: v for k, v in rudder_event(3).items() if k != "type"}
    resp = await client.post(f"{path}?writeKey=wk_shop_a", data=orjson.dumps(msg), headers={"Content-Type": "text/plain"})
    assert resp.status == 200
    assert [(e["type"], e["tenant"]) for e in producer.events(EVENTS)] == [(call, "shop-a")]


async def test_unknown_write_key_in_the_query_is_401_before_the_body(client: TestClient, producer: FakeProducer) -> None:
    resp = await client.post("/beacon/v1/batch?writeKey=wk_nobody", data=b"not even json")
    assert resp.status == 401
    assert producer.sent == []  # no dead letter either: the request has no tenant


async def test_beacon_body_that_is_not_json_is_a_dead_letter_of_the_query_key_tenant(
    client: TestClient, producer: FakeProducer
) -> None:
    resp = await client.post("/beacon/v1/batch?writeKey=wk_shop_a", data=b"{oops", headers={"Content-Type": "text/plain"})
    assert resp.status == 400
    [dl] = producer.dead_letters(DEADLETTER)
    assert (dl["tenant"], dl["reason"]) == ("shop-a", "bad_json")


async def test_rudderstack_xhr_with_its_headers_is_stored(client: TestClient, producer: FakeProducer) -> None:
    headers = {
        "Authorization": "Basic " + base64.b64encode(b"wk_shop_a:").decode(),
        "AnonymousId": base64.b64encode(b"rs-anon-1").decode(),
        "SentAt": "2024-03-10T10:00:00.000Z",
        "Content-Type": "application/json;charset=UTF-8",
        "Origin": SHOP,
    }
    status, answer, _ = await post(client, "/v1/batch", {"batch": [rudder_event(4)]}, headers)
    assert (status, answer) == (200, {"success": True})
    assert [e["event_id"] for e in producer.events(EVENTS)] == ["rs-4"]


async def test_basic_auth_wins_over_a_query_write_key(client: TestClient, producer: FakeProducer) -> None:
    resp = await client.post("/v1/batch?writeKey=wk_shop_b", data=orjson.dumps({"batch": [track()]}), headers=AUTH_A)
    assert resp.status == 200
    assert [e["tenant"] for e in producer.events(EVENTS)] == ["shop-a"]


async def test_beacon_batch_is_503_with_retry_after_when_kafka_does_not_acknowledge(
    client: TestClient, producer: FakeProducer
) -> None:
    producer.down = True
    body = orjson.dumps({"batch": [rudder_event(7)]})
    resp = await client.post("/beacon/v1/batch?writeKey=wk_shop_a", data=body, headers={"Content-Type": "text/plain"})
    assert (resp.status, resp.headers["Retry-After"]) == (503, "5")
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    producer.down = False
    again = await client.post("/beacon/v1/batch?writeKey=wk_shop_a", data=body, headers={"Content-Type": "text/plain"})
    assert again.status == 200
    assert [e["event_id"] for e in producer.events(EVENTS)] == ["rs-7"]


async def test_beacon_event_failing_the_catalog_is_a_dead_letter_and_the_rest_is_stored(
    client: TestClient, producer: FakeProducer
) -> None:
    bad = {**rudder_event(8), "event": "Product Added", "properties": {"price": 3}}  # no product_id
    body = orjson.dumps({"batch": [rudder_event(9), bad]})
    resp = await client.post("/beacon/v1/batch?writeKey=wk_shop_b", data=body, headers={"Content-Type": "text/plain"})
    assert resp.status == 200
    assert [e["event_id"] for e in producer.events(EVENTS)] == ["rs-9"]
    [dl] = producer.dead_letters(DEADLETTER)
    assert (dl["tenant"], dl["reason"]) == ("shop-b", "missing_property")
