"""A new worker rebuilds visitor states from the changelog the previous one wrote (``pipeline.runtime.changelog``)."""

from __future__ import annotations

import pytest

from pipeline.supervisor.runner import Pipeline
from pipeline.settings import Settings
from tests.integration.helpers import embedded_settings, post_batch, scalar, wait_until, worker_stats
from tests.integration.journeys import _ts, day_d, tick_ids

pytestmark = pytest.mark.integration


def test_cart_added_before_a_worker_restart_is_abandoned_by_the_next_worker(kafka: str, fresh_settings: Settings, tmp_path) -> None:
    # Day D, minutes after 10:00 UTC, allowed lateness 0:
    #   run 1: anon-r adds p1 to cart c-r @0 -> deadline @30; the worker stores
    #          the event and writes anon-r's state to the changelog; stopped.
    #   run 2: a fresh worker process (same group, same table) starts; one page
    #          per partition @45 carries every watermark past @30. The cart can
    #          only be abandoned if anon-r's state came back from the changelog.
    tenant = f"shop-{fresh_settings.worker_group}"
    settings = embedded_settings(fresh_settings, kafka, tmp_path, "wk_restart", allowed_lateness_ms=0)
    day = day_d()
    added = {
        "type": "track",
        "event": "Product Added",
        "anonymousId": "anon-r",
        "messageId": f"{tenant}-added",
        "properties": {"cart_id": "c-r", "product_id": "p1", "price": 25},
        "timestamp": _ts(day, 0),
    }
    events = f"SELECT count() FROM cx.events FINAL WHERE tenant = '{tenant}'"
    abandoned = f"SELECT count() FROM cx.triggers FINAL WHERE tenant = '{tenant}' AND kind = 'cart_abandoned'"

    with Pipeline(settings) as first:
        assert post_batch(first.collector_url, "wk_restart", [added]).status_code == 200
        wait_until(lambda: scalar(first, events) == 1, what="the Product Added stored")
        assert first.wait_drained(60)
        assert scalar(first, abandoned) == 0

    later = [
        {"type": "page", "anonymousId": anon, "messageId": f"{tenant}-{anon}", "properties": {"path": "/"},
         "timestamp": _ts(day, 45)}
        for anon in tick_ids(tenant, settings.kafka_partitions)
    ]
    with Pipeline(settings) as second:
        assert post_batch(second.collector_url, "wk_restart", later).status_code == 200
        wait_until(lambda: scalar(second, abandoned) == 1, what="c-r abandoned by the second worker")
        # The cart fires on its own partition's watermark; the other partition's
        # page may be stored by a later batch, so count only once all is acked.
        # Every record acknowledged once stored.
        assert second.wait_drained(120), f"not drained: (committed, end) {second.offsets()}, worker {worker_stats(second)}"
        assert scalar(second, events) == 1 + len(later)
