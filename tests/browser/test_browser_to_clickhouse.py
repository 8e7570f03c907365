"""A storefront page on another origin, a running pipeline, and the analyst's table at the end.

test_browser_sdks.py proves every SDK's calls reach the events topic; this
test goes the whole way a new shop goes: the real analytics-next and
analytics-js (beacon) bundles in headless Chromium post cross-origin to the
collector of a running pipeline (collector, worker, embedded ClickHouse),
and each page's 13 calls are rows of ``cx.events``, once each, read with the
same SQL an analyst would type.
"""

from __future__ import annotations

from urllib.parse import urlencode

import pytest

from pipeline.supervisor.runner import Pipeline
from pipeline.settings import Settings
from tests.browser.harness import PageServer, build_bundles, chromium_missing, drive_pages
from tests.integration.helpers import embedded_settings, wait_until

pytestmark = pytest.mark.integration

PAGES = {"segment-default": ("segment", ""), "rudderstack-beacon": ("rudderstack", "beacon")}


def test_each_sdk_page_becomes_thirteen_rows_of_the_events_table(kafka: str, fresh_settings: Settings, tmp_path) -> None:
    missing = chromium_missing()
    if missing is not None:
        pytest.skip(reason=missing)
    build_bundles()
    settings = embedded_settings(fresh_settings, kafka, tmp_path, "wk_page")
    tenant = f"shop-{fresh_settings.worker_group}"

    def rows_per_page() -> dict[str, tuple[int, int]]:
        _, rows = running.query(
            "SELECT anonymous_id, count(), uniqExact(event_id) FROM cx.events FINAL "
            f"WHERE tenant = '{tenant}' GROUP BY anonymous_id"
        )
        return {r[0]: (int(r[1]), int(r[2])) for r in rows}

    with Pipeline(settings) as running, PageServer() as shop:
        urls = {
            name: f"{shop.origin}/index.html?"
            + urlencode({"sdk": sdk, "collector": running.collector_url, "writeKey": "wk_page", "anon": f"anon-{name}", "mode": mode})
            for name, (sdk, mode) in PAGES.items()
        }

        def stored(ran: dict[str, dict]) -> None:
            assert {n: a["ok"] for n, a in ran.items()} == {n: True for n in PAGES}, ran
            wait_until(lambda: sum(c for c, _ in rows_per_page().values()) >= 26, timeout_s=60,
                       what="26 rows in cx.events")  # fmt: skip

        drive_pages(urls, then=stored)
        assert running.wait_drained(60)
        # 13 calls each (1 page, 1 identify, 11 track), each one row: no loss, no duplicate.
        assert rows_per_page() == {"anon-segment-default": (13, 13), "anon-rudderstack-beacon": (13, 13)}
        assert running.procs["worker"].poll() is None
