"""murmur2 must equal Kafka's Java ``Utils.murmur2`` bit for bit, or visitors land on other partitions."""

from __future__ import annotations

import pytest

from pipeline.wire.partitioner import murmur2, partition_for_key, to_positive

# The vectors of Kafka's own UtilsTest.testMurmur2 (clients/src/test/.../utils/UtilsTest.java).
KAFKA_VECTORS = [
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
]


@pytest.mark.parametrize(("data", "expected"), KAFKA_VECTORS)
def test_murmur2_matches_kafka_utils_test_vectors(data: bytes, expected: int) -> None:
    assert murmur2(data) == expected


def test_to_positive_clears_the_sign_bit_like_java() -> None:
    # toPositive(-973932308) = -973932308 & 0x7fffffff = 2147483648 - 973932308 = 1173551340
    assert to_positive(-973932308) == 1173551340
    assert to_positive(-(2**31)) == 0  # abs() would overflow in Java; masking gives 0
    assert to_positive(479470107) == 479470107


def test_partition_for_key_is_to_positive_murmur2_modulo_partitions() -> None:
    # "foobar": toPositive(-790332482) = 2147483648 - 790332482 = 1357151166
    # 1357151166 % 4 = 2, % 7 = 1357151166 - 7 * 193878738 = 0
    assert partition_for_key(b"foobar", 4) == 2
    assert partition_for_key(b"foobar", 7) == 0
    # "abc": 479470107 % 10 = 7
    assert partition_for_key(b"abc", 10) == 7


def test_partition_for_key_refuses_zero_partitions() -> None:
    with pytest.raises(ValueError, match="partitions"):
        partition_for_key(b"abc", 0)


def test_ids_per_partition_names_one_visitor_for_each_partition_in_order() -> None:
    from pipeline.wire.partitioner import ids_per_partition
    from pipeline.wire.records import visitor_key

    for anonymous in (True, False):
        ids = ids_per_partition("shop-a", "probe", 4, anonymous=anonymous)
        keys = [visitor_key("shop-a", i, None) if anonymous else visitor_key("shop-a", None, i) for i in ids]
        assert [partition_for_key(k.encode(), 4) for k in keys] == [0, 1, 2, 3]
        assert all(i.startswith("probe-") for i in ids)
