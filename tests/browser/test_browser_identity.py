"""One customer in two real browsers: the customer stage's guardrails, end to end from analytics-next.

Pages in headless Chromium, each its own browser context (its own
storage: another device), all with @segment/analytics-next posting
cross-origin to a running pipeline whose carts are abandoned after 3 s of
wall time:

- ana, on two devices, consents on both and adds to a cart on each: one
  offer between them (one contact a day per customer), the other cart
  ``none``; which device gets it depends on whose deadline came first;
- ben consents on his phone, then says no on his laptop, then adds to a
  cart on his phone: that cart gets ``none``.
"""

from __future__ import annotations

from urllib.parse import urlencode

import pytest

from pipeline.settings import Settings
from pipeline.supervisor.runner import Pipeline
from tests.browser.harness import PageServer, build_bundles, chromium_missing, drive_pages
from tests.integration.helpers import embedded_settings, wait_until

pytestmark = pytest.mark.integration

# In three rounds, one after the other: page -> (anonymous id, user, consent ('' = not said), cart).
ROUNDS = [
    {
        "ana-phone": ("ana-phone", "ana", "true", "c-ana-phone"),
        "ana-laptop": ("ana-laptop", "ana", "true", "c-ana-laptop"),
        "ben-phone": ("ben-phone", "ben", "true", ""),
    },
    {"ben-laptop": ("ben-laptop", "ben", "false", "")},
    {"ben-phone-again": ("ben-phone", "ben", "", "c-ben-phone")},
]


def _run_pages(origin: str, collector: str, pages: dict) -> dict:
    urls = {
        name: f"{origin}/index.html?" + urlencode({
            "sdk": "segment", "collector": collector, "writeKey": "wk_identity", "anon": anon,
            "user": user, "consent": consent, "cart": cart,
        })  # fmt: skip
        for name, (anon, user, consent, cart) in pages.items()
    }
    return drive_pages(urls)


def test_one_customer_in_two_browsers_gets_one_offer_and_a_no_on_one_device_holds_on_the_other(
    kafka: str, fresh_settings: Settings, tmp_path
) -> None:
    missing = chromium_missing()
    if missing is not None:
        pytest.skip(reason=missing)
    build_bundles()
    settings = embedded_settings(
        fresh_settings, kafka, tmp_path, "wk_identity",
        abandon_after_ms=3_000, allowed_lateness_ms=200, idle_partition_ms=500, holdout_pct=0.0,
    )  # fmt: skip
    tenant = f"shop-{fresh_settings.worker_group}"
    with Pipeline(settings) as running, PageServer() as shop:
        for pages in ROUNDS:
            ran = _run_pages(shop.origin, running.collector_url, pages)
            assert {n: a["ok"] for n, a in ran.items()} == {n: True for n in pages}, ran

        def decisions() -> list[tuple[str, str, str]]:
            _, rows = running.query(
                f"SELECT customer_id, anonymous_id, action FROM cx.triggers FINAL WHERE tenant = '{tenant}' "
                "AND kind = 'cart_abandoned' ORDER BY customer_id, anonymous_id"
            )
            return [tuple(r) for r in rows]

        wait_until(lambda: len(decisions()) == 3, timeout_s=60, what="3 cart_abandoned triggers")
        ana = [action for customer, _, action in decisions() if customer == "ana"]
        assert sorted(ana) == ["none", "offer"]  # one contact a day, whichever device came first
        assert [d for d in decisions() if d[0] == "ben"] == [("ben", "ben-phone", "none")]
