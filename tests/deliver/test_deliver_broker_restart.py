"""``cxstream deliver`` across a restart of the embedded broker, which forgets every producer id."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.settings import Settings
from pipeline.supervisor.broker import EmbeddedBroker
from tests.deliver.common import SECRET, make_trigger, produce, read_topic, start_deliver, wait_for, write_config
from tests.deliver.receiver import Receiver

pytestmark = pytest.mark.integration


def test_outcomes_are_written_again_after_the_broker_restarts(fresh_settings: Settings, tmp_path: Path) -> None:
    log = tmp_path / "deliver.log"
    with EmbeddedBroker() as broker, Receiver(SECRET.encode()) as rx:
        kafka = broker.bootstrap
        config = write_config(tmp_path / "hooks.toml", [{"name": "crm", "url": rx.url, "secret": SECRET}])
        settings = fresh_settings.model_copy(update={
            "kafka_bootstrap": kafka, "delivery_config": str(config), "delivery_backoff_s": 0.05,
        })  # fmt: skip
        produce(settings, kafka, [make_trigger(0)])
        proc = start_deliver(settings, kafka, log)
        try:
            outcomes = lambda: {o["trigger_id"] for o in read_topic(settings, kafka, settings.topic_deliveries)}  # noqa: E731
            wait_for(lambda: outcomes() == {"tr-00000"}, 60, "the first outcome", proc, log)
            # tansu keeps its log in memory: the restarted broker has no topics, groups or producer ids.
            broker.stop()
            broker.start()
            produce(settings, kafka, [make_trigger(1)])
            wait_for(lambda: "tr-00001" in rx.snapshot()[1], 90, "the second trigger delivered", proc, log)
            wait_for(lambda: outcomes() == {"tr-00001"}, 90, "its outcome on the deliveries topic", proc, log)
        finally:
            proc.terminate()
            proc.wait(30)
