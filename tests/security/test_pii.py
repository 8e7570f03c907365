"""The collector's scrubber: personal keys at any depth, emails and phones in URLs and free text."""

from __future__ import annotations

import hashlib

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
import pytest

from pipeline.collector.normalize import NormalizeRules, normalize
from pipeline.collector.pii import MAX_DEPTH, Scrubber, TooDeep

SALT = "pii-test-salt"
S = Scrubber(SALT, ("email", "phone", "ip", "address"))
RULES = NormalizeRules(max_event_age_ms=10**12, max_event_future_ms=10**12, pii_salt=SALT)


def h(value: str) -> str:
    return hashlib.sha256((SALT + value).encode()).hexdigest()


def test_personal_keys_are_hashed_at_any_depth_and_renamed() -> None:
    value = {"customer": {"Email": "Ann@Example.com", "contact": {"phoneNumber": "+33 6 12 34 56 78"}}, "ip": "10.0.0.1"}
    assert S.value(value) == {
        "customer": {"email_hash": h("ann@example.com"), "contact": {"phoneNumber_hash": h("+33 6 12 34 56 78")}},
        "ip_hash": h("10.0.0.1"),
    }


def test_an_address_object_keeps_its_shape_with_every_value_hashed() -> None:
    assert S.value({"address": {"city": "Lyon", "email": "a@b.fr", "zip": None}}) == {
        "address_hash": {"city": h("lyon"), "email": h("a@b.fr"), "zip": None}
    }


def test_short_pattern_matches_words_only_so_shipping_and_zip_stay() -> None:
    assert [S.matches(k) for k in ("shipping", "zip", "tip", "client_ip", "clientIp", "ipv4", "IP")] == [
        False, False, False, True, True, True, True,
    ]  # fmt: skip


def test_emails_and_phones_in_a_url_query_string_are_hashed() -> None:
    url = "https://shop.test/cart?email=ann%40example.com&ref=x&to=bo%40example.org"
    assert S.text(url) == f"https://shop.test/cart?email={h('ann@example.com')}&ref=x&to=email_hash:{h('bo@example.org')}"


def test_emails_and_phones_in_free_text_are_hashed_and_dates_stay() -> None:
    text = "call me on 06 12 34 56 78 or +1 (415) 555-0100, mail ann@example.com, order of 2024-03-10"
    assert S.text(text) == (
        f"call me on phone_hash:{h('0612345678')} or phone_hash:{h('+14155550100')}, "
        f"mail email_hash:{h('ann@example.com')}, order of 2024-03-10"
    )


def test_nesting_past_the_limit_is_refused() -> None:
    deep: object = "x"
    for _ in range(MAX_DEPTH + 1):
        deep = {"a": deep}
    with pytest.raises(TooDeep):
        S.value(deep)


def test_hashes_are_deterministic_for_joins() -> None:
    assert S.value({"email": "a@b.fr"}) == Scrubber(SALT, ("email",)).value({"email": " A@B.FR "})


def test_support_text_leaves_the_collector_as_its_sentiment_only() -> None:
    msg = {
        "type": "track", "event": "Support Message Sent", "userId": "u-1", "messageId": "m-1",
        "properties": {"ticket_id": "t-1", "author": "customer", "text": "Colis jamais reçu, c'est inadmissible",
                       "text_sentiment": {"score": 1.0, "label": "positive", "lang": "fr"}},
        "context": {"locale": "fr-FR"},
    }  # fmt: skip
    event = normalize(msg, tenant="t", received_at_ms=1_700_000_000_000, batch_sent_at=None, rules=RULES)
    props = orjson.loads(event["properties"])
    assert "text" not in props
    assert props["text_sentiment"]["label"] == "negative"  # computed here: the client's value is dropped
    assert props["text_sentiment"]["score"] < 0


def test_a_survey_comment_leaves_as_its_sentiment_only() -> None:
    msg = {
        "type": "track", "event": "Survey Answered", "userId": "u-1", "messageId": "m-2",
        "properties": {"survey": "nps", "score": 9, "comment": "Great service, thanks! ann@example.com"},
        "context": {"locale": "en-US"},
    }  # fmt: skip
    event = normalize(msg, tenant="t", received_at_ms=1_700_000_000_000, batch_sent_at=None, rules=RULES)
    props = orjson.loads(event["properties"])
    assert set(props) == {"survey", "score", "comment_sentiment"}
    assert props["comment_sentiment"]["label"] == "positive"


def test_the_issue_fields_never_leave_in_clear() -> None:
    msg = {
        "type": "identify", "userId": "u-1", "messageId": "m-3",
        "traits": {"phone": "+33612345678", "ip": "203.0.113.9", "address": {"email": "deep@example.com"}},
        "context": {"ip": "203.0.113.9", "page": {"url": "https://s.test/?email=page%40example.com"}},
    }  # fmt: skip
    track = {
        "type": "track", "event": "Thing", "userId": "u-1", "messageId": "m-4",
        "properties": {"customer": {"email": "cust@example.com", "ip": "198.51.100.7"}},
    }  # fmt: skip
    out = b"".join(
        orjson.dumps(normalize(m, tenant="t", received_at_ms=1_700_000_000_000, batch_sent_at=None, rules=RULES))
        for m in (msg, track)
    ).lower()
    for planted in (b"+33612345678", b"203.0.113.9", b"deep@example.com", b"page%40example.com", b"cust@example.com",
                    b"198.51.100.7"):  # fmt: skip
        assert planted not in out


def test_dead_letter_payload_is_scrubbed_even_when_not_json() -> None:
    assert S.payload(b'{"batch": [{"email": "x@y.fr"') == f'{{"batch": [{{"email_hash":"{h("x@y.fr")}"'
    assert "x@y.fr" not in S.payload(b'{"userId": 1, "properties": {"email": "x@y.fr"}}')


@pytest.mark.integration
def test_planted_personal_values_never_reach_kafka_in_clear() -> None:
    """End to end through a running collector: the raw bytes on cx.events and cx.deadletter hold none of them."""
    import requests

    from pipeline.supervisor.broker import EmbeddedBroker
    from pipeline.supervisor.ports import free_port
    from pipeline.settings import Settings
    from pipeline.wire.topics import ensure_topics
    from tests.collector.conftest import basic
    from tests.collector.harness import CollectorThread, read_topic

    planted = [b"planted@example.com", b"+33699887766", b"192.0.2.77", b"deep@example.org", b"url%40example.net"]
    batch = [
        {"type": "identify", "userId": "u-9", "messageId": "p-1",
         "traits": {"phone": "+33699887766", "address": {"email": "deep@example.org"}}, "context": {"ip": "192.0.2.77"}},
        {"type": "page", "anonymousId": "a-9", "messageId": "p-2",
         "properties": {"url": "https://s.test/?email=url%40example.net", "customer": {"email": "planted@example.com"}}},
        {"type": "track", "event": "Product Added", "anonymousId": "a-9", "messageId": "p-3",
         "properties": {"contact": "write to planted@example.com"}},  # a dead letter: no product_id
    ]  # fmt: skip
    with EmbeddedBroker() as broker:
        settings = Settings(
            _env_file=None, kafka_bootstrap=broker.bootstrap, kafka_partitions=1, collector_port=free_port(),
            collector_metrics_port=0,  # any free port: tests run side by side
            topic_events="pii.events", topic_deadletter="pii.deadletter", topic_triggers="pii.triggers",
            write_keys="wk_pii=shop-pii", pii_salt="pii-e2e-salt",
        )  # fmt: skip
        ensure_topics(settings, broker.bootstrap)
        collector = CollectorThread(settings, broker.bootstrap).start()
        try:
            resp = requests.post(f"{collector.url}/v1/batch", json={"batch": batch}, headers=basic("wk_pii"), timeout=10)
            assert resp.status_code == 200
            events = read_topic(broker.bootstrap, "pii.events", lambda r: len(r) >= 1, timeout_s=10)
            dead = read_topic(broker.bootstrap, "pii.deadletter", lambda r: len(r) >= 1, timeout_s=10)
        finally:
            collector.stop()
    raw = b"".join(m.value() for m in events + dead).lower()
    assert events and dead
    assert b"p-2" in raw and b"missing_property" in raw  # the records are there...
    for value in planted:
        assert value.lower() not in raw  # ...without the planted values


def test_text_without_personal_data_is_remembered_and_text_with_it_never_is() -> None:
    scrubber = Scrubber(SALT, ("email", "phone", "ip", "address"))
    title = "Accessoires | Maison Lumière"
    mail = "write to ann@example.com"
    assert scrubber.text(title) == title
    assert scrubber.text(mail) == f"write to email_hash:{h('ann@example.com')}"
    assert title in scrubber._clean and mail not in scrubber._clean
    # Asked again, the remembered answer and the computed one are the same.
    assert scrubber.text(title) == title
    assert scrubber.text(mail) == f"write to email_hash:{h('ann@example.com')}"


def test_long_text_is_never_remembered() -> None:
    scrubber = Scrubber(SALT, ("email",))
    long_text = "a" * 257
    assert scrubber.text(long_text) == long_text
    assert scrubber.text("a" * 256) == "a" * 256
    assert scrubber._clean == {"a" * 256}


def test_the_remembered_texts_start_again_empty_when_full(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pipeline.collector.pii.CLEAN_TEXTS_MAX", 3)
    scrubber = Scrubber(SALT, ("email",))
    for text in ("a", "b", "c", "d"):
        scrubber.text(text)
    assert scrubber._clean == {"d"}


@pytest.mark.parametrize(
    "text",
    ["06 12 34 56 78", "call 0612345678 now", "tel: +33 6 12 34 56 78", "١٢٣٤٥٦٧٨٩٠ (arabic-indic digits)",
     "order 12345678", "2026-01-05 10:00", "p-1051 ML-ACC-001 12/3", "Maison Lumière 415-555-0100"],
)
def test_the_digit_count_before_the_phone_search_changes_no_answer(text: str) -> None:
    # The count in C only spares the pattern for text with fewer than nine digits.
    import re

    from pipeline.collector import pii

    slow_may = re.compile(r"(?:\d[^\d]{0,3}){8}\d").search(text) is not None
    assert pii._may_hold_phone(text) == slow_may


@settings(max_examples=500, deadline=None)
@given(st.text(st.sampled_from("0123456789٣٤۵ -./()+x%é"), max_size=30))
def test_the_digit_count_agrees_with_the_phone_condition_on_any_text(text: str) -> None:
    import re

    from pipeline.collector import pii

    assert pii._may_hold_phone(text) == (re.compile(r"(?:\d[^\d]{0,3}){8}\d").search(text) is not None)


def test_a_dead_letter_detail_names_the_error_never_the_value() -> None:
    from pipeline.wire.records import BadRecord, DeadLetter, error_detail

    planted = "quoted.value@example.com"
    try:
        DeadLetter.model_validate_json(orjson.dumps({"reason": planted, planted: 1}))
    except Exception as exc:  # noqa: BLE001
        validation = exc
    try:
        int(planted)
    except ValueError as exc:
        conversion = exc
    try:
        orjson.loads(b"{" + planted.encode())
    except orjson.JSONDecodeError as exc:
        decoding = exc
    assert error_detail(validation) == "ValidationError: dl_id: missing; reason: literal_error; payload: missing and 3 more"
    assert error_detail(conversion) == "ValueError"
    assert error_detail(KeyError(planted)) == "KeyError"
    assert error_detail(decoding).startswith("JSONDecodeError: unexpected character")
    assert error_detail(BadRecord("schema_violation", "event 0: tenant is missing or not str")) == (
        "event 0: tenant is missing or not str"
    )
    from pydantic import BaseModel, ConfigDict

    class Strict(BaseModel):
        model_config = ConfigDict(extra="forbid")
        a: int

    try:
        Strict.model_validate({"a": 1, planted: 2})
    except Exception as exc:  # noqa: BLE001
        by_key = exc
    assert error_detail(by_key) == "ValidationError: ?: extra_forbidden"  # a key that is no field name is not quoted
    assert not any(planted in error_detail(e) for e in (validation, conversion, decoding, KeyError(planted), by_key))
