"""``CX_LOG_FORMAT=json``: ``cxstream deliver`` writes only JSON lines, also while its broker is gone.

librdkafka writes its own lines (``%3|...|FAIL|...``) to stderr unless the
client is given a Python logger; a broker that stops is when those lines
come. The process runs on a broker of its own, which the test stops.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import orjson
import pytest

from pipeline.supervisor.broker import EmbeddedBroker
from pipeline.settings import Settings
from tests.deliver.common import SECRET, make_trigger, produce, start_deliver, wait_for, write_config
from tests.deliver.receiver import Receiver

pytestmark = pytest.mark.integration


def test_deliver_log_is_json_lines_while_its_broker_is_down(fresh_settings: Settings, tmp_path: Path) -> None:
    log = tmp_path / "deliver.log"
    with Receiver(SECRET.encode()) as rx, EmbeddedBroker(log_path=tmp_path / "broker.log") as broker:
        config = write_config(tmp_path / "hooks.toml", [{"name": "esp", "url": rx.url, "secret": SECRET}])
        settings = fresh_settings.model_copy(update={
            "kafka_bootstrap": broker.bootstrap, "delivery_config": str(config),
            "delivery_drain_s": 1.0,  # the outcomes cannot reach a stopped broker: no need to wait for them
            "worker_session_timeout_s": 3.0,  # each commit at the stop waits about a session for the coordinator
        })  # fmt: skip
        produce(settings, broker.bootstrap, [make_trigger(i) for i in range(3)])
        proc = start_deliver(settings, broker.bootstrap, log, CX_LOG_FORMAT="json")
        try:
            wait_for(lambda: len(rx.snapshot()[1]) == 3, 60, "3 triggers delivered", proc, log)
            broker.stop()
            # librdkafka retries its connections about every second: let it fail a few times.
            wait_for(lambda: "Connection refused" in log.read_text(), 30, "a failed connection logged", proc, log)
            time.sleep(1.0)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except Exception:  # noqa: BLE001 - a stop that hangs without its broker is not what this test is about
                proc.kill()
                proc.wait(10)
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    records = [orjson.loads(line) for line in lines]  # raises on the first line that is not JSON
    assert all(r["component"] == "deliver" and {"ts", "level", "logger", "message"} <= set(r) for r in records), records
    refused = [r for r in records if "Connection refused" in r["message"]]
    assert refused and {r["logger"] for r in refused} == {"cxstream.kafka"}, refused
