"""Reading bodies under the limits: gzip, a gzip bomb, corrupt streams, JSON and UTF-8."""

from __future__ import annotations

import asyncio
import gzip
import time

import pytest

from pipeline.collector.body import BadBody, BodyTimeout, BodyTooLarge, decode_json, read_limited


async def chunks_of(data: bytes, size: int = 1000):
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def test_plain_body_under_the_limit_is_returned_whole() -> None:
    assert await read_limited(chunks_of(b"x" * 2500), "", limit=2500) == b"x" * 2500


async def test_plain_body_over_the_limit_raises_with_the_prefix() -> None:
    with pytest.raises(BodyTooLarge) as info:
        await read_limited(chunks_of(b"y" * 2501), "identity", limit=2500)
    assert info.value.prefix == b"y" * 2500


async def test_gzip_body_is_inflated() -> None:
    data = b'{"batch": []}' * 50
    assert await read_limited(chunks_of(gzip.compress(data)), "gzip", limit=len(data)) == data


async def test_gzip_bomb_stops_inflating_past_the_limit() -> None:
    # 50 MB of zeros compress to ~50 KB; reading must stop just past 500 KB of output.
    bomb = gzip.compress(b"0" * 50_000_000)
    produced = []

    async def feed():
        async for chunk in chunks_of(bomb, 64 * 1024):
            produced.append(len(chunk))
            yield chunk

    with pytest.raises(BodyTooLarge) as info:
        await read_limited(feed(), "gzip", limit=500 * 1024)
    assert len(info.value.prefix) == 500 * 1024
    assert len(produced) == 1  # the first compressed chunk already inflates past the limit


async def test_corrupt_gzip_is_a_bad_body() -> None:
    with pytest.raises(BadBody, match="inflate"):
        await read_limited(chunks_of(b"\x1f\x8b\x08\x00garbage-not-deflate"), "gzip", limit=10_000)


async def test_truncated_gzip_is_a_bad_body() -> None:
    with pytest.raises(BadBody, match="truncated"):
        await read_limited(chunks_of(gzip.compress(b"{}" * 1000)[:-12]), "gzip", limit=10_000)


async def test_unsupported_content_encoding_is_a_bad_body_that_does_not_quote_the_header() -> None:
    with pytest.raises(BadBody) as info:
        await read_limited(chunks_of(b"{}"), "br-secret-value", limit=10)
    assert str(info.value) == "unsupported Content-Encoding (gzip or identity only)"


async def test_every_gzip_member_is_inflated() -> None:
    # `gzip -c a b`: two members; the second member's bytes are part of the body.
    body = gzip.compress(b'{"batch": [1,') + gzip.compress(b' 2]}')
    assert await read_limited(chunks_of(body, 7), "gzip", limit=1000) == b'{"batch": [1, 2]}'


async def test_bytes_after_the_last_gzip_member_are_a_bad_body() -> None:
    with pytest.raises(BadBody, match="inflate"):
        await read_limited(chunks_of(gzip.compress(b"{}") + b"trailing"), "gzip", limit=1000)


async def test_compressed_bytes_past_the_limit_stop_the_read() -> None:
    # A valid member then 100 MB of trailing bytes: reading stops at the limit of compressed bytes.
    read = []

    async def feed():
        yield gzip.compress(b"{}")
        for _ in range(100 * 16):
            read.append(1)
            yield b"\0" * 65_536

    with pytest.raises((BodyTooLarge, BadBody)):
        await read_limited(feed(), "gzip", limit=500 * 1024)
    assert len(read) <= 9  # 9 x 64 KB > 500 KB


async def test_plain_bytes_past_the_limit_stop_the_read() -> None:
    read = []

    async def feed():
        for _ in range(1000):
            read.append(1)
            yield b"x" * 65_536

    with pytest.raises(BodyTooLarge):
        await read_limited(feed(), "", limit=500 * 1024)
    assert len(read) == 8  # the eighth chunk passes 500 KB


async def test_a_body_that_trickles_past_the_total_time_times_out() -> None:
    async def trickle():
        while True:
            await asyncio.sleep(0.02)
            yield b"x"

    started = time.monotonic()
    with pytest.raises(BodyTimeout) as info:
        await read_limited(trickle(), "", limit=10_000, total_s=0.3, idle_s=1.0)
    assert info.value.idle is False
    assert 0.3 <= time.monotonic() - started < 1.0


async def test_a_body_that_stalls_times_out_after_the_idle_time() -> None:
    async def stall():
        yield b"{"
        await asyncio.sleep(10)
        yield b"}"

    started = time.monotonic()
    with pytest.raises(BodyTimeout) as info:
        await read_limited(stall(), "", limit=10_000, total_s=5.0, idle_s=0.2)
    assert info.value.idle is True
    assert 0.2 <= time.monotonic() - started < 1.0


def test_decode_json_tells_bad_json_from_bad_encoding() -> None:
    assert decode_json(b'{"a": 1}') == ({"a": 1}, None)
    assert decode_json(b"\xef\xbb\xbf{}") == ({}, None)  # a UTF-8 byte order mark is tolerated
    assert decode_json(b'{"a": ') == (None, "bad_json")
    assert decode_json(b'{"a": "\xff"}') == (None, "bad_encoding")
