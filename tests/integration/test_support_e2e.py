"""Support end to end on a real broker and both ClickHouse backends: helpdesk calls -> support_daily.

The scripted traffic and every expected number are in ``support_journeys.py``.
"""

from __future__ import annotations

import math

import pytest

from pipeline.supervisor.runner import Pipeline
from pipeline.settings import Settings
from tests.integration.helpers import BACKENDS, e2e_pipeline, post_batch, read_triggers, scalar, wait_until
from tests.integration.journeys import day_d
from tests.integration.support_journeys import EXPECTED, EXPECTED_TRIGGERS, SECRET_TEXTS, support_messages

pytestmark = pytest.mark.integration

COLUMNS = tuple(EXPECTED)


@pytest.fixture(params=BACKENDS)
def pipeline(request, kafka: str, fresh_settings: Settings, tmp_path):  # noqa: ANN001
    with e2e_pipeline(request, kafka, fresh_settings, tmp_path, "wk_sup", holdout_pct=0.0) as running:
        yield running


def _support_daily(pipeline: Pipeline, tenant: str, day: str) -> dict | None:
    _, rows = pipeline.query(
        f"SELECT {', '.join(COLUMNS)} FROM cx.support_daily WHERE tenant = '{tenant}' AND day = '{day}'"
    )
    return dict(zip(COLUMNS, rows[0])) if len(rows) == 1 else None


def _matches(got: dict | None) -> bool:
    return got is not None and all(math.isclose(got[k], v, rel_tol=1e-9, abs_tol=1e-9) for k, v in EXPECTED.items())


def test_helpdesk_traffic_gives_hand_computed_support_daily_and_risk_triggers(pipeline: Pipeline) -> None:
    tenant, day = pipeline.tenant, day_d().isoformat()
    resp = post_batch(pipeline.collector_url, "wk_sup", support_messages(tenant, day_d()))
    assert resp.status_code == 200, resp.text

    count = "SELECT count() FROM cx.{} FINAL WHERE tenant = '" + tenant + "'"
    wait_until(lambda: scalar(pipeline, count.format("support_messages")) == 12, what="12 support messages")
    wait_until(lambda: scalar(pipeline, count.format("surveys")) == 7, what="7 valid survey answers")
    wait_until(lambda: scalar(pipeline, count.format("deadletters")) == 1, what="the out-of-range survey")
    # Ticket rows are rewritten per event: wait for the final versions.
    wait_until(lambda: _matches(_support_daily(pipeline, tenant, day)), what="support_daily to settle")

    got = _support_daily(pipeline, tenant, day)
    assert got is not None
    for column, value in EXPECTED.items():
        assert got[column] == pytest.approx(value), column
    _, tickets = pipeline.query(
        "SELECT ticket_id, version, has_response, first_response_s, fcr, reopened, csat_score "
        f"FROM cx.support_tickets FINAL WHERE tenant = '{tenant}' ORDER BY ticket_id"
    )
    assert [tuple(r) for r in tickets] == [
        ("tk-1", 6, 1, 180.0, 1, 0, 5.0),  # versions: opened, 2 messages, resolved, csat, ces
        ("tk-2", 7, 1, 3600.0, 0, 0, 2.0),
        ("tk-3", 7, 1, 90.0, 0, 1, 0.0),
        ("tk-4", 3, 0, 0.0, 0, 0, 0.0),
    ]

    triggers = read_triggers(pipeline, expected=len(EXPECTED_TRIGGERS))
    assert {t["customer_id"]: t["reasons"] for t in triggers} == EXPECTED_TRIGGERS
    assert {(t["kind"], t["action"], t["holdout"]) for t in triggers} == {("support_risk", "assist", False)}
    assert {t["_key"] for t in triggers} == {c.encode() for c in EXPECTED_TRIGGERS}
    wait_until(
        lambda: scalar(pipeline, count.format("triggers")) == len(EXPECTED_TRIGGERS), what="support_risk rows"
    )


def test_support_message_text_is_nowhere_in_clickhouse(pipeline: Pipeline) -> None:
    tenant = pipeline.tenant
    resp = post_batch(pipeline.collector_url, "wk_sup", support_messages(tenant, day_d()))
    assert resp.status_code == 200, resp.text
    count = "SELECT count() FROM cx.{} FINAL WHERE tenant = '" + tenant + "'"
    wait_until(lambda: scalar(pipeline, count.format("support_messages")) == 12, what="12 support messages")
    wait_until(lambda: scalar(pipeline, count.format("deadletters")) == 1, what="the dead letter")
    wait_until(lambda: scalar(pipeline, count.format("events")) == 27, what="27 stored events")

    # cx.event_id_set (engine Set) holds 8-byte hashes of ids and cannot be read back.
    _, tables = pipeline.query(
        "SELECT name FROM system.tables WHERE database = 'cx' AND engine NOT LIKE '%View%' AND engine != 'Set'"
    )
    names = sorted(r[0] for r in tables)
    assert {"events", "deadletters", "support_messages", "support_tickets", "surveys"} <= set(names)
    # The server may be shared with other tests (a session's clickhouse-server): their rows are
    # other tenants', and whole tables can pass the analyst query's row limit. Every table with
    # a tenant column is read for this test's tenant; the others whole.
    _, with_tenant = pipeline.query("SELECT table FROM system.columns WHERE database = 'cx' AND name = 'tenant'")
    tenanted = {r[0] for r in with_tenant}
    assert {"events", "deadletters", "support_messages", "event_ids"} <= tenanted
    stored = ""
    for name in names:
        where = f" WHERE tenant = '{tenant}'" if name in tenanted else ""
        _, rows = pipeline.query(f"SELECT * FROM cx.{name}{where}")
        stored += repr(rows)
    assert "tk-1" in stored and "u-s5" in stored  # the rows were read
    for text in SECRET_TEXTS:
        assert text not in stored
    # nor a telling fragment (JSON escaping could change quotes and accents)
    for fragment in ("jamais", "inadmissible", "tell me where", "sorted now", "bougé", "rembours", "refund after",
                     "Martine", "0612345678", "Widget"):  # fmt: skip
        assert fragment not in stored, fragment
