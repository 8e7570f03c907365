"""The real storefront SDKs, bundled from npm, in headless Chromium, posting cross-origin to the collector.

Each page is served by the shop's own server (another port: another
origin) and sends the same 13 calls (1 page, 1 identify, 11 track). Each
scenario is told apart by its anonymous id, and every one of its calls must
reach the events topic exactly once, read back from Kafka. All pages run in
one Chromium at once (about 15 s in all); the 503 scenario goes through a
proxy that refuses the first POST, so its events arrive only by the SDK's
retry.

Pinned versions: tests/browser/package.json (analytics-next 1.84.3,
analytics-js 3.34.1); Chromium is Debian's package.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlencode

import pytest

from pipeline.supervisor.broker import EmbeddedBroker
from tests.browser.harness import (
    THIRTEEN,
    EventsReader,
    FaultProxy,
    PageServer,
    build_bundles,
    calls,
    chromium_missing,
    drive_pages,
)
from tests.collector.harness import CollectorThread, collector_settings

pytestmark = pytest.mark.integration

WRITE_KEY = "wk_browser"
TENANT = "shop-browser"


@dataclass(frozen=True)
class Scenario:
    name: str
    sdk: str  # the bundle: segment, rudderstack or beacon
    mode: str = ""
    via_proxy: bool = False  # behind the proxy that answers the first POST with 503

    @property
    def anon(self) -> str:
        return f"anon-{self.name}"


SCENARIOS = [
    Scenario("segment-default", "segment"),
    Scenario("segment-batching", "segment", "batching"),
    Scenario("segment-after-503", "segment", via_proxy=True),
    Scenario("rudderstack-xhr", "rudderstack"),
    Scenario("rudderstack-xhr-batch", "rudderstack", "batch"),
    Scenario("rudderstack-beacon", "rudderstack", "beacon"),
    Scenario("raw-sendbeacon", "beacon"),
]


@dataclass
class BrowserRun:
    pages: dict[str, dict] = field(default_factory=dict)  # scenario name -> drive.mjs's line
    events: dict[str, list[dict]] = field(default_factory=dict)  # scenario name -> its events on Kafka
    proxy_refused: int = 0
    proxy_retry_headers: list[str] = field(default_factory=list)


def _drive(urls: dict[str, str], reader: EventsReader) -> dict[str, dict]:
    """Run every page in one Chromium; close it once each scenario's 13 events are on Kafka (or 45 s passed)."""
    return drive_pages(
        urls, then=lambda _: reader.wait_for(lambda: all(len(reader.of(s.anon)) >= 13 for s in SCENARIOS), timeout_s=45)
    )


@pytest.fixture(scope="module")
def browser_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserRun]:
    missing = chromium_missing()
    if missing is not None:
        pytest.skip(reason=missing)
    build_bundles()
    with EmbeddedBroker() as broker:
        settings = collector_settings(
            broker.bootstrap, "browser", partitions=2, write_key=WRITE_KEY, tenant=TENANT,
            data_dir=tmp_path_factory.mktemp("browser"),
        )
        collector = CollectorThread(settings, broker.bootstrap).start()
        reader = EventsReader(broker.bootstrap, settings.topic_events)
        try:
            with PageServer() as shop, FaultProxy(collector.url) as proxy:
                urls = {}
                for s in SCENARIOS:
                    target = proxy.url if s.via_proxy else collector.url
                    query = {"sdk": s.sdk, "collector": target, "writeKey": WRITE_KEY, "anon": s.anon, "mode": s.mode}
                    urls[s.name] = f"{shop.origin}/index.html?{urlencode(query)}"
                run = BrowserRun(pages=_drive(urls, reader))
                reader.poll(1.5)  # anything late (a duplicate delivery) would show now
                run.events = {s.name: reader.of(s.anon) for s in SCENARIOS}
                run.proxy_refused, run.proxy_retry_headers = proxy.refused, list(proxy.retry_headers)
            yield run
        finally:
            reader.close()
            collector.stop()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_every_call_reaches_the_events_topic_exactly_once(browser_run: BrowserRun, scenario: Scenario) -> None:
    page = browser_run.pages.get(scenario.name)
    assert page is not None and page["ok"], f"page did not run: {page}"
    events = browser_run.events[scenario.name]
    assert calls(events) == THIRTEEN, f"browser console: {page['console']}"
    assert len({e["event_id"] for e in events}) == 13
    assert {e["tenant"] for e in events} == {TENANT}


def test_segment_retry_after_503_passes_cors_and_loses_nothing(browser_run: BrowserRun) -> None:
    assert browser_run.proxy_refused == 1
    # The refused request came again with X-Retry-Count: 1, which its preflight had to allow.
    assert browser_run.proxy_retry_headers == ["1"]
    assert calls(browser_run.events["segment-after-503"]) == THIRTEEN


def test_browser_events_keep_their_library_and_page(browser_run: BrowserRun) -> None:
    rudder = browser_run.events["rudderstack-xhr"]
    assert {e["user_agent"] is not None and "Chrome" in e["user_agent"] for e in rudder} == {True}
    [page] = [e for e in browser_run.events["segment-default"] if e["type"] == "page"]
    assert page["page_path"] == "/"
    assert time.time() * 1000 - page["event_time_ms"] < 10 * 60_000  # today's clock, skew-corrected
