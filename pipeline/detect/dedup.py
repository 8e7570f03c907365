"""De-duplication on ``event_id``: a bounded memory of recent ids per visitor.

Ids are kept as 48-bit hashes (6 bytes each, stored base64 in the state):
64 of them take 512 characters. A false duplicate needs a 48-bit collision
with one of the visitor's last 64 ids, about 2e-13 per event.
"""

from __future__ import annotations

import base64
import hashlib

__all__ = ["event_hash", "pack_hashes", "unpack_hashes", "remember"]

HASH_BYTES = 6


def event_hash(event_id: str) -> int:
    """The short hash of an event id that the state remembers."""
    digest = hashlib.blake2b(event_id.encode("utf-8", "backslashreplace"), digest_size=HASH_BYTES).digest()
    return int.from_bytes(digest, "big")


def remember(recent: list[int], h: int, window: int) -> None:
    """Add ``h`` to the visitor's recent ids, forgetting the oldest beyond ``window``."""
    recent.append(h)
    if len(recent) > window:
        del recent[: len(recent) - window]


def pack_hashes(recent: list[int]) -> str:
    """Compact text form for the serialized state."""
    return base64.b64encode(b"".join(h.to_bytes(HASH_BYTES, "big") for h in recent)).decode("ascii")


def unpack_hashes(text: str) -> list[int]:
    """Inverse of ``pack_hashes``."""
    raw = base64.b64decode(text)
    return [int.from_bytes(raw[i : i + HASH_BYTES], "big") for i in range(0, len(raw), HASH_BYTES)]
