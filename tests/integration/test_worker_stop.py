"""A graceful stop while the worker's own cx.customers records keep arriving ends at once, everything acknowledged.

The device stage keeps promising its watermark to the customer stage (each
idle tick of a live partition moves it), so records of ``cx.customers``
are always in flight. Records taken after the stop's last window was
flushed used to stay unacknowledged: Faust then waited for them
(``wait_empty``) until the process was killed 30 s later.
"""

from __future__ import annotations

import time

import pytest

from pipeline.settings import Settings
from pipeline.supervisor.runner import Pipeline
from tests.integration.helpers import embedded_settings, post_batch, scalar, wait_until

pytestmark = pytest.mark.integration


def test_sigterm_with_customer_records_in_flight_exits_cleanly(kafka: str, fresh_settings: Settings, tmp_path) -> None:
    settings = embedded_settings(fresh_settings, kafka, tmp_path, "wk_stop", idle_partition_ms=300)
    tenant = f"shop-{fresh_settings.worker_group}"
    now = time.time()
    ts = lambda s: time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now + s)) + ".000Z"  # noqa: E731
    messages = [
        {"type": "identify", "userId": "u-1", "anonymousId": "a-1", "traits": {"consent_marketing": True},
         "timestamp": ts(-2), "messageId": "stop-1"},
        {"type": "track", "event": "Product Added", "userId": "u-1", "anonymousId": "a-1", "timestamp": ts(-1),
         "properties": {"cart_id": "c-1", "product_id": "p", "price": 5}, "messageId": "stop-2"},
    ]  # fmt: skip
    with Pipeline(settings) as running:
        assert post_batch(running.collector_url, "wk_stop", messages).status_code == 200
        wait_until(lambda: scalar(running, f"SELECT count() FROM cx.events WHERE tenant = '{tenant}'") == 2,
                   what="the 2 events stored")  # fmt: skip
        time.sleep(2.0)  # idle ticks: the live partition's promises keep going to cx.customers
        worker = running.procs["worker"]
        started = time.monotonic()
        running.stop_worker("worker")
        took = time.monotonic() - started
    # Killed after the 30 s wait, it would end with -9.
    assert worker.returncode == 0, (worker.returncode, took)
