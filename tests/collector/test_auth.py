"""Write keys: tenant lookup by digest only, and Segment's basic-auth header."""

from __future__ import annotations

import base64

from pipeline.collector.auth import WriteKeys, basic_auth_user


def test_known_key_names_its_tenant_and_others_name_none() -> None:
    keys = WriteKeys({"wk_a": "shop-a", "wk_b": "shop-b"})
    assert (keys.tenant_for("wk_a"), keys.tenant_for("wk_b")) == ("shop-a", "shop-b")
    assert keys.tenant_for("wk_c") is None
    assert keys.tenant_for("") is None
    assert keys.tenant_for(None) is None
    assert keys.tenant_for(["wk_a"]) is None  # writeKey of the wrong JSON type


def test_plain_keys_are_not_kept() -> None:
    keys = WriteKeys({"wk_secret_value": "shop-a"})
    assert "wk_secret_value" not in repr(vars(keys))
    assert b"wk_secret_value" not in b"".join(d for d, _ in vars(keys)["_by_digest"].values())


def test_basic_auth_user_is_the_write_key() -> None:
    header = "Basic " + base64.b64encode(b"wk_a:").decode()
    assert basic_auth_user(header) == "wk_a"
    with_password = "basic " + base64.b64encode(b"wk_a:ignored:too").decode()
    assert basic_auth_user(with_password) == "wk_a"  # the password part is ignored
    assert basic_auth_user("Bearer abc") is None
    assert basic_auth_user("Basic %%%") is None
    assert basic_auth_user("Basic \udc80") is None  # a header byte that is not UTF-8, as aiohttp decodes it
    assert basic_auth_user("Basic é") is None
    assert basic_auth_user(None) is None
