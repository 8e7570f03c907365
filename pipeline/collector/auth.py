"""Write keys -> tenants, holding only SHA-256 digests of the keys.

A key is looked up by its digest and then compared with
``hmac.compare_digest``: the process never keeps the plain keys, and the
timing of a lookup tells nothing about a key (to learn anything from it an
attacker would need SHA-256 preimages).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping

from pipeline.settings import Settings

__all__ = ["WriteKeys", "basic_auth_user"]


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
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.partition(":")[0]
