"""Fuzzing the collector's HTTP API of a running pipeline: no input gets a 500 or stops a process.

One pipeline (embedded chdb store, the session's broker) serves the whole
module. After each example a sentinel good event is posted; the checks that
need the worker (events stored, dead letters) run once at the end of each
test, when the worker has committed everything.
"""

from __future__ import annotations

import base64
import gzip
from urllib.parse import quote
from pathlib import Path
from typing import Iterator

import orjson
import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.conftest import RUN_LENGTHS, FuzzPipeline, Ledger, fuzz_settings, start_fuzz_pipeline
from tests.fuzz.strategies import bad_messages, good_messages, json_values, letters_id, raw_bodies
from tests.fixtures.report import tell

pytestmark = pytest.mark.integration

# The answers docs/events.md and docs/security.md document for a POST to an API route
# (403 needs an Origin header, which these requests do not send; 404 an unknown route).
DOCUMENTED = {200, 400, 401, 408, 503}
CALLS = ["batch", "b", "track", "t", "page", "p", "identify", "i", "screen", "s", "group", "g", "alias", "a"]
ROUTES = [f"{prefix}/v1/{call}" for prefix in ("", "/beacon") for call in CALLS]
# Write keys that are not the tenant's: header values a client can send (latin-1, no line breaks), basic
# credentials that do not decode or name no key, and for a body's writeKey any JSON value.
_HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=60)
ODD_KEYS = st.one_of(
    st.none(),
    _HEADER_TEXT.map(lambda t: "Basic " + t),
    st.binary(max_size=40).map(lambda b: "Basic " + base64.b64encode(b).decode()),
    _HEADER_TEXT,
    st.sampled_from(["Bearer wk_raw", "basic", "Basic =", "Basic d2tfcmF3Cg==", "BASIC Og==", "Basic 6Q=="]),
    json_values(4).filter(lambda v: not isinstance(v, str)),
)


@pytest.fixture(scope="module")
def fuzz(kafka: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzPipeline]:
    yield from start_fuzz_pipeline(kafka, tmp_path_factory.mktemp("fuzz-http"), "http", ["raw", "mixed", "sentinel"])


def _basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def _post(fuzz: FuzzPipeline, ledger: Ledger, path: str, body: bytes, headers: dict[str, str]) -> int:
    answer = requests.post(fuzz.running.collector_url + path, data=body, headers=headers, timeout=60)
    ledger.status(answer.status_code)
    assert answer.status_code in DOCUMENTED, f"{path} answered {answer.status_code}: {answer.text[:300]}"
    if answer.status_code != 200:
        assert answer.json()["success"] is False  # the collector's JSON error, never aiohttp's text page
    return answer.status_code


def _sentinel(fuzz: FuzzPipeline, ledger: Ledger) -> None:
    """A good event right after an example: it must be acknowledged now, and stored by the end."""
    sid = letters_id("fzsentinel")
    body = orjson.dumps({"type": "track", "event": "Fuzz Sentinel", "anonymousId": "s", "messageId": sid})
    assert _post(fuzz, ledger, "/v1/track", body, _basic(fuzz.key("sentinel"))) == 200
    ledger.sentinels.append(sid)


def _assert_sentinels_stored_once(fuzz: FuzzPipeline, ledger: Ledger) -> None:
    tenant = fuzz.keys[fuzz.key("sentinel")]
    ids = ledger.sentinels
    rows = fuzz.query(
        f"SELECT event_id, count() FROM cx.events FINAL WHERE tenant = '{tenant}' "
        f"AND event_id IN ({', '.join(repr(i) for i in ids)}) GROUP BY event_id"
    )
    stored = {event_id: n for event_id, n in rows}
    assert sorted(stored) == sorted(ids), f"{len(set(ids) - set(stored))} sentinel events not stored"
    assert set(stored.values()) == {1}


def _dead_letters_naming(fuzz: FuzzPipeline, ids: list[str]) -> dict[str, list]:
    """For a failure message: the dead letters (any tenant) whose payload names each id."""
    rows = fuzz.query("SELECT reason, source, detail, payload FROM cx.deadletters FINAL")
    return {i: [(r, src, d[:300], p[:300]) for r, src, d, p in rows if f'"{i}"' in p] for i in ids}


@pytest.mark.parametrize("run", RUN_LENGTHS)
def test_arbitrary_bodies_on_every_route_get_a_documented_answer_and_stop_nothing(
    fuzz: FuzzPipeline, run: str, request: pytest.FixtureRequest
) -> None:
    ledger = Ledger()
    tenant = fuzz.keys[fuzz.key("raw")]
    dl_before = fuzz.scalar(f"SELECT count() FROM cx.deadletters FINAL WHERE tenant = '{tenant}'")
    refused_with_key = 0

    @fuzz_settings(run, bounded_examples=60)
    @given(
        body_headers=raw_bodies(),
        route=st.sampled_from(ROUTES),
        auth=st.sampled_from(["header", "header", "query", "body", "wrong-header", "wrong-query", "none"]),
        odd_key=ODD_KEYS,
    )
    def example(body_headers: tuple[bytes, dict[str, str]], route: str, auth: str, odd_key: object) -> None:
        nonlocal refused_with_key
        body, headers = body_headers
        key = fuzz.key("raw")
        path = route
        if auth == "header":
            headers = {**headers, **_basic(key)}
        elif auth == "wrong-header":  # any header text an HTTP client can send: not basic, not base64, not a key
            odd = odd_key.lstrip() if isinstance(odd_key, str) else ""
            headers = {**headers, "Authorization": odd or "Basic"}
        elif auth in ("query", "wrong-query"):
            path += "?writeKey=" + (key if auth == "query" else quote(str(odd_key), safe=""))
        elif auth == "body" and "Content-Encoding" not in headers:
            try:
                value = orjson.loads(body)
            except orjson.JSONDecodeError:
                value = None
            if isinstance(value, dict):  # the right key, or the odd one (any JSON type) in its place
                try:
                    body = orjson.dumps({**value, "writeKey": key if odd_key is None else odd_key})
                except TypeError:  # nested past what orjson writes (254): sent as it came, without a key
                    pass
        status = _post(fuzz, ledger, path, body, headers)
        if auth in ("wrong-header", "wrong-query"):
            assert status == 401  # decided before any body byte is read
        elif auth == "none" or (auth == "body" and odd_key is not None):  # no key, or one that names no tenant
            assert status in (400, 401)  # 400 when the body cannot be read for a key: nothing produced either
        if status == 400 and auth in ("header", "query"):
            refused_with_key += 1  # the refusal is kept as a dead letter of the key's tenant
        ledger.examples += 1
        _sentinel(fuzz, ledger)

    example()
    fuzz.drain()
    _assert_sentinels_stored_once(fuzz, ledger)
    dead = fuzz.scalar(f"SELECT count() FROM cx.deadletters FINAL WHERE tenant = '{tenant}'") - dl_before
    assert dead >= refused_with_key
    tell(request.config, ledger.summary(f"fuzz http raw [{run}]", refused_with_key=refused_with_key,
                                        dead_letters=dead))


@pytest.mark.parametrize("run", RUN_LENGTHS)
def test_each_good_message_is_stored_once_and_each_bad_one_is_a_dead_letter(
    fuzz: FuzzPipeline, run: str, request: pytest.FixtureRequest
) -> None:
    ledger = Ledger()
    good_ids: list[str] = []
    bad: dict[str, str] = {}  # message id -> the field made wrong
    sent: dict[str, dict] = {}  # good message id -> the message
    key = fuzz.key("mixed")
    tenant = fuzz.keys[key]

    @fuzz_settings(run, bounded_examples=25)
    @given(
        kinds=st.lists(st.booleans(), min_size=1, max_size=8),
        data=st.data(),
        transport=st.sampled_from(["header", "beacon", "body-key", "gzip"]),
    )
    def example(kinds: list[bool], data: st.DataObject, transport: str) -> None:
        batch, goods, bads = [], [], {}
        for is_good in kinds:  # a draw may still abort the example: nothing is recorded before the post
            mid = letters_id("fzgood" if is_good else "fzbad")
            if is_good:
                batch.append(data.draw(good_messages(mid)))
                goods.append(mid)
            else:
                msg, bads[mid] = data.draw(bad_messages(mid))
                batch.append(msg)
            sent[mid] = batch[-1]
        body = orjson.dumps({"batch": batch}) if transport != "body-key" else orjson.dumps({"batch": batch, "writeKey": key})
        headers = {"Content-Type": "text/plain" if transport == "beacon" else "application/json"}
        path = "/v1/batch"
        if transport == "header":
            headers.update(_basic(key))
        elif transport == "beacon":
            path = f"/beacon/v1/batch?writeKey={key}"
        elif transport == "gzip":
            body = gzip.compress(body)
            headers.update({**_basic(key), "Content-Encoding": "gzip"})
        assert _post(fuzz, ledger, path, body, headers) == 200
        good_ids.extend(goods)
        bad.update(bads)
        ledger.examples += 1
        _sentinel(fuzz, ledger)

    example()
    fuzz.drain()
    _assert_sentinels_stored_once(fuzz, ledger)
    rows = fuzz.query(f"SELECT event_id, count() FROM cx.events FINAL WHERE tenant = '{tenant}' GROUP BY event_id")
    stored = {event_id: n for event_id, n in rows if event_id in sent}  # this test's (the module runs it twice)
    assert sorted(set(stored) & set(bad)) == [], "events stored that the collector should have refused"
    lost = sorted(set(good_ids) - set(stored))
    assert lost == [], (f"accepted good events not stored: {_dead_letters_naming(fuzz, lost)}; "
                        f"sent: {[orjson.dumps(sent[i])[:500] for i in lost]}")
    assert set(stored.values()) <= {1}
    letters = fuzz.query(f"SELECT reason, payload FROM cx.deadletters FINAL WHERE tenant = '{tenant}'")
    found: dict[str, str] = {}
    for reason, payload in letters:
        for mid in bad:
            if f"\"{mid}\"" in payload:
                found[mid] = reason
    missing = {mid: field for mid, field in bad.items() if mid not in found}
    assert missing == {}, (f"bad messages without a dead letter: {missing}; "
                           f"sent: {[orjson.dumps(sent[i])[:500] for i in missing]}")
    expected_reason = {"type": {"unknown_type"}, "too-deep": {"bad_json"}, "too-old": {"too_old", "too_far_future"}}
    for mid, field in bad.items():
        assert found[mid] in expected_reason.get(field, {"schema_violation"}), (mid, field, found[mid])
    fuzz.assert_alive()
    tell(request.config, ledger.summary(f"fuzz http mixed [{run}]", good=len(good_ids), bad=len(bad)))
