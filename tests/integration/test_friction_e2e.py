"""Friction end to end on a real broker and both ClickHouse backends: collector -> Kafka -> worker -> ClickHouse.

The scripted sessions and every expected number are in ``friction_journeys.py``.
"""

from __future__ import annotations

import pytest
import requests

from pipeline.supervisor.runner import Pipeline
from pipeline.settings import Settings
from tests.integration.friction_journeys import (
    EXPECTED_ASSISTS,
    EXPECTED_ROWS,
    assist_id,
    at_ms,
    friction_messages,
    sentinel_messages,
)
from tests.integration.helpers import BACKENDS, e2e_pipeline, post_batch, read_triggers, scalar, wait_until
from tests.integration.journeys import day_d

pytestmark = pytest.mark.integration


@pytest.fixture(params=BACKENDS)
def pipeline(request, kafka: str, fresh_settings: Settings, tmp_path):  # noqa: ANN001
    with e2e_pipeline(request, kafka, fresh_settings, tmp_path, "wk_fr", allowed_lateness_ms=5 * 60_000, holdout_pct=0.0) as running:
        yield running


def send_and_settle(pipeline: Pipeline, messages: list[dict], round_no: int) -> None:
    """Post ``messages``, then one sentinel per partition, and wait until every sentinel is stored."""
    tenant, day = pipeline.tenant, day_d()
    sentinels = sentinel_messages(tenant, day, pipeline.settings.kafka_partitions, round_no)
    for batch in (messages, sentinels):
        resp = post_batch(pipeline.collector_url, "wk_fr", batch)
        assert resp.status_code == 200, resp.text
    expected = len(sentinels) * round_no
    q = f"SELECT count() FROM cx.events FINAL WHERE tenant = '{tenant}' AND event = 'Sentinel'"
    wait_until(lambda: scalar(pipeline, q) == expected, what=f"{expected} sentinels stored")


def friction_daily(pipeline: Pipeline) -> dict:
    _, rows = pipeline.query(
        "SELECT signal, page, sessions_affected, occurrences, conversion_rate_affected, conversion_rate_unaffected "
        f"FROM cx.friction_daily WHERE tenant = '{pipeline.tenant}' AND day = '{day_d().isoformat()}'"
    )
    return {(r[0], r[1]): tuple(r[2:]) for r in rows}


def test_scripted_sessions_give_hand_computed_friction_daily_and_assists(pipeline: Pipeline) -> None:
    tenant, day = pipeline.tenant, day_d()
    send_and_settle(pipeline, friction_messages(tenant, day), round_no=1)
    # Facts and triggers reach ClickHouse in the same flush as the events before the sentinels.
    q = f"SELECT count() FROM cx.friction FINAL WHERE tenant = '{tenant}'"
    wait_until(lambda: scalar(pipeline, q) == 12, what="12 friction rows")

    got = friction_daily(pipeline)
    assert set(got) == set(EXPECTED_ROWS)
    for key, (sessions, occurrences, affected, unaffected) in EXPECTED_ROWS.items():
        assert got[key][:2] == (sessions, occurrences), key
        assert got[key][2:] == pytest.approx((affected, unaffected)), key

    triggers = read_triggers(pipeline, expected=2)
    assert sorted(t["kind"] for t in triggers) == ["checkout_friction", "checkout_friction"]
    for trigger in triggers:
        second, points, why, customer, cart, _ = EXPECTED_ASSISTS[trigger["anonymous_id"]]
        assert trigger["trigger_id"] == assist_id(tenant, trigger["anonymous_id"], day)
        assert (trigger["action"], trigger["offer"], trigger["holdout"]) == ("assist", None, False)
        assert (trigger["event_time"], trigger["friction_score"], trigger["reasons"]) == (at_ms(day, second), points, why)
        assert (trigger["customer_id"], trigger["cart_id"]) == (customer, cart)
    # The worker timed each trigger's way, in wall ms (cxstream bench's "where a trigger's time goes").
    url = f"http://{pipeline.worker_host}:{pipeline.worker_port}/cx/trigger-times"
    times = requests.get(url, headers=pipeline.worker_headers, timeout=10).json()
    timed = {row[0]: dict(zip(times["fields"], row)) for row in times["triggers"]}
    for trigger in triggers:
        t = timed[trigger["trigger_id"]]
        assert t["kind"] == "checkout_friction"
        assert t["received_ms"] <= t["record_ms"] <= t["taken_ms"] <= t["looked_up_ms"] <= t["sent_ms"], t
    assert requests.get(url, timeout=10).status_code == 401  # behind the worker's token like /cx/stats
    _, stored = pipeline.query(
        f"SELECT trigger_id, kind, friction_score FROM cx.triggers FINAL WHERE tenant = '{tenant}' ORDER BY trigger_id"
    )
    assert sorted(map(tuple, stored)) == sorted((t["trigger_id"], t["kind"], t["friction_score"]) for t in triggers)

    # The storefront resends everything (same messageIds): nothing changes.
    send_and_settle(pipeline, friction_messages(tenant, day), round_no=2)
    assert friction_daily(pipeline) == got
    assert scalar(pipeline, q) == 12
    assert scalar(pipeline, f"SELECT count() FROM cx.triggers FINAL WHERE tenant = '{tenant}'") == 2
