"""Reading bodies under the limits: gzip, a gzip bomb, corrupt streams, JSON and UTF-8."""

from __future__ import annotations

import gzip

import pytest

from pipeline.collector.body import BadBody, BodyTooLarge, decode_json, read_limited


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


async def test_unsupported_content_encoding_is_a_bad_body() -> None:
    with pytest.raises(BadBody, match="br"):
        await read_limited(chunks_of(b"{}"), "br", limit=10)


def test_decode_json_tells_bad_json_from_bad_encoding() -> None:
    assert decode_json(b'{"a": 1}') == ({"a": 1}, None)
    assert decode_json(b"\xef\xbb\xbf{}") == ({}, None)  # a UTF-8 byte order mark is tolerated
    assert decode_json(b'{"a": ') == (None, "bad_json")
    assert decode_json(b'{"a": "\xff"}') == (None, "bad_encoding")
