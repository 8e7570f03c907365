"""Reading a request body under Segment's limits, gzip included.

A gzip body is inflated chunk by chunk and reading stops as soon as the
output passes the limit, so a small compressed "bomb" cannot make the
collector allocate more than the limit.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator

import orjson

__all__ = [
    "MAX_BATCH_BYTES",
    "MAX_EVENT_BYTES",
    "BadBody",
    "BodyTooLarge",
    "decode_json",
    "read_limited",
]

MAX_BATCH_BYTES = 500 * 1024  # Segment's batch limit, after decompression
MAX_EVENT_BYTES = 32 * 1024  # Segment's per-event limit (the event's JSON)
_CHUNK = 64 * 1024
_GZIP_WBITS = 16 + zlib.MAX_WBITS  # gzip header and trailer, not raw deflate
_BOM = b"\xef\xbb\xbf"


class BodyTooLarge(ValueError):
    """The (decompressed) body is over the limit; ``prefix`` holds what was read, up to the limit."""

    def __init__(self, limit: int, prefix: bytes) -> None:
        super().__init__(f"request body over {limit // 1024} KB")
        self.prefix = prefix


class BadBody(ValueError):
    """The body cannot be read: unsupported ``Content-Encoding`` or corrupt gzip."""

    def __init__(self, message: str, raw: bytes) -> None:
        super().__init__(message)
        self.raw = raw


async def read_limited(chunks: AsyncIterator[bytes], encoding: str, limit: int) -> bytes:
    """The body from ``chunks`` (decompressed when ``encoding`` is gzip), at most ``limit`` bytes.

    Raises BodyTooLarge past the limit and BadBody for an encoding other
    than gzip/identity or a gzip stream that does not inflate.
    """
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        inflater = None
    elif encoding in ("gzip", "x-gzip"):
        inflater = zlib.decompressobj(_GZIP_WBITS)
    else:
        raise BadBody(f"unsupported Content-Encoding {encoding!r}", b"")
    out = bytearray()
    raw = bytearray()  # compressed bytes, kept (bounded) to dead-letter a corrupt stream
    async for chunk in chunks:
        if inflater is None:
            out += chunk
        else:
            if len(raw) <= limit:
                raw += chunk[: limit + 1 - len(raw)]
            try:
                out += inflater.decompress(chunk, limit + 1 - len(out))
                # Output capped by max_length leaves input in unconsumed_tail: it is
                # only read while the output is still under the limit.
                while inflater.unconsumed_tail and len(out) <= limit:
                    out += inflater.decompress(inflater.unconsumed_tail, limit + 1 - len(out))
            except zlib.error as exc:
                raise BadBody(f"gzip body does not inflate: {exc}", bytes(raw)) from None
        if len(out) > limit:
            raise BodyTooLarge(limit, bytes(out[:limit]))
    if inflater is not None and not inflater.eof:
        raise BadBody("gzip body is truncated", bytes(raw))
    return bytes(out)


def decode_json(body: bytes) -> tuple[object, str | None]:
    """(value, None) for a JSON body, or (None, reason) with reason ``bad_encoding`` or ``bad_json``.

    orjson refuses nesting past 1024 levels (``bad_json``); within that, a
    message deeper than ``pipeline.records.MAX_JSON_DEPTH`` is a dead letter
    of its own (``pipeline.collector.ingest``), and a body that is not an
    object is refused whole with its text kept as the dead letter's payload.
    """
    if body.startswith(_BOM):
        body = body[len(_BOM) :]
    try:
        return orjson.loads(body), None
    except orjson.JSONDecodeError:
        pass
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return None, "bad_encoding"
    return None, "bad_json"
