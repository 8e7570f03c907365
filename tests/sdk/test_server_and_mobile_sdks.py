"""Server SDKs (npm and PyPI) and the request shapes of the mobile SDKs against a running collector.

Every SDK sends the same 13 calls (1 page, 1 identify, 11 track) under its
own anonymous id; each call must reach the events topic exactly once. The
mobile shapes are written from the SDKs' sources (noted per fixture) and
posted as those SDKs post them (basic auth, ``{"batch": [...], "sentAt"}``);
their ``context.app/device/os/network/screen/library`` must be kept in the
event's ``context``.
"""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime

import orjson
import pytest
import requests
from rudderstack.analytics import Client as RudderClient
from segment.analytics import Client as SegmentClient

from pipeline.supervisor.broker import EmbeddedBroker
from tests.browser.harness import HERE, THIRTEEN, EventsReader, calls, sdk_tools_missing
from tests.collector.harness import CollectorThread, collector_settings

pytestmark = pytest.mark.integration

WRITE_KEY = "wk_sdk"
TENANT = "shop-sdk"


@pytest.fixture(scope="module")
def running() -> Iterator[tuple[CollectorThread, EventsReader]]:
    with EmbeddedBroker() as broker:
        settings = collector_settings(broker.bootstrap, "sdk", partitions=2, write_key=WRITE_KEY, tenant=TENANT)
        collector = CollectorThread(settings, broker.bootstrap).start()
        reader = EventsReader(broker.bootstrap, settings.topic_events)
        try:
            yield collector, reader
        finally:
            reader.close()
            collector.stop()


def _exactly_once(reader: EventsReader, anon: str) -> list[dict]:
    reader.wait_for(lambda: len(reader.of(anon)) >= 13, timeout_s=30)
    reader.poll(1.0)  # a duplicate would show now
    events = reader.of(anon)
    assert calls(events) == THIRTEEN
    assert {e["tenant"] for e in events} == {TENANT}
    return events


def test_node_server_sdks_deliver_every_call_once(running) -> None:  # noqa: ANN001
    missing = sdk_tools_missing()
    if missing is not None:
        pytest.skip(reason=missing)
    collector, reader = running
    spec = {"collector": collector.url, "writeKey": WRITE_KEY, "anonPrefix": "node"}
    out = subprocess.run(
        ["node", str(HERE / "node_sdks.mjs"), json.dumps(spec)], capture_output=True, text=True, timeout=120, check=True
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"analytics-node": {"errors": []}, "rudder-sdk-node": {"errors": []}}, out.stderr
    _exactly_once(reader, "node-analytics-node")
    _exactly_once(reader, "node-rudder-sdk-node")


def _send_python(client, anon: str) -> None:  # noqa: ANN001 - the two SDKs share this API
    client.page(anonymous_id=anon, name="Home", properties={"path": "/"})
    client.identify(f"user-{anon}", {"plan": "gold"}, anonymous_id=anon)
    for n in range(1, 12):
        client.track(anonymous_id=anon, event="Product Viewed", properties={"product_id": f"p{n}", "price": n + 0.5})
    client.flush()
    client.join()


def test_segment_analytics_python_delivers_every_call_once(running) -> None:  # noqa: ANN001
    collector, reader = running
    errors: list = []
    _send_python(SegmentClient(WRITE_KEY, host=collector.url, on_error=lambda e, b: errors.append(e)), "py-segment")
    assert errors == []
    _exactly_once(reader, "py-segment")


def test_rudder_sdk_python_delivers_every_call_once(running) -> None:  # noqa: ANN001
    collector, reader = running
    errors: list = []
    _send_python(RudderClient(WRITE_KEY, host=collector.url, on_error=lambda e, b: errors.append(e)), "py-rudder")
    assert errors == []
    _exactly_once(reader, "py-rudder")


# -- mobile SDKs: the shapes they send ------------------------------------------

# analytics-swift, Sources/Segment/Plugins/Context.swift (staticContextData, insertStaticPlatformContextData,
# insertDynamicPlatformContextData).
SWIFT_CONTEXT = {
    "library": {"name": "analytics-swift", "version": "1.5.11"},
    "app": {"name": "Shop", "version": "2.3.0", "build": "230", "namespace": "com.example.shop"},
    "device": {"manufacturer": "Apple", "type": "ios", "model": "iPhone15,2", "name": "iPhone", "id": "6F1B0A1E"},
    "os": {"name": "iOS", "version": "17.4"},
    "screen": {"width": 393, "height": 852},
    "userAgent": "Shop/230 CFNetwork/1494.0.7 Darwin/23.4.0",
    "locale": "fr-FR",
    "timezone": "Europe/Paris",
    "network": {"bluetooth": False, "cellular": False, "wifi": True},
}
# analytics-kotlin, android/.../plugins/AndroidContextPlugin.kt (applyContextData); library from its core.
KOTLIN_CONTEXT = {
    "library": {"name": "analytics-kotlin", "version": "1.16.0"},
    "app": {"name": "Shop", "version": "2.3.0", "namespace": "com.example.shop", "build": "230"},
    "device": {"id": "a1b2c3d4e5f60718", "manufacturer": "Google", "model": "Pixel 8", "name": "shiba", "type": "android"},
    "os": {"name": "Android", "version": "14"},
    "screen": {"density": 2.625, "height": 2400, "width": 1080},
    "network": {"wifi": True, "bluetooth": False, "cellular": True},
    "locale": "en-US",
    "userAgent": "Dalvik/2.1.0 (Linux; U; Android 14; Pixel 8 Build/AP1A.240305.019)",
    "timezone": "America/New_York",
    "instanceId": "0f4c3a52-8f7e-4a8c-9d55-3f1c1fd8b1a4",
}
# rudder-sdk-android: RudderStack's common-fields sample payload (channel "mobile", originalTimestamp),
# device.advertisingId as the SDK collects it.
RUDDER_ANDROID_CONTEXT = {
    "app": {"build": "1", "name": "RudderAndroidClient", "namespace": "com.rudderstack.demo.android", "version": "1.0"},
    "device": {"id": "7e32188a4dab669f", "manufacturer": "Google", "model": "Android SDK built for x86",
               "name": "generic_x86", "type": "android", "advertisingId": "38400000-8cf0-11bd-b23e-10b96e40000d"},
    "library": {"name": "com.rudderstack.android.sdk.core", "version": "1.21.1"},
    "locale": "en-US",
    "network": {"carrier": "Android", "bluetooth": False, "cellular": True, "wifi": True},
    "os": {"name": "Android", "version": "9"},
    "screen": {"density": 420, "height": 1794, "width": 1080},
    "timezone": "Asia/Kolkata",
    "traits": {"anonymousId": "7e32188a4dab669f"},
    "userAgent": "Dalvik/2.1.0 (Linux; U; Android 9; Android SDK built for x86 Build/PSR1.180720.075)",
}  # fmt: skip
# rudder-sdk-ios: the same common fields, as its RSContext fills them on iOS.
RUDDER_IOS_CONTEXT = {
    "app": {"build": "230", "name": "Shop", "namespace": "com.example.shop", "version": "2.3.0"},
    "device": {"id": "A1B2C3D4-0000-4000-8000-000000000001", "manufacturer": "Apple", "model": "iPhone", "name": "iPhone",
               "type": "iOS", "attTrackingStatus": 0},
    "library": {"name": "rudder-ios-library", "version": "1.26.0"},
    "locale": "en-US",
    "network": {"carrier": "unavailable", "cellular": False, "wifi": True},
    "os": {"name": "iOS", "version": "17.4"},
    "screen": {"density": 3, "height": 852, "width": 393},
    "timezone": "Europe/London",
    "traits": {"anonymousId": "A1B2C3D4-0000-4000-8000-000000000001"},
}  # fmt: skip

MOBILE = {
    "analytics-swift": (SWIFT_CONTEXT, "timestamp"),
    "analytics-kotlin": (KOTLIN_CONTEXT, "timestamp"),
    "rudder-sdk-android": (RUDDER_ANDROID_CONTEXT, "originalTimestamp"),
    "rudder-sdk-ios": (RUDDER_IOS_CONTEXT, "originalTimestamp"),
}


def _mobile_batch(sdk: str, anon: str) -> dict:
    context, time_field = MOBILE[sdk]
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    base = {"anonymousId": anon, "context": context, time_field: now, "integrations": {}}
    if time_field == "originalTimestamp":
        base["channel"] = "mobile"
    msgs = [
        {**base, "type": "screen", "name": "Home", "messageId": f"{anon}-s"},
        {**base, "type": "identify", "userId": f"user-{anon}", "traits": {"plan": "gold"}, "messageId": f"{anon}-i"},
    ]
    msgs += [
        {**base, "type": "track", "event": "Product Viewed", "properties": {"product_id": f"p{n}", "price": n + 0.5},
         "messageId": f"{anon}-t{n}"}
        for n in range(1, 12)
    ]  # fmt: skip
    return {"batch": msgs, "sentAt": now}


@pytest.mark.parametrize("sdk", list(MOBILE))
def test_mobile_sdk_batch_is_stored_with_its_device_context(running, sdk: str) -> None:  # noqa: ANN001
    collector, reader = running
    anon = f"mobile-{sdk}"
    auth = base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
    resp = requests.post(
        f"{collector.url}/v1/batch",
        data=orjson.dumps(_mobile_batch(sdk, anon)),
        headers={"Authorization": f"Basic {auth}", "Content-Type": "application/json"},
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    reader.wait_for(lambda: len(reader.of(anon)) >= 13, timeout_s=30)
    events = reader.of(anon)
    assert len({e["event_id"] for e in events}) == len(events) == 13
    sent = MOBILE[sdk][0]
    for event in events:
        kept = orjson.loads(event["context"])
        assert kept["os"] == sent["os"]
        assert kept["app"] == sent["app"]
        assert kept["screen"] == sent["screen"]
        assert kept["network"] == sent["network"]
        assert kept["library"] == sent["library"]
        assert kept["timezone"] == sent["timezone"]
        assert kept["device"] == {k: v for k, v in sent["device"].items() if k != "advertisingId"}
        assert "traits" not in kept and "instanceId" not in kept
