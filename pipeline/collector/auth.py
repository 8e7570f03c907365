"""Write keys -> tenants, holding only SHA-256 digests of the keys.

A key is looked up by its digest and then compared with
``hmac.compare_digest``: the process never keeps the plain keys, and the
timing of a lookup tells nothing about a key (to learn anything from it an
attacker would need SHA-256 preimages).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from pipeline.settings import Settings

__all__ = ["AuthDecision", "WriteKeys", "authenticate", "basic_auth_user"]


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


class WriteKeys:
    """The tenant each write key names; built once at start-up."""

    def __init__(self, key_map: Mapping[str, str]) -> None:
        self._by_digest = {_digest(key): (_digest(key), tenant) for key, tenant in key_map.items()}

    @classmethod
    def from_settings(cls, settings: Settings) -> WriteKeys:
        return cls(settings.write_key_map)

    def tenant_for(self, key: object) -> str | None:
        """The tenant of ``key``; None for an unknown, empty or non-string key."""
        if not isinstance(key, str) or not key:
            return None
        digest = _digest(key)
        found = self._by_digest.get(digest)
        if found is None or not hmac.compare_digest(found[0], digest):
            return None
        return found[1]


def basic_auth_user(header: str | None) -> str | None:
    """The username of an HTTP basic ``Authorization`` header (Segment puts the write key there).

    None when the header is absent, not basic, or not decodable.
    """
    if not header:
        return None
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except ValueError:  # binascii.Error, UnicodeDecodeError, and text outside ASCII (a header
        return None  # byte that is not UTF-8 reaches us as a surrogate), which b64decode refuses
    return decoded.partition(":")[0]


@dataclass(frozen=True, slots=True)
class AuthDecision:
    """Who a request writes for, or that its body must be read (a little) to know.

    ``tenant`` is set when a key authenticated the request; ``refused`` when
    a key was offered and is unknown or unreadable; ``needs_body`` when no
    key came before the body, so only a ``writeKey`` in the body can
    authenticate it.
    """

    tenant: str | None = None
    refused: bool = False
    needs_body: bool = False


def authenticate(
    keys: WriteKeys,
    *,
    authorization: str | None = None,
    query_key: str | None = None,
    body: object = None,
    body_read: bool = False,
) -> AuthDecision:
    """The decision for a request's write key: header first, then the query string, then the body.

    Segment's SDKs send the key as the basic-auth user; RudderStack's
    beacon sends it as ``?writeKey=``; analytics.js's beacon and keepalive
    requests (text/plain, no custom headers) put ``writeKey`` in the JSON
    body. A key offered in the header or the query string decides alone:
    an unknown one is refused without reading the body. ``body`` is the
    decoded body, given once ``body_read``; until then a request with no
    key before its body ``needs_body``.
    """
    if authorization:
        return _decide(keys, basic_auth_user(authorization) or "")
    if query_key is not None:
        return _decide(keys, query_key)
    if not body_read:
        return AuthDecision(needs_body=True)
    return _decide(keys, body.get("writeKey") if isinstance(body, dict) else None)


def _decide(keys: WriteKeys, key: object) -> AuthDecision:
    tenant = keys.tenant_for(key)
    return AuthDecision(tenant=tenant) if tenant is not None else AuthDecision(refused=True)
