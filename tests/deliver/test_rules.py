"""The delivery rules without a network: signatures, retry decisions, Retry-After, backoff, commit order, config."""

from __future__ import annotations

import json
from email.utils import formatdate
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.deliver.config import ConfigError, load_destinations, parse_destinations
from pipeline.deliver.send import RateLimiter, backoff_s, classify, retry_after_s
from pipeline.deliver.service import Offsets, heartbeat_ms, routable_trigger
from pipeline.deliver.signing import sign, verify
from pipeline.settings import Settings

SETTINGS = Settings(_env_file=None)
GOOD = {"name": "esp", "url": "https://hooks.example.com/cx?token=abc", "secret": "s3cret-s3cret-s3cret"}


def test_signature_is_hmac_sha256_of_timestamp_dot_body_in_hex() -> None:
    # Computed by hand: printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac key-0123456789abcdef
    header = sign(b"key-0123456789abcdef", b'{"a":1}', 1_700_000_000)
    assert header == "t=1700000000,v1=8a091117e0b1ccf5034d0d8c06ab42b29a4451a72f95b56f22afaf6bfb7af0d3"


def test_signature_check_refuses_other_body_other_secret_and_old_timestamp() -> None:
    header = sign(b"key-0123456789abcdef", b'{"a":1}', 1_700_000_000)
    assert verify(b"key-0123456789abcdef", header, b'{"a":1}', now=1_700_000_100)
    assert not verify(b"key-0123456789abcdef", header, b'{"a":2}', now=1_700_000_100)
    assert not verify(b"another-key-0123456", header, b'{"a":1}', now=1_700_000_100)
    assert not verify(b"key-0123456789abcdef", header, b'{"a":1}', now=1_700_000_301)
    assert not verify(b"key-0123456789abcdef", "v1=00", b'{"a":1}', now=1_700_000_000)


@pytest.mark.parametrize(
    ("status", "verdict"),
    [(200, "delivered"), (202, "delivered"), (204, "delivered"), (0, "retry"), (408, "retry"), (429, "retry"),
     (500, "retry"), (502, "retry"), (503, "retry"), (400, "permanent"), (401, "permanent"), (404, "permanent"),
     (410, "permanent"), (422, "permanent"), (301, "permanent")],
)  # fmt: skip
def test_status_decides_retry_or_permanent(status: int, verdict: str) -> None:
    assert classify(status) == verdict


def test_retry_after_in_seconds_and_as_http_date() -> None:
    now = 1_700_000_000.0
    assert retry_after_s("7", now) == 7.0
    assert retry_after_s(formatdate(now + 30, usegmt=True), now) == 30.0
    assert retry_after_s(formatdate(now - 30, usegmt=True), now) == 0.0  # a date in the past: at once
    assert retry_after_s("soon", now) is None
    assert retry_after_s(None, now) is None
    assert retry_after_s("-3", now) is None


def test_backoff_is_full_jitter_doubling_and_capped() -> None:
    assert backoff_s(1, 0.5, 60, rand=lambda: 1.0) == 0.5
    assert backoff_s(4, 0.5, 60, rand=lambda: 1.0) == 4.0
    assert backoff_s(20, 0.5, 60, rand=lambda: 1.0) == 60.0
    assert backoff_s(4, 0.5, 60, rand=lambda: 0.25) == 1.0
    assert backoff_s(1000, 0.5, 60, rand=lambda: 1.0) == 60.0


def test_rate_limit_spaces_the_starts_of_a_destination() -> None:
    import asyncio
    import time

    async def eleven_starts() -> float:
        limiter = RateLimiter(20.0)
        started = time.monotonic()
        for _ in range(11):
            await limiter.acquire()
        return time.monotonic() - started

    assert 0.5 <= asyncio.run(eleven_starts()) < 1.5  # 10 intervals of 50 ms
    assert RateLimiter(0).interval == 0.0  # no limit


def test_commit_waits_for_the_first_unfinished_record_of_its_partition() -> None:
    offsets = Offsets()
    for offset in (10, 11, 12, 13):
        offsets.take("cx.triggers", 0, offset)
    offsets.take("cx.triggers", 1, 5)
    offsets.done("cx.triggers", 0, 12)
    offsets.done("cx.triggers", 0, 13)
    assert offsets.take_due() == []  # 10 and 11 are not done: nothing may be committed
    offsets.done("cx.triggers", 0, 10)
    assert [(tp.partition, tp.offset) for tp in offsets.take_due()] == [(0, 11)]
    offsets.done("cx.triggers", 0, 11)
    offsets.done("cx.triggers", 1, 5)
    assert sorted((tp.partition, tp.offset) for tp in offsets.take_due()) == [(0, 14), (1, 6)]
    assert offsets.inflight() == 0


def test_records_of_a_revoked_partition_are_never_committed() -> None:
    offsets = Offsets()
    offsets.take("cx.triggers", 0, 3)
    offsets.forget([("cx.triggers", 0)])
    offsets.done("cx.triggers", 0, 3)
    assert offsets.take_due() == []


def test_destination_filters_take_only_their_kinds_actions_and_tenants() -> None:
    (d,) = parse_destinations({"destination": [GOOD | {"kinds": ["cart_abandoned"], "actions": ["offer"], "tenants": ["a"]}]}, SETTINGS)
    assert d.wants({"kind": "cart_abandoned", "action": "offer", "tenant": "a"})
    assert not d.wants({"kind": "support_risk", "action": "offer", "tenant": "a"})
    assert not d.wants({"kind": "cart_abandoned", "action": "none", "tenant": "a"})
    assert not d.wants({"kind": "cart_abandoned", "action": "offer", "tenant": "b"})
    (every,) = parse_destinations({"destination": [GOOD]}, SETTINGS)
    assert every.wants({"kind": "support_risk", "action": "none", "tenant": "z"})
    assert (every.max_attempts, every.timeout_s, every.rate_per_s) == (8, 10.0, 0.0)  # the settings' defaults


def test_secret_never_shows_in_repr_or_logged_url() -> None:
    (d,) = parse_destinations({"destination": [GOOD]}, SETTINGS)
    assert "s3cret" not in repr(d)
    assert d.where == "https://hooks.example.com/cx"  # no query string (it may hold a token)


@pytest.mark.parametrize(
    ("destination", "message"),
    [
        (GOOD | {"kinds": ["cart_abandonned"]}, "kinds: unknown 'cart_abandonned'"),
        (GOOD | {"actions": ["discount"]}, "actions: unknown 'discount'"),
        (GOOD | {"secret_env": "X"}, "give exactly one of secret and secret_env"),
        ({k: v for k, v in GOOD.items() if k != "secret"}, "give exactly one of secret and secret_env"),
        (GOOD | {"secret": "short"}, "at least 16 characters"),
        (GOOD | {"url": "ftp://x/y"}, "url: expected an http:// or https:// URL"),
        (GOOD | {"max_attempts": 0}, "max_attempts: must be within 1..100"),
        (GOOD | {"rate_per_s": "fast"}, "rate_per_s: expected a number"),
        (GOOD | {"retries": 3}, "unknown key(s) 'retries'"),
        (GOOD | {"name": "has space"}, "name: expected letters"),
    ],
)
def test_wrong_destination_is_refused_naming_the_key(destination: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_destinations({"destination": [destination]}, SETTINGS, "hooks.toml")
    assert message in str(err.value)
    assert "s3cret" not in str(err.value)


def test_secret_env_names_a_variable_that_must_be_set(tmp_path: Path) -> None:
    raw = {"name": "esp", "url": "https://h.example/x", "secret_env": "HOOK_SECRET"}
    with pytest.raises(ConfigError, match="HOOK_SECRET is not set"):
        parse_destinations({"destination": [raw]}, SETTINGS, environ={})
    (d,) = parse_destinations({"destination": [raw]}, SETTINGS, environ={"HOOK_SECRET": "from-the-environment"})
    assert d.secret == b"from-the-environment"


def test_config_file_is_toml_or_json_by_its_name(tmp_path: Path) -> None:
    toml = tmp_path / "hooks.toml"
    toml.write_text('[[destination]]\nname = "a"\nurl = "https://a.example/h"\nsecret = "0123456789abcdef"\nrate_per_s = 5\n')
    js = tmp_path / "hooks.json"
    js.write_text(json.dumps({"destination": [{"name": "b", "url": "http://b.example/h", "secret": "0123456789abcdef"}]}))
    assert [(d.name, d.rate_per_s) for d in load_destinations(SETTINGS.model_copy(update={"delivery_config": str(toml)}))] == [("a", 5.0)]
    assert [d.name for d in load_destinations(SETTINGS.model_copy(update={"delivery_config": str(js)}))] == ["b"]
    with pytest.raises(ConfigError, match="CX_DELIVERY_CONFIG: name the TOML or JSON file"):
        load_destinations(SETTINGS)
    with pytest.raises(ConfigError, match="cannot read"):
        load_destinations(SETTINGS.model_copy(update={"delivery_config": str(tmp_path / "none.toml")}))
    toml.write_text("[[destination]\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_destinations(SETTINGS.model_copy(update={"delivery_config": str(toml)}))


@pytest.mark.parametrize("page", ["README.md", "docs/delivery.md"])
def test_the_receivers_signature_check_in_the_docs_accepts_what_deliver_signs(page: str) -> None:
    import re
    import time

    text = (Path(__file__).resolve().parents[2] / page).read_text()
    [snippet] = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "def cx_signature_ok" in b]
    scope: dict = {}
    exec(snippet, scope)  # noqa: S102 - the page's own example, run as a receiver would
    check = scope["cx_signature_ok"]
    body, now = b'{"trigger_id": "t-1"}', int(time.time())
    header = sign(b"s3cret", body, now)
    assert check(b"s3cret", header, body) is True
    assert check(b"other", header, body) is False
    assert check(b"s3cret", header, body + b" ") is False
    assert check(b"s3cret", sign(b"s3cret", body, now - 301), body) is False  # older than the tolerance
    assert check(b"s3cret", "v1=abc", body) is False


@pytest.mark.parametrize(("session_s", "heartbeat"), [(3.0, 500), (10.0, 1000), (45.0, 4500)])
def test_heartbeat_is_a_tenth_of_the_session_and_never_under_half_a_second(session_s: float, heartbeat: int) -> None:
    # librdkafka's own default, 3,000 ms, equals a 3 s session: the session then expired between heartbeats.
    assert heartbeat_ms(session_s) == heartbeat


def _filtering_destinations() -> list:
    return parse_destinations(
        {"destination": [GOOD | {"kinds": ["cart_abandoned"], "actions": ["offer"], "tenants": ["shop-a"]}]}, SETTINGS
    )


def test_a_record_whose_kind_is_a_list_is_not_a_trigger() -> None:
    # It once reached the destinations' filter: `["x"] in frozenset(...)` raised, deliver stopped, and the
    # record, never committed, stopped it again after every restart.
    with pytest.raises(ValueError, match="kind must be text, got list"):
        routable_trigger({"trigger_id": "t1", "kind": ["cart_abandoned"]})
    with pytest.raises(ValueError, match="no trigger_id"):
        routable_trigger({"trigger_id": "", "kind": "cart_abandoned"})
    with pytest.raises(ValueError, match="a trigger is a JSON object, got list"):
        routable_trigger([{"trigger_id": "t1"}])
    record = {"trigger_id": "t1", "kind": "cart_abandoned", "action": "offer", "tenant": "shop-a"}
    assert routable_trigger(record) is record
    assert [d.wants(record) for d in _filtering_destinations()] == [True]


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
FIELDS = st.sampled_from(["trigger_id", "kind", "action", "tenant", "offer", "emitted_at"])


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(record=JSON | st.dictionaries(FIELDS, JSON | st.sampled_from(["t1", "cart_abandoned", "offer", "shop-a"])))
def test_any_record_is_refused_with_a_reason_or_routed_without_error(record: object) -> None:
    try:
        trigger = routable_trigger(record)
    except ValueError as exc:
        assert str(exc)
        return
    assert isinstance(trigger["trigger_id"], str) and trigger["trigger_id"]
    for dest in _filtering_destinations():
        assert dest.wants(trigger) in (True, False)
