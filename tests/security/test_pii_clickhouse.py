"""End to end on a real broker and both ClickHouse backends: planted personal values are nowhere in ClickHouse.

Personal values are sent through the collector of a running pipeline:
under personal keys at several depths (traits, nested properties, an address
object four levels down), in `context.ip`, in page URLs and referrers (query
string and path), in free text (a search query, an error message, a click
selector, a property of no personal name), in a support message's text and a
survey comment, and in input that becomes dead letters (an event missing a
required property, an envelope of the wrong shape, a message nested past the
depth limit, a body that is not JSON). Once everything is stored, every cell
of every table and view of the `cx` database is rendered as text and
searched, case-insensitively, for each planted value in its sent forms.

Not planted, because the scrubber does not claim to find them
(docs/privacy.md): an ip address or a street address in free text.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from pathlib import Path

import orjson
import pytest
import requests

from pipeline.settings import Settings
from sinks.client import connect
from tests.integration.helpers import BACKENDS, e2e_pipeline, scalar, wait_until

pytestmark = pytest.mark.integration

WRITE_KEY = "wk_pii_ch"

# Each planted value, in every form it was sent in (a search is case-insensitive).
EMAIL_KEY = "alpha.key@planted.example"  # traits.email (identify), and under properties.customer.contact
EMAIL_DEEP_TEXT = "beta.deep@planted.example"  # free text four levels down in properties
EMAIL_URL = "gamma.url@planted.example"  # page url query string (?email=, %40) and a path
EMAIL_REFERRER = "eta.ref@planted.example"  # page referrer
EMAIL_SUPPORT = "delta.support@planted.example"  # support message text
EMAIL_SURVEY = "epsilon.survey@planted.example"  # survey comment
EMAIL_SEARCH = "theta.search@planted.example"  # a search query
EMAIL_ERROR = "iota.error@planted.example"  # an error message
EMAIL_CLICK = "kappa.click@planted.example"  # a click selector (mailto link)
EMAIL_DEAD = "zeta.dead@planted.example"  # free text of an invalid event
EMAIL_SHAPE = "lambda.shape@planted.example"  # userId of the wrong shape (schema_violation)
EMAIL_NEST = "mu.nest@planted.example"  # a message nested past the depth limit
EMAIL_NEST_KEY = "nu.nestkey@planted.example"  # the same message, under customerEmail
EMAIL_NOT_JSON = "xi.notjson@planted.example"  # a body that is not JSON
PHONE_KEY = "+1 212 555 0147"  # traits.phone
PHONE_TEXT = "+33 6 99 88 77 66"  # free text in properties
PHONE_SUPPORT = "(415) 555-0199"  # support text
PHONE_DEAD = "+44 20 7946 0958"  # invalid event's free text
IP_CONTEXT = "198.51.100.77"  # context.ip
IP_DEEP = "203.0.113.199"  # properties.device.network.client_ip
IP_TRAIT = "192.0.2.201"  # traits.ip
IP_DEAD = "192.0.2.222"  # invalid event's buyer.ip
ADDRESS_TRAIT = "17 Planted Lane"  # traits.address.street
ADDRESS_DEEP = "42 Hidden Road"  # properties.order.shipping.billing_address.line1
ADDRESS_DEAD = "9 Leak Street"  # invalid event's buyer.address

PLANTED = {
    value: forms
    for value, forms in {
        **{e: [e, e.replace("@", "%40")] for e in (
            EMAIL_KEY, EMAIL_DEEP_TEXT, EMAIL_URL, EMAIL_REFERRER, EMAIL_SUPPORT, EMAIL_SURVEY, EMAIL_SEARCH,
            EMAIL_ERROR, EMAIL_CLICK, EMAIL_DEAD, EMAIL_SHAPE, EMAIL_NEST, EMAIL_NEST_KEY, EMAIL_NOT_JSON,
        )},
        **{p: [p, "".join(c for c in p if c.isdigit() or c == "+")] for p in (
            PHONE_KEY, PHONE_TEXT, PHONE_SUPPORT, PHONE_DEAD,
        )},
        **{v: [v] for v in (IP_CONTEXT, IP_DEEP, IP_TRAIT, IP_DEAD, ADDRESS_TRAIT, ADDRESS_DEEP, ADDRESS_DEAD)},
        # Local parts alone, in case a value were cut at its "@".
        **{f"{e}-local": [e.split("@")[0]] for e in (EMAIL_KEY, EMAIL_URL, EMAIL_SUPPORT, EMAIL_DEAD, EMAIL_NEST)},
    }.items()
}  # fmt: skip


def _ts(day: dt.date, minute: int) -> str:
    return f"{day.isoformat()}T10:{minute:02d}:00.000Z"


def _messages(day: dt.date) -> tuple[list[dict], list[dict]]:
    """(valid messages, invalid ones) of one batch."""
    anon, user = "anon-pii", "u-pii"
    valid = [
        {"type": "identify", "anonymousId": anon, "userId": user, "messageId": "pii-1", "timestamp": _ts(day, 0),
         "traits": {"email": EMAIL_KEY, "phone": PHONE_KEY, "ip": IP_TRAIT, "consent_marketing": True,
                    "address": {"street": ADDRESS_TRAIT, "city": "Lyon"}},
         "context": {"ip": IP_CONTEXT}},
        {"type": "page", "anonymousId": anon, "userId": user, "messageId": "pii-2", "timestamp": _ts(day, 1),
         "properties": {"path": f"/account/{EMAIL_URL}/orders",
                        "url": f"https://shop.test/account?email={EMAIL_URL.replace('@', '%40')}&ref=nl",
                        "referrer": f"https://mail.test/read?from={EMAIL_REFERRER}"},
         "context": {"ip": IP_CONTEXT, "page": {"url": f"https://shop.test/?to={EMAIL_URL}"}}},
        {"type": "track", "event": "Product Viewed", "anonymousId": anon, "userId": user, "messageId": "pii-3",
         "timestamp": _ts(day, 2),
         "properties": {"product_id": "p-1", "price": 10,
                        "customer": {"contact": {"email": EMAIL_KEY, "note": f"call {PHONE_TEXT}"}},
                        "device": {"network": {"client_ip": IP_DEEP}},
                        "order": {"shipping": {"billing_address": {"line1": ADDRESS_DEEP}}},
                        "a": {"b": {"c": {"d": f"write to {EMAIL_DEEP_TEXT} please"}}}}},
        {"type": "track", "event": "Products Searched", "anonymousId": anon, "userId": user, "messageId": "pii-4",
         "timestamp": _ts(day, 3), "properties": {"query": EMAIL_SEARCH, "results_count": 0}},
        {"type": "track", "event": "Error Shown", "anonymousId": anon, "userId": user, "messageId": "pii-5",
         "timestamp": _ts(day, 4),
         "properties": {"kind": "validation", "message": f"{EMAIL_ERROR} is already registered"}},
        {"type": "track", "event": "Element Clicked", "anonymousId": anon, "userId": user, "messageId": "pii-6",
         "timestamp": _ts(day, 5), "properties": {"selector": f"a[href='mailto:{EMAIL_CLICK}']"}},
        {"type": "track", "event": "Support Ticket Opened", "userId": user, "messageId": "pii-7",
         "timestamp": _ts(day, 6), "properties": {"ticket_id": "t-pii", "channel": "chat"}},
        {"type": "track", "event": "Support Message Sent", "userId": user, "messageId": "pii-8",
         "timestamp": _ts(day, 7), "context": {"locale": "en-US"},
         "properties": {"ticket_id": "t-pii", "author": "customer",
                        "text": f"Terrible, my parcel never came. Mail {EMAIL_SUPPORT} or call {PHONE_SUPPORT}, "
                                f"I live at {ADDRESS_TRAIT}"}},
        {"type": "track", "event": "Survey Answered", "userId": user, "messageId": "pii-9",
         "timestamp": _ts(day, 8), "context": {"locale": "en-US"},
         "properties": {"survey": "csat", "score": 2, "ticket_id": "t-pii",
                        "comment": f"slow answer, write to {EMAIL_SURVEY}"}},
    ]  # fmt: skip
    deep: object = {"end": True}
    for _ in range(300):
        deep = {"n": deep}
    invalid = [
        # missing_property: Product Added without product_id
        {"type": "track", "event": "Product Added", "anonymousId": anon, "messageId": "pii-10",
         "timestamp": _ts(day, 9),
         "properties": {"price": 5, "contact": f"mail {EMAIL_DEAD} or {PHONE_DEAD}",
                        "buyer": {"address": ADDRESS_DEAD, "ip": IP_DEAD}}},
        # schema_violation: userId must be a string
        {"type": "track", "event": "Thing", "userId": {"email": EMAIL_SHAPE}, "messageId": "pii-11"},
        # bad_json: nested past the depth limit, personal values near the top
        {"type": "track", "event": "Thing", "anonymousId": anon, "messageId": "pii-12",
         "properties": {"note": f"mail {EMAIL_NEST}", "customerEmail": EMAIL_NEST_KEY, "deep": deep}},
    ]  # fmt: skip
    return valid, invalid


def _post(url: str, body: bytes) -> requests.Response:
    auth = base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
    return requests.post(
        f"{url}/v1/batch", data=body, headers={"Authorization": f"Basic {auth}", "Content-Type": "application/json"},
        timeout=30,
    )  # fmt: skip


def _every_cell_as_text(url: str) -> tuple[dict[str, int], str]:
    """(rows per table or view of the cx database, every cell of every one of them as text)."""
    ch = connect(url)
    try:
        # cx.event_id_set (engine Set) holds 8-byte hashes of ids and cannot be read back.
        names = [
            r[0] for r in ch.execute("SELECT name FROM system.tables WHERE database = 'cx' AND engine != 'Set' ORDER BY name")
        ]
        counts: dict[str, int] = {}
        parts: list[str] = []
        for name in names:
            rows = ch.execute(f"SELECT * FROM cx.{name}")
            counts[name] = len(rows)
            parts += ["\t".join(map(str, row)) for row in rows]
    finally:
        ch.close()
    return counts, "\n".join(parts)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> pytest.FixtureRequest:
    """``e2e_pipeline``'s request: its ``param`` names the ClickHouse backend."""
    return request


def test_planted_personal_values_are_nowhere_in_clickhouse(
    backend: pytest.FixtureRequest, kafka: str, fresh_settings: Settings, tmp_path: Path
) -> None:
    day = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)).date()
    valid, invalid = _messages(day)
    with e2e_pipeline(backend, kafka, fresh_settings, tmp_path, WRITE_KEY) as pipeline:
        tenant = pipeline.tenant
        # json, not orjson: orjson writes at most 254 levels and one message nests 300
        resp = _post(pipeline.collector_url, json.dumps({"batch": valid + invalid}).encode())
        assert resp.status_code == 200, resp.text
        not_json = b'{"batch": [{"type": "identify", "userId": "u-x", "traits": {"email": "%s"' % EMAIL_NOT_JSON.encode()
        assert _post(pipeline.collector_url, not_json).status_code == 400
        wait_until(
            lambda: scalar(pipeline, f"SELECT count() FROM cx.events FINAL WHERE tenant = '{tenant}'") == len(valid),
            what=f"{len(valid)} stored events",
        )
        wait_until(
            lambda: scalar(pipeline, f"SELECT count() FROM cx.deadletters FINAL WHERE tenant = '{tenant}'") == 4,
            what="4 dead letters",
        )
        wait_until(lambda: pipeline.lag() == 0, what="the worker caught up")
        _, reasons = pipeline.query(
            f"SELECT reason, events FROM cx.deadletter_daily WHERE tenant = '{tenant}' ORDER BY reason"
        )
        assert [tuple(r) for r in reasons] == [("bad_json", 2), ("missing_property", 1), ("schema_violation", 1)]
        url = pipeline.settings.resolved_clickhouse_url
        salt = pipeline.settings.pii_salt

    counts, text = _every_cell_as_text(url)
    # The scan covers what was stored: the tables hold this run's rows, in clear
    # where they should be, and hashes where a personal value was.
    for table in ("events", "deadletters", "support_tickets", "support_messages", "surveys", "friction",
                  "kpi_daily", "deadletter_daily"):  # fmt: skip
        assert counts[table] > 0, table
    assert all(f"pii-{i}" in text for i in (1, 3, 9)) and "t-pii" in text
    assert hashlib.sha256((salt + EMAIL_KEY).encode()).hexdigest() in text
    assert hashlib.sha256((salt + IP_CONTEXT).encode()).hexdigest() in text
    lowered = text.lower()
    found = {value: form for value, forms in PLANTED.items() for form in forms if form.lower() in lowered}
    assert found == {}, f"personal values in clear in ClickHouse: {found}"
    # The dead letters' payloads are there (scrubbed), not emptied: the
    # missing_property one still names its event.
    ch = connect(url)
    try:
        payloads = [
            orjson.loads(p) if p else None
            for (p,) in ch.execute(
                "SELECT payload FROM cx.deadletters FINAL WHERE tenant = %(t)s AND reason = 'missing_property'",
                {"t": tenant},
            )
        ]
    finally:
        ch.close()
    assert payloads and payloads[0]["messageId"] == "pii-10"
