"""Live traffic: a cart on a partition that then stays silent is still abandoned (real broker and worker).

A partition's watermark is its newest event time minus the allowed
lateness, so with no further events on the partition it would stay short of
the cart's deadline forever. A caught-up partition with live traffic (event
time close to wall time) that stays silent for ``idle_partition_ms``
follows the wall clock instead (``Watermark.follow_wall_clock``, driven by
the worker's idle tick every 0.5 s). The cart must then fire about
``abandon_after_ms + allowed_lateness_ms`` of wall time after its last event,
without any other event on its partition.

The delay is 5 s (reason ``inactive_5s``), so the test waits seconds, not
minutes.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest

from pipeline.supervisor.runner import Pipeline
from pipeline.settings import Settings
from tests.integration.helpers import embedded_settings, post_batch, read_triggers, scalar, wait_until

pytestmark = pytest.mark.integration

ABANDON_AFTER_MS = 5_000
ALLOWED_LATENESS_MS = 1_000
IDLE_PARTITION_MS = 2_000


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_cart_on_a_partition_that_goes_silent_is_abandoned_on_the_wall_clock(
    kafka: str, fresh_settings: Settings, tmp_path
) -> None:
    tenant = f"shop-{fresh_settings.worker_group}"
    settings = embedded_settings(
        fresh_settings,
        kafka,
        tmp_path,
        "wk_idle",
        abandon_after_ms=ABANDON_AFTER_MS,
        allowed_lateness_ms=ALLOWED_LATENESS_MS,
        idle_partition_ms=IDLE_PARTITION_MS,
        holdout_pct=0.0,
    )
    abandoned = f"SELECT count() FROM cx.triggers FINAL WHERE tenant = '{tenant}' AND kind = 'cart_abandoned'"
    with Pipeline(settings) as pipeline:
        # anon-idle, at the present time t: a page, then 1 x p-idle (35.00) into cart c-idle.
        # Its partition gets nothing after these two events; the deadline is t + 5 s.
        t_ms = int(time.time() * 1000)
        batch = [
            {"type": "page", "anonymousId": "anon-idle", "messageId": f"{tenant}-page",
             "properties": {"path": "/p/idle"}, "timestamp": _iso(t_ms)},
            {"type": "track", "event": "Product Added", "anonymousId": "anon-idle", "messageId": f"{tenant}-added",
             "properties": {"cart_id": "c-idle", "product_id": "p-idle", "price": 35}, "timestamp": _iso(t_ms)},
        ]  # fmt: skip
        assert post_batch(pipeline.collector_url, "wk_idle", batch).status_code == 200
        sent_ms = int(time.time() * 1000)
        wait_until(lambda: scalar(pipeline, abandoned) == 1, timeout_s=120, what="c-idle abandoned on the wall clock")
        triggers = read_triggers(pipeline, expected=1)

    assert len(triggers) == 1
    trigger = triggers[0]
    assert {k: trigger[k] for k in ("kind", "tenant", "cart_id", "anonymous_id", "customer_id", "reasons")} == {
        "kind": "cart_abandoned",
        "tenant": tenant,
        "cart_id": "c-idle",
        "anonymous_id": "anon-idle",
        "customer_id": None,
        "reasons": ["inactive_5s"],
    }
    assert trigger["cart_value"] == pytest.approx(35.0)
    assert trigger["items"] == [{"product_id": "p-idle", "name": None, "price": 35.0, "quantity": 1}]
    assert trigger["action"] == "none"  # anonymous: nobody to contact
    assert trigger["event_time"] == t_ms + ABANDON_AFTER_MS  # the deadline, in event time
    # Emitted once the wall clock passed the deadline plus the lateness (the worker saw the
    # event at t or later), and not long after.
    assert t_ms + ABANDON_AFTER_MS + ALLOWED_LATENESS_MS <= trigger["emitted_at"] <= sent_ms + 30_000
