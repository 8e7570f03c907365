"""Reading a request body under Segment's limits, gzip included, within a time limit.

Every byte read counts: the compressed bytes against the limit as they
arrive, and the inflated output against the same limit, so neither a
large upload nor a small compressed "bomb" makes the collector read or
allocate more than about the limit. A gzip body may hold several members
(RFC 1952 allows it; ``gzip -c a b`` writes two): each is inflated in turn,
and anything after the last member that is not another member is refused.

The time allowed is bounded twice: ``total_s`` for the whole body and
``idle_s`` for each wait on the next chunk, so a client that trickles
bytes loses its place (and the in-flight bytes the server reserved for it)
instead of holding it.

No error message quotes the request's bytes or headers.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterator

import orjson

__all__ = [
    "BODY_KEY_MAX_BYTES",
    "MAX_BATCH_BYTES",
    "MAX_EVENT_BYTES",
    "BadBody",
    "BodyTimeout",
    "BodyTooLarge",
    "decode_json",
    "read_limited",
]

MAX_BATCH_BYTES = 500 * 1024  # Segment's batch limit, compressed and after decompression
MAX_EVENT_BYTES = 32 * 1024  # Segment's per-event limit (the event's JSON)
# A body read before its request is authenticated (the write key is in the
# body: sendBeacon and keepalive fetches, which browsers cap at 64 KB).
BODY_KEY_MAX_BYTES = 64 * 1024
_GZIP_WBITS = 16 + zlib.MAX_WBITS  # gzip header and trailer, not raw deflate
_BOM = b"\xef\xbb\xbf"


class BodyTooLarge(ValueError):
    """The body, compressed or inflated, is over the limit; ``prefix`` holds what was inflated, up to the limit."""

    def __init__(self, limit: int, prefix: bytes) -> None:
        super().__init__(f"request body over {limit // 1024} KB")
        self.prefix = prefix


class BadBody(ValueError):
    """The body cannot be read: unsupported ``Content-Encoding`` or corrupt gzip."""

    def __init__(self, message: str, raw: bytes) -> None:
        super().__init__(message)
        self.raw = raw


class BodyTimeout(TimeoutError):
    """The body did not arrive in time: ``idle`` when one chunk took too long, else the whole body did."""

    def __init__(self, idle: bool, seconds: float) -> None:
        what = "no body bytes for" if idle else "request body not received within"
        super().__init__(f"{what} {seconds:g} s")
        self.idle = idle


class _Inflater:
    """Inflates every gzip member in turn, output capped at ``limit + 1`` bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.out = bytearray()
        self._member = zlib.decompressobj(_GZIP_WBITS)

    def feed(self, data: bytes) -> None:
        while data:
            if self._member.eof:  # the bytes after a member must be the next member
                self._member = zlib.decompressobj(_GZIP_WBITS)
            try:
                self.out += self._member.decompress(data, self.limit + 1 - len(self.out))
            except zlib.error as exc:
                raise BadBody(f"gzip body does not inflate: {exc}", b"") from None
            if len(self.out) > self.limit:
                return
            # Output capped by max_length leaves input in unconsumed_tail; input after
            # the end of a member is in unused_data.
            data = self._member.unused_data if self._member.eof else self._member.unconsumed_tail

    @property
    def complete(self) -> bool:
        return self._member.eof


async def read_limited(
    chunks: AsyncIterator[bytes],
    encoding: str,
    limit: int,
    *,
    total_s: float | None = None,
    idle_s: float | None = None,
) -> bytes:
    """The body from ``chunks`` (every member inflated when ``encoding`` is gzip), at most ``limit`` bytes.

    Raises BodyTooLarge as soon as the bytes read or the inflated output
    pass the limit (nothing more is read), BadBody for an encoding other
    than gzip/identity or a gzip stream that does not inflate (the raw bytes
    read so far, at most ``limit``, ride along for a dead letter), and
    BodyTimeout past ``total_s`` for the body or ``idle_s`` for one chunk.
    """
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        inflater = None
    elif encoding in ("gzip", "x-gzip"):
        inflater = _Inflater(limit)
    else:
        raise BadBody("unsupported Content-Encoding (gzip or identity only)", b"")
    raw = bytearray()
    loop = asyncio.get_running_loop()
    deadline = None if total_s is None else loop.time() + total_s
    iterator = aiter(chunks)
    while True:
        wait = idle_s
        if deadline is not None:
            left = deadline - loop.time()
            if left <= 0:
                raise BodyTimeout(False, total_s)
            wait = left if wait is None else min(wait, left)
        try:
            async with asyncio.timeout(wait):
                chunk = await anext(iterator)
        except StopAsyncIteration:
            break
        except TimeoutError:
            idle = deadline is None or loop.time() < deadline
            raise BodyTimeout(idle, idle_s if idle else total_s) from None
        if len(raw) + len(chunk) > limit:
            if inflater is None:
                raise BodyTooLarge(limit, bytes(raw) + chunk[: limit - len(raw)])
            try:
                inflater.feed(chunk[: limit - len(raw)])  # what fits, for the dead letter's prefix
            except BadBody:
                pass
            raise BodyTooLarge(limit, bytes(inflater.out[:limit]))
        raw += chunk
        if inflater is not None:
            try:
                inflater.feed(chunk)
            except BadBody as exc:
                raise BadBody(str(exc), bytes(raw)) from None
            if len(inflater.out) > limit:
                raise BodyTooLarge(limit, bytes(inflater.out[:limit]))
    if inflater is None:
        return bytes(raw)
    if not inflater.complete:
        raise BadBody("gzip body is truncated", bytes(raw))
    return bytes(inflater.out)


def decode_json(body: bytes) -> tuple[object, str | None]:
    """(value, None) for a JSON body, or (None, reason) with reason ``bad_encoding`` or ``bad_json``.

    orjson refuses nesting past 1024 levels (``bad_json``); within that, a
    message deeper than ``pipeline.wire.records.MAX_JSON_DEPTH`` is a dead letter
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
