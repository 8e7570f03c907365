"""Kafka's default partitioner, bit for bit: ``toPositive(murmur2(key)) % partitions``.

The collector chooses each record's partition itself (it packs the events
of one request that share a partition into one record), so it must agree
with the Java client's ``Utils.murmur2`` exactly: any other Kafka client
keyed by the same visitor key, and the worker's state restore, land on the
same partition.
"""

from __future__ import annotations

import struct
from functools import lru_cache

__all__ = ["ids_per_partition", "murmur2", "partition_for_key", "to_positive"]

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's ``Utils.murmur2``: a signed 32-bit int, as Java returns it."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    tail = length & ~3
    # Little-endian 4-byte words, as Java assembles them from the byte array.
    for k in struct.unpack_from(f"<{tail >> 2}I", data):
        k = (k * _M) & _MASK
        k ^= k >> 24  # Java's >>> on an int: unsigned shift of the 32-bit value
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    rest = length & 3
    # The Java switch falls through: 3 also applies 2 and 1.
    if rest == 3:
        h ^= data[tail + 2] << 16
    if rest >= 2:
        h ^= data[tail + 1] << 8
    if rest >= 1:
        h ^= data[tail]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def to_positive(n: int) -> int:
    """Kafka's ``Utils.toPositive``: clear the sign bit (not ``abs``: ``abs(MIN_INT)`` overflows)."""
    return n & 0x7FFFFFFF


@lru_cache(maxsize=65_536)
def partition_for_key(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner picks for ``key`` among ``partitions``.

    Cached: a visitor sends many events, and the key is the same for each.
    """
    if partitions < 1:
        raise ValueError(f"partitions must be >= 1, got {partitions}")
    return to_positive(murmur2(key)) % partitions


def ids_per_partition(tenant: str, prefix: str, partitions: int, *, anonymous: bool = True) -> list[str]:
    """One visitor id per partition (``prefix-0``, ``prefix-1``, ...), in partition order.

    For messages meant to reach every partition, such as the demo's closing
    page views that carry each partition's event time to the present. The id
    is an anonymous id, or with ``anonymous=False`` a user id.
    """
    from pipeline.wire.records import visitor_key

    found: dict[int, str] = {}
    i = 0
    while len(found) < partitions:
        vid = f"{prefix}-{i}"
        key = visitor_key(tenant, vid, None) if anonymous else visitor_key(tenant, None, vid)
        found.setdefault(partition_for_key(key.encode(), partitions), vid)
        i += 1
    return [found[p] for p in range(partitions)]
