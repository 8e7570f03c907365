"""``pipeline.vocabulary``: one name per event, sets named by what they mean, one reading of each value."""

from __future__ import annotations

import pytest

from pipeline import vocabulary as v
from pipeline.collector.catalog import CATALOG


def test_every_catalog_event_is_named_once_in_the_vocabulary() -> None:
    names = [value for key, value in vars(v).items() if key.isupper() and isinstance(value, str)]
    assert len(names) == len(set(names)) == 22
    assert set(names) == set(CATALOG)


def test_the_detector_sets_hold_the_events_their_names_say() -> None:
    assert v.IN_CHECKOUT == {
        "Checkout Started", "Checkout Step Viewed", "Checkout Step Completed", "Payment Info Entered",
        "Payment Failed", "Coupon Applied", "Coupon Denied",
    }  # fmt: skip
    assert v.CHECKOUT_PROGRESS < v.IN_CHECKOUT and "Checkout Started" not in v.CHECKOUT_PROGRESS
    assert v.FRICTION_INPUTS - v.IN_CHECKOUT == {"Element Clicked", "Error Shown", "Products Searched", "Order Completed"}
    assert v.LOYALTY_FRICTION == {"Payment Failed", "Coupon Denied", "Error Shown"}
    assert v.LOYALTY_SUPPORT == {"Support Ticket Opened", "Support Ticket Resolved", "Survey Answered"}
    # Every name in every set is a catalog event: a typo would name nothing.
    for group in (v.CARTS_OPEN_OR_CHANGE, v.FRICTION_INPUTS, v.SUPPORT_EVENTS, v.ORDER_CHANGES):
        assert group <= set(CATALOG)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("p-1", "p-1"), ("", ""), (1234, "1234"), (1234.0, "1234"), (12.5, "12.5"), (True, "true"), (False, "false"),
     (None, ""), ({"id": 1}, ""), ([1], "")],
    ids=["text", "empty", "int", "integral-float", "fraction", "true", "false", "absent", "object", "list"],
)  # fmt: skip
def test_label_reads_ids_as_the_catalog_stores_them(value: object, expected: str) -> None:
    assert v.label(value) == expected


def test_text_or_none_is_none_for_nothing_to_name() -> None:
    assert v.text_or_none("") is None and v.text_or_none(None) is None and v.text_or_none([]) is None
    assert v.text_or_none(7) == "7"


@pytest.mark.parametrize(
    ("value", "expected"),
    [(3, 3.0), (2.5, 2.5), ("2.5", None), (True, None), (None, None), (float("nan"), None), (float("inf"), None)],
    ids=["int", "float", "text", "bool", "absent", "nan", "inf"],
)
def test_number_takes_finite_json_numbers_only(value: object, expected: float | None) -> None:
    assert v.number(value) == expected


@pytest.mark.parametrize(
    ("props", "expected"),
    [({"revenue": 90.0, "total": 100.0}, 90.0), ({"total": 100.0}, 100.0), ({"revenue": None, "total": 100.0}, 100.0),
     ({"revenue": 0, "total": 100.0}, 0.0), ({}, 0.0), ({"revenue": "90", "total": "100"}, 0.0)],
    ids=["revenue-wins", "total-when-no-revenue", "null-revenue", "zero-revenue-is-revenue", "neither", "text-is-not-money"],
)  # fmt: skip
def test_order_revenue_is_revenue_else_total(props: dict, expected: float) -> None:
    assert v.order_revenue(props) == expected
