"""The demo report's verdict and its trigger sample's title (``pipeline.demo.run``)."""

from __future__ import annotations

from pipeline.demo.run import sample_title, verdict


def _lines(events=(900, 900), dead=(12, 12), carts=(40, 40), orders=(9, 9), abandoned=(20, 20)) -> list[tuple[str, int, int]]:
    return [
        ("events stored", *events),
        ("dead letters", *dead),
        ("carts", *carts),
        ("orders", *orders),
        ("carts abandoned (triggers)", *abandoned),
    ]


def test_a_day_that_matches_its_ledger_is_complete() -> None:
    assert verdict(sessions=310, lines=_lines(), read_back=20, abandoned=20)


def test_a_day_too_small_for_a_cart_is_complete_when_it_matches_its_ledger() -> None:
    # `cxstream demo --visitors 1`: one visitor who browsed and left, no cart, no order, no trigger.
    lines = _lines(events=(12, 12), dead=(0, 0), carts=(0, 0), orders=(0, 0), abandoned=(0, 0))
    assert verdict(sessions=2, lines=lines, read_back=0, abandoned=0)


def test_one_count_off_the_ledger_is_a_difference() -> None:
    assert not verdict(sessions=310, lines=_lines(orders=(8, 9)), read_back=20, abandoned=20)


def test_triggers_missing_on_kafka_are_a_difference() -> None:
    assert not verdict(sessions=310, lines=_lines(), read_back=19, abandoned=20)


def test_no_session_at_all_is_a_difference() -> None:
    assert not verdict(sessions=0, lines=_lines(), read_back=20, abandoned=20)


def test_the_sample_title_says_how_many_it_shows() -> None:
    assert sample_title(418) == "cx.triggers: 418 cart_abandoned read back from Kafka, 5 of them"
    assert sample_title(3) == "cx.triggers: 3 cart_abandoned read back from Kafka, 3 of them"
    assert sample_title(0) == "cx.triggers: 0 cart_abandoned read back from Kafka"
