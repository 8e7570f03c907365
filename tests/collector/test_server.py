"""The HTTP API on a fake producer: endpoints, auth, limits, dead letters, 503s, packing.

Every request is received at 10:00:02 on 2024-03-10 (``RECEIVED``).
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from pipeline.supervisor.ports import free_port
from pipeline.collector.server import STATE, make_app
from pipeline.wire.records import decode_batch
from pipeline.settings import Settings
from tests.collector.conftest import RECEIVED, basic, ms
from tests.collector.fakes import FakeProducer

EVENTS = "cx.events"
DEADLETTER = "cx.deadletter"
AUTH_A = basic("wk_shop_a")


def track(n: int = 1, anon: str = "anon-1", **fields) -> dict:
    return {
        "type": "track",
        "event": "Product Viewed",
        "anonymousId": anon,
        "messageId": f"m-{n}",
        "properties": {"product_id": f"p{n}"},
        "timestamp": "2024-03-10T10:00:00Z",
        **fields,
    }


async def post(client: TestClient, path: str, body: dict | bytes, headers: dict | None = None):
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    resp = await client.post(path, data=data, headers=headers if headers is not None else AUTH_A)
    return resp.status, await resp.json(), resp


# -- endpoints ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "call"),
    [
        ("/v1/track", "track"),
        ("/v1/t", "track"),
        ("/v1/page", "page"),
        ("/v1/p", "page"),
        ("/v1/identify", "identify"),
        ("/v1/i", "identify"),
        ("/v1/screen", "screen"),
        ("/v1/s", "screen"),
        ("/v1/group", "group"),
        ("/v1/g", "group"),
        ("/v1/alias", "alias"),
        ("/v1/a", "alias"),
    ],
)
async def test_single_call_path_sets_the_type_and_produces_one_event(
    client: TestClient, producer: FakeProducer, path: str, call: str
) -> None:
    body = {"userId": "u-1", "messageId": "m-1", "event": "Wishlist Shared", "timestamp": "2024-03-10T10:00:00Z"}
    status, answer, _ = await post(client, path, body)
    assert (status, answer) == (200, {"success": True})
    [event] = producer.events(EVENTS)
    assert (event["type"], event["tenant"], event["event_id"], event["user_id"]) == (call, "shop-a", "m-1", "u-1")
    assert producer.records_on(DEADLETTER) == []


@pytest.mark.parametrize("path", ["/v1/batch", "/v1/b"])
async def test_batch_paths_produce_each_message(client: TestClient, producer: FakeProducer, path: str) -> None:
    status, answer, _ = await post(client, path, {"batch": [track(1), track(2, anon="anon-2")]})
    assert (status, answer) == (200, {"success": True})
    assert sorted(e["event_id"] for e in producer.events(EVENTS)) == ["m-1", "m-2"]


async def test_unknown_path_is_404(client: TestClient, producer: FakeProducer) -> None:
    status, _, _ = await post(client, "/v1/purchase", track())
    assert status == 404
    assert producer.sent == []


async def test_empty_batch_is_success_with_nothing_produced(client: TestClient, producer: FakeProducer) -> None:
    assert (await post(client, "/v1/batch", {"batch": []}))[:2] == (200, {"success": True})
    assert producer.sent == []


# -- auth --------------------------------------------------------------------


async def test_write_key_in_the_body_authenticates_its_tenant(client: TestClient, producer: FakeProducer) -> None:
    status, _, _ = await post(client, "/v1/batch", {"writeKey": "wk_shop_b", "batch": [track()]}, headers={})
    assert status == 200
    assert [e["tenant"] for e in producer.events(EVENTS)] == ["shop-b"]


async def test_write_key_is_not_kept_in_a_single_call_event(client: TestClient, producer: FakeProducer) -> None:
    # A single call whose body fails validation keeps its payload: without the key.
    body = {"writeKey": "wk_shop_b", "userId": "u-1", "event": "Product Added", "properties": {}}
    assert (await post(client, "/v1/track", body, headers={}))[0] == 200
    [dl] = producer.dead_letters(DEADLETTER)
    assert dl["reason"] == "missing_property"
    assert "wk_shop_b" not in dl["payload"]


@pytest.mark.parametrize(
    "headers",
    [basic("wk_nobody"), {"Authorization": "Bearer wk_shop_a"}, {"Authorization": "Basic !!notbase64"}],
)
async def test_unknown_or_malformed_basic_auth_is_401_and_nothing_produced(
    client: TestClient, producer: FakeProducer, headers: dict
) -> None:
    status, answer, _ = await post(client, "/v1/batch", {"batch": [track()]}, headers=headers)
    assert status == 401 and answer["success"] is False
    assert producer.sent == []


@pytest.mark.parametrize("value", ["Basic é", "Basic d2tf\u00e9", "basic \u00ff\u00fe"])
async def test_a_basic_auth_header_with_characters_outside_ascii_is_401_not_500(
    client: TestClient, producer: FakeProducer, value: str
) -> None:
    """Found by the fuzz suite: base64 of a non-ASCII text raised ValueError, answered 500."""
    status, answer, _ = await post(client, "/v1/batch", {"batch": [track()]}, headers={"Authorization": value})
    assert status == 401 and answer["success"] is False
    assert producer.sent == []


async def test_missing_write_key_is_401_and_nothing_produced(client: TestClient, producer: FakeProducer) -> None:
    status, _, _ = await post(client, "/v1/batch", {"batch": [track()]}, headers={})
    assert status == 401
    status, _, _ = await post(client, "/v1/batch", {"writeKey": "wk_nobody", "batch": [track()]}, headers={})
    assert status == 401
    assert producer.sent == []


async def test_unauthenticated_unreadable_body_produces_nothing(client: TestClient, producer: FakeProducer) -> None:
    status, answer, _ = await post(client, "/v1/batch", b"{not json", headers={})
    assert (status, answer["code"]) == (400, "bad_json")
    assert producer.sent == []


# -- body --------------------------------------------------------------------


async def test_gzip_body_is_accepted(client: TestClient, producer: FakeProducer) -> None:
    body = gzip.compress(orjson.dumps({"batch": [track(1), track(2)]}))
    status, _, _ = await post(client, "/v1/batch", body, headers={**AUTH_A, "Content-Encoding": "gzip"})
    assert status == 200
    assert [e["event_id"] for e in producer.events(EVENTS)] == ["m-1", "m-2"]


async def test_batch_over_500_kb_is_400_and_no_event_produced(client: TestClient, producer: FakeProducer) -> None:
    # 30 events of ~20 KB: each under 32 KB, together ~600 KB, over the batch limit.
    batch = [track(n, properties={"product_id": "p", "note": "n" * 20_000}) for n in range(30)]
    status, answer, _ = await post(client, "/v1/batch", {"batch": batch})
    assert (status, answer["code"]) == (400, "oversize")
    assert producer.records_on(EVENTS) == []
    [dl] = producer.dead_letters(DEADLETTER)  # kept, truncated to its first 32 KB
    assert (dl["reason"], dl["tenant"], len(dl["payload"])) == ("oversize", "shop-a", 32 * 1024)


async def test_gzip_bomb_is_400_oversize(client: TestClient, producer: FakeProducer) -> None:
    bomb = gzip.compress(b'{"batch": ["' + b"0" * 20_000_000 + b'"]}')
    status, answer, _ = await post(client, "/v1/batch", bomb, headers={**AUTH_A, "Content-Encoding": "gzip"})
    assert (status, answer["code"]) == (400, "oversize")
    assert producer.records_on(EVENTS) == []


async def test_event_over_32_kb_refuses_the_whole_request(client: TestClient, producer: FakeProducer) -> None:
    big = track(2, properties={"product_id": "p2", "note": "n" * 33_000})
    status, answer, _ = await post(client, "/v1/batch", {"batch": [track(1), big]})
    assert (status, answer["code"]) == (400, "oversize")
    assert producer.records_on(EVENTS) == []  # not even the valid first event
    [dl] = producer.dead_letters(DEADLETTER)
    assert dl["reason"] == "oversize" and orjson.loads(dl["payload"])["messageId"] == "m-2"


async def test_single_call_over_32_kb_is_400(client: TestClient, producer: FakeProducer) -> None:
    status, _, _ = await post(client, "/v1/track", track(properties={"product_id": "p", "note": "n" * 33_000}))
    assert status == 400
    assert producer.records_on(EVENTS) == []


async def test_body_that_is_not_json_is_400_and_a_bad_json_dead_letter(client: TestClient, producer: FakeProducer) -> None:
    status, answer, _ = await post(client, "/v1/batch", b'{"batch": [')
    assert (status, answer["success"], answer["code"]) == (400, False, "bad_json")
    [dl] = producer.dead_letters(DEADLETTER)
    assert (dl["reason"], dl["tenant"], dl["payload"], dl["received_at_ms"]) == (
        "bad_json",
        "shop-a",
        '{"batch": [',
        ms(RECEIVED),
    )


async def test_body_that_is_a_json_array_is_400_bad_json(client: TestClient, producer: FakeProducer) -> None:
    status, _, _ = await post(client, "/v1/batch", [track()])
    assert status == 400
    assert [dl["reason"] for dl in producer.dead_letters(DEADLETTER)] == ["bad_json"]


async def test_invalid_utf8_is_400_and_a_bad_encoding_dead_letter(client: TestClient, producer: FakeProducer) -> None:
    status, answer, _ = await post(client, "/v1/batch", b'{"batch": [], "x": "\xff\xfe"}')
    assert (status, answer["code"]) == (400, "bad_encoding")
    [dl] = producer.dead_letters(DEADLETTER)
    assert dl["reason"] == "bad_encoding"
    assert dl["payload"] == '{"batch": [], "x": "\\xff\\xfe"}'  # bytes kept, backslash-escaped


async def test_batch_that_is_not_a_list_is_400_schema_violation(client: TestClient, producer: FakeProducer) -> None:
    status, answer, _ = await post(client, "/v1/batch", {"batch": {"type": "track"}})
    assert (status, answer["code"]) == (400, "schema_violation")
    assert [dl["reason"] for dl in producer.dead_letters(DEADLETTER)] == ["schema_violation"]


# -- validation inside an accepted batch ---------------------------------------


async def test_mixed_batch_produces_the_valid_event_and_dead_letters_the_invalid(
    client: TestClient, producer: FakeProducer
) -> None:
    bad = track(2, event="Product Added", properties={"product_id": "p2"})  # no price
    status, answer, _ = await post(client, "/v1/batch", {"batch": [track(1), bad]})
    assert (status, answer) == (200, {"success": True})
    assert [e["event_id"] for e in producer.events(EVENTS)] == ["m-1"]
    [dl] = producer.dead_letters(DEADLETTER)
    assert (dl["reason"], dl["detail"], dl["tenant"], dl["source"]) == (
        "missing_property",
        "price is required",
        "shop-a",
        "collector",
    )
    assert orjson.loads(dl["payload"]) == bad  # the original element


async def test_batch_sent_at_corrects_clock_skew(client: TestClient, producer: FakeProducer) -> None:
    # timestamp 10:00:00, batch sentAt 10:00:05, received 10:00:02 -> skew -3 s -> 09:59:57
    body = {"batch": [track()], "sentAt": "2024-03-10T10:00:05Z"}
    assert (await post(client, "/v1/batch", body))[0] == 200
    [event] = producer.events(EVENTS)
    assert event["event_time_ms"] == ms("2024-03-10T09:59:57+00:00")
    assert event["received_at_ms"] == ms(RECEIVED)


async def test_too_old_and_too_far_future_events_are_dead_letters(client: TestClient, producer: FakeProducer) -> None:
    # received 2024-03-10 10:00:02: 8 days back is outside the 7-day window, 2 hours ahead outside the 1-hour one
    old = track(1, timestamp="2024-03-02T10:00:02Z")
    future = track(2, timestamp="2024-03-10T12:00:02Z")
    assert (await post(client, "/v1/batch", {"batch": [old, future, track(3)]}))[0] == 200
    assert [e["event_id"] for e in producer.events(EVENTS)] == ["m-3"]
    assert [dl["reason"] for dl in producer.dead_letters(DEADLETTER)] == ["too_old", "too_far_future"]


async def test_unknown_event_name_is_stored(client: TestClient, producer: FakeProducer) -> None:
    assert (await post(client, "/v1/batch", {"batch": [track(event="Gift Wrapped", properties={"paper": "red"})]}))[0] == 200
    [event] = producer.events(EVENTS)
    assert (event["event"], orjson.loads(event["properties"])) == ("Gift Wrapped", {"paper": "red"})


async def test_screen_group_alias_in_a_batch_are_stored(client: TestClient, producer: FakeProducer) -> None:
    batch = [
        {"type": "screen", "name": "Cart", "userId": "u-1", "messageId": "s"},
        {"type": "group", "groupId": "g-1", "userId": "u-1", "messageId": "g"},
        {"type": "alias", "previousId": "anon-1", "userId": "u-1", "messageId": "a"},
    ]
    assert (await post(client, "/v1/batch", {"batch": batch}))[0] == 200
    assert [e["type"] for e in producer.events(EVENTS)] == ["screen", "group", "alias"]


async def test_email_and_ip_never_reach_kafka_in_clear(client: TestClient, producer: FakeProducer) -> None:
    batch = [
        {
            "type": "identify",
            "userId": "u-1",
            "messageId": "m-1",
            "traits": {"email": "Ann@Example.com", "consent_marketing": True},
            "context": {"ip": "198.51.100.23"},
        },
        track(2, userId="u-1", properties={"product_id": "p", "email": "ann@example.com"}),
    ]
    assert (await post(client, "/v1/batch", {"batch": batch}))[0] == 200
    everything = b"".join(r[3] for r in producer.sent).lower()
    assert b"ann@example.com" not in everything and b"198.51.100.23" not in everything
    identify = producer.events(EVENTS)[0]
    assert orjson.loads(identify["traits"])["email_hash"] == hashlib.sha256(b"test-saltann@example.com").hexdigest()
    assert identify["ip_hash"] == hashlib.sha256(b"test-salt198.51.100.23").hexdigest()


async def test_three_events_of_one_visitor_are_one_record_in_order(client: TestClient, producer: FakeProducer) -> None:
    batch = [track(1), track(2), track(3)]
    assert (await post(client, "/v1/batch", {"batch": batch}))[0] == 200
    [(topic, partition, key, value)] = producer.sent
    assert (topic, key) == (EVENTS, b"shop-a\x1fanon-1")
    assert [e["event_id"] for e in decode_batch(value)] == ["m-1", "m-2", "m-3"]


# -- broker and load -----------------------------------------------------------


async def test_broker_failure_is_503_with_retry_after(client: TestClient, producer: FakeProducer) -> None:
    producer.down = True
    status, answer, resp = await post(client, "/v1/batch", {"batch": [track()]})
    assert (status, answer["success"]) == (503, False)
    assert resp.headers["Retry-After"] == "5"


async def test_dead_letter_that_cannot_be_produced_is_503_not_400(client: TestClient, producer: FakeProducer) -> None:
    # The 400 would tell the SDK to drop the request; without its dead letter that would lose it silently.
    producer.down = True
    status, _, resp = await post(client, "/v1/batch", b"{oops")
    assert status == 503 and resp.headers["Retry-After"] == "5"


async def test_ready_follows_the_broker_and_health_stays_alive(client: TestClient, producer: FakeProducer) -> None:
    assert (await client.get("/ready")).status == 200
    producer.down = True
    answer = await client.get("/ready")
    assert answer.status == 503
    assert await answer.json() == {"status": "broker unreachable", "checks": {"broker": False, "events_topic": False}}
    assert (await client.get("/health")).status == 200  # a liveness probe must not restart it for the broker's sake


async def test_requests_over_the_inflight_budget_get_503(settings: Settings) -> None:
    # Budget 500 KB: the first request holds its body and records (under 1 KB) while the
    # broker has not acknowledged; the second reserves the full 500 KB limit for its gzip
    # body (its inflated size is unknown) and would pass the budget -> 503. Once the
    # first is acknowledged, the budget is free again and the same request passes.
    producer = FakeProducer()
    producer.hold = asyncio.Event()
    small = settings.model_copy(update={"collector_max_inflight_bytes": 500 * 1024})
    app = make_app(small, producer, now_ms=lambda: ms(RECEIVED))
    async with TestClient(TestServer(app)) as client:
        first = asyncio.ensure_future(post(client, "/v1/batch", {"batch": [track()]}))
        while producer.waiting == 0:  # the first request is now held, awaiting its acknowledgement
            await asyncio.sleep(0.005)
        body = gzip.compress(orjson.dumps({"batch": [track(2)]}))
        status, _, resp = await post(client, "/v1/batch", body, headers={**AUTH_A, "Content-Encoding": "gzip"})
        assert (status, resp.headers["Retry-After"]) == (503, "5")
        producer.hold.set()
        assert (await first)[0] == 200
        assert (await post(client, "/v1/batch", body, headers={**AUTH_A, "Content-Encoding": "gzip"}))[0] == 200


async def test_cors_preflight_allows_browsers(client: TestClient) -> None:
    resp = await client.options("/v1/t")
    assert resp.status == 204
    assert resp.headers["Access-Control-Allow-Origin"] == "*"


async def test_shutdown_stops_accepting_and_finishes_the_request_in_flight(settings: Settings) -> None:
    # run_collector shuts down with runner.cleanup(): this is that path, on the fake producer.
    producer = FakeProducer()
    producer.hold = asyncio.Event()
    runner = web.AppRunner(make_app(settings, producer, now_ms=lambda: ms(RECEIVED)), shutdown_timeout=10)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    async with aiohttp.ClientSession() as session:
        in_flight = asyncio.ensure_future(
            session.post(f"http://127.0.0.1:{port}/v1/batch", data=orjson.dumps({"batch": [track()]}), headers=AUTH_A)
        )
        while producer.waiting == 0:
            await asyncio.sleep(0.005)
        cleanup = asyncio.ensure_future(runner.cleanup())
        await asyncio.sleep(0.1)
        with pytest.raises(OSError):  # no longer accepting
            await asyncio.open_connection("127.0.0.1", port)
        assert not cleanup.done()  # waiting for the request in flight
        producer.hold.set()
        resp = await in_flight
        assert (resp.status, await resp.json()) == (200, {"success": True})
        await cleanup
    assert [e["event_id"] for e in producer.events(EVENTS)] == ["m-1"]


# -- authentication before the body, limits --------------------------------------


async def test_write_key_in_the_query_string_authenticates_its_tenant(client: TestClient, producer: FakeProducer) -> None:
    resp = await client.post("/v1/batch?writeKey=wk_shop_b", data=orjson.dumps({"batch": [track()]}))
    assert resp.status == 200
    assert [e["tenant"] for e in producer.events(EVENTS)] == ["shop-b"]


async def test_unknown_query_key_is_401_even_with_a_good_key_in_the_body(client: TestClient, producer: FakeProducer) -> None:
    body = orjson.dumps({"writeKey": "wk_shop_a", "batch": [track()]})
    assert (await client.post("/v1/batch?writeKey=nope", data=body)).status == 401
    assert producer.sent == []


async def test_body_key_request_over_64_kb_is_401_unread(client: TestClient, producer: FakeProducer) -> None:
    body = orjson.dumps({"writeKey": "wk_shop_a", "batch": [track(properties={"product_id": "p", "n": "x" * 70_000})]})
    resp = await client.post("/v1/batch", data=body)
    assert resp.status == 401
    assert "wk_shop_a" not in await resp.text()
    assert producer.sent == []


async def test_body_key_requests_past_their_allowance_get_503(settings: Settings, producer: FakeProducer) -> None:
    one = settings.model_copy(update={"collector_max_unauthenticated": 1, "collector_body_timeout_s": 2.0})
    app = make_app(one, producer, now_ms=lambda: ms(RECEIVED))
    async with TestClient(TestServer(app)) as c:
        gate = asyncio.Event()

        async def slow():
            yield b'{"writeKey": "wk_shop_a", '
            await gate.wait()
            yield b'"batch": []}'

        first = asyncio.ensure_future(c.post("/v1/batch", data=slow()))
        await asyncio.sleep(0.2)
        second = await c.post("/v1/batch", data=orjson.dumps({"writeKey": "wk_shop_a", "batch": []}))
        assert second.status == 503
        ok = await c.post("/v1/batch", data=orjson.dumps({"batch": []}), headers=AUTH_A)
        assert ok.status == 200  # header-authenticated requests do not share that allowance
        gate.set()
        assert (await first).status == 200


async def test_a_stalled_body_is_408_and_frees_its_reservation(settings: Settings, producer: FakeProducer) -> None:
    quick = settings.model_copy(update={"collector_idle_timeout_s": 0.2})
    app = make_app(quick, producer, now_ms=lambda: ms(RECEIVED))
    async with TestClient(TestServer(app)) as c:
        async def stall():
            yield b'{"batch": ['
            await asyncio.sleep(3)
            yield b"]}"

        resp = await c.post("/v1/batch", data=stall(), headers=AUTH_A)
        assert resp.status == 408
        assert app[STATE].budget.used == 0
