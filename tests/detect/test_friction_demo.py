"""The demo storefront's planned friction, found again by the detectors from its messages alone."""

from __future__ import annotations

from collections import Counter

from pipeline.collector.normalize import NormalizeRules, normalize
from pipeline.demo.storefront import generate
from pipeline.detect import Rules
from pipeline.settings import FRICTION_SIGNALS, DAY_MS

from tests.demo.contract_reading import ts_ms
from tests.detect.helpers import Harness

START = 1_767_225_600_000  # 2026-01-01T00:00:00Z
ACCEPT_ALL = NormalizeRules(max_event_age_ms=10 * 365 * DAY_MS, max_event_future_ms=3_600_000, pii_salt="s")


def detected(seed: int, visitors: int) -> tuple[Counter, dict[str, int], int]:
    traffic = generate(seed, visitors=visitors, start_ms=START, span_ms=DAY_MS)
    h = Harness(Rules())  # the default settings: what `cxstream demo` runs with
    for i, msg in enumerate(traffic.messages):
        event = normalize(msg, tenant="demo", received_at_ms=ts_ms(msg) + 80, batch_sent_at=None, rules=ACCEPT_ALL)
        if isinstance(event, dict):  # the planned dead letters are not events
            h.feed(event)
        if i % 500 == 499:
            h.drain()
    h.drain()
    found = Counter(f["signal"] for f in h.facts["cx.friction"])
    return found, traffic.expected.friction, traffic.expected.browser_sessions


def test_every_planned_friction_is_detected_and_nothing_else() -> None:
    found, planned, _ = detected(seed=7, visitors=1_500)
    assert set(found) == set(FRICTION_SIGNALS)  # the demo produces every documented signal
    assert {s: found[s] for s in FRICTION_SIGNALS} == {s: planned[s] for s in FRICTION_SIGNALS}
