"""The demo's helpdesk traffic through the detection core agrees with the ledger's support counts."""

from __future__ import annotations

from collections import Counter

from pipeline.collector.normalize import NormalizeRules, normalize
from pipeline.detect import PartitionProcessor, Rules
from pipeline.detect.support import SURVEYS_TABLE, TICKETS_TABLE
from pipeline.demo.catalog import load_shop
from pipeline.demo.storefront import generate
from pipeline.sentiment import score
from tests.demo.contract_reading import ts_ms

START = 1_767_225_600_000  # 2026-01-01T00:00:00Z
DAY = 86_400_000
LAX = NormalizeRules(max_event_age_ms=30 * DAY, max_event_future_ms=DAY, pii_salt="s")


def test_tickets_fcr_reopened_and_surveys_match_the_ledger() -> None:
    traffic = generate(7, visitors=3_000, start_ms=START, span_ms=DAY)
    expected = traffic.expected
    proc = PartitionProcessor(Rules(holdout_pct=0.0), load_state=lambda key: None, cache_size=1_000_000)
    for offset, msg in enumerate(traffic.messages):
        event = normalize(msg, tenant="demo", received_at_ms=ts_ms(msg) + 50, batch_sent_at=None, rules=LAX)
        if isinstance(event, dict):
            proc.process(offset, [event], ts_ms(msg) + 50)
    out = proc.drain()
    latest: dict[str, dict] = {}
    for row in out.facts[TICKETS_TABLE]:
        if row["version"] > latest.get(row["ticket_id"], {"version": 0})["version"]:
            latest[row["ticket_id"]] = row
    tickets = latest.values()
    assert expected.tickets > 40 and expected.reopened_tickets > 0  # enough for the comparison to mean something
    assert len(latest) == expected.tickets
    assert sum(t["fcr"] for t in tickets) == expected.fcr_tickets
    assert sum(t["reopened"] for t in tickets) == expected.reopened_tickets
    assert Counter(r["survey"] for r in out.facts[SURVEYS_TABLE]) == expected.surveys
    # Angry customers exist in the demo, so the helpdesk gets priority-routing triggers.
    risk = [t for t in out.triggers if t["kind"] == "support_risk"]
    assert len(risk) > 0.1 * expected.tickets
    assert {t["action"] for t in risk} == {"assist"}


def _customer_texts() -> list[tuple[str, str, bool]]:
    """(lang, text, angry) for every customer wording of the demo, variants included."""
    support = load_shop().support
    variants = support["variants"]
    out = []
    for topic in support["topics"].values():
        for lang, kinds in topic.items():
            for kind, texts in kinds.items():
                out += [(lang, t, kind == "angry") for text in texts for t in [text, *variants.get(text, ())]]
    for lang, texts in support["customer_followup"].items():
        # the last follow-up is the unhappy one (sent when the customer comes back)
        out += [(lang, t, text == texts[-1]) for text in texts for t in [text, *variants.get(text, ())]]
    return out


def test_angry_demo_messages_and_only_they_reach_the_support_risk_threshold() -> None:
    threshold = Rules().support_risk_sentiment
    texts = _customer_texts()
    assert len(texts) > 80 and {lang for lang, _, _ in texts} == {"fr", "en"}
    for lang, text, angry in texts:
        assert (score(text, lang).score <= threshold) == angry, text


def test_demo_customers_word_their_messages_in_many_ways() -> None:
    traffic = generate(3, visitors=2_000, start_ms=START, span_ms=DAY)
    texts = {
        m["properties"]["text"]
        for m in traffic.messages
        if m.get("event") == "Support Message Sent" and m["properties"]["author"] == "customer"
    }
    assert len(texts) >= 30
