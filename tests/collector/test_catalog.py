"""The event catalog: required properties, types, ranges, and what is stored (pure, no I/O)."""

from __future__ import annotations

import math

import pytest

from pipeline.collector.catalog import CATALOG, PAGE, PropertyError, check_properties


def check(event: str, props: dict) -> dict:
    return check_properties(CATALOG[event], props)


def rejected(event: str, props: dict) -> PropertyError:
    with pytest.raises(PropertyError) as info:
        check(event, props)
    return info.value


@pytest.mark.parametrize(
    ("event", "props", "missing"),
    [
        ("Product Added", {"price": 10}, "product_id"),
        ("Product Added", {"product_id": "p1"}, "price"),
        ("Product Added", {"product_id": "", "price": 10}, "product_id"),  # empty string counts as absent
        ("Product Added", {"product_id": None, "price": 10}, "product_id"),  # null counts as absent
        ("Order Completed", {"order_id": "o1"}, "total"),
        ("Order Completed", {"total": 10}, "order_id"),
        ("Checkout Step Viewed", {"checkout_id": "c1"}, "step"),
        ("Products Searched", {"results_count": 0}, "query"),
        ("Element Clicked", {"x": 1, "y": 2}, "selector"),
        ("Support Ticket Opened", {"ticket_id": "t1"}, "channel"),
        ("Survey Answered", {"survey": "nps"}, "score"),
    ],
)
def test_required_property_absent_is_missing_property_naming_it(event: str, props: dict, missing: str) -> None:
    err = rejected(event, props)
    assert err.reason == "missing_property"
    assert missing in err.detail


@pytest.mark.parametrize(
    ("props", "named"),
    [
        ({"product_id": "p1", "price": "19.99"}, "price"),  # numbers as strings are not numbers
        ({"product_id": "p1", "price": -1}, "price"),  # negative price
        ({"product_id": "p1", "price": 2e9}, "price"),  # absurd: over 1e9
        ({"product_id": "p1", "price": math.nan}, "price"),
        ({"product_id": "p1", "price": math.inf}, "price"),
        ({"product_id": "p1", "price": True}, "price"),  # a bool is not a number
        ({"product_id": "p1", "price": 5, "quantity": 0}, "quantity"),
        ({"product_id": "p1", "price": 5, "quantity": 1.5}, "quantity"),
        ({"product_id": {"id": 1}, "price": 5}, "product_id"),
        ({"product_id": "p1", "price": 5, "name": 7}, "name"),
    ],
)
def test_product_added_with_a_bad_value_is_wrong_type_naming_the_property(props: dict, named: str) -> None:
    err = rejected("Product Added", props)
    assert err.reason == "wrong_type"
    assert err.detail.startswith(named)


def test_negative_order_total_is_wrong_type() -> None:
    assert rejected("Order Completed", {"order_id": "o1", "total": -5}).reason == "wrong_type"


def test_numeric_product_id_is_stored_as_string_and_quantity_defaults_to_one() -> None:
    given = {"product_id": 1234, "price": 9.5}
    stored = check("Product Added", given)
    assert stored == {"product_id": "1234", "price": 9.5, "quantity": 1}
    assert given == {"product_id": 1234, "price": 9.5}  # the caller's dict is not mutated


def test_integral_float_quantity_is_stored_as_int() -> None:
    stored = check("Product Added", {"product_id": "p1", "price": 3, "quantity": 2.0})
    assert stored["quantity"] == 2 and isinstance(stored["quantity"], int)


def test_valid_properties_without_changes_are_returned_as_is() -> None:
    props = {"product_id": "p1", "price": 3, "quantity": 2, "coupon_hint": {"any": "thing"}}
    assert check("Product Added", props) is props  # unknown properties are kept unchecked


def test_product_removed_without_quantity_gets_no_default() -> None:
    # Without a quantity the product leaves the cart entirely (the cart model relies on it).
    assert check("Product Removed", {"product_id": "p1"}) == {"product_id": "p1"}


@pytest.mark.parametrize(
    ("survey", "score", "ok"),
    [
        ("nps", 0, True),
        ("nps", 10, True),
        ("nps", 11, False),
        ("csat", 0, False),
        ("csat", 5, True),
        ("csat", 6, False),
        ("ces", 1, True),
        ("ces", 7, True),
        ("ces", 8, False),
    ],
)
def test_survey_score_must_lie_in_its_survey_scale(survey: str, score: int, ok: bool) -> None:
    props = {"survey": survey, "score": score}
    if ok:
        assert check("Survey Answered", props) == props
    else:
        err = rejected("Survey Answered", props)
        assert (err.reason, err.detail.split()[0]) == ("wrong_type", "score")


def test_unknown_survey_kind_is_wrong_type() -> None:
    assert rejected("Survey Answered", {"survey": "ratings", "score": 3}).reason == "wrong_type"


@pytest.mark.parametrize(
    ("event", "props", "field"),
    [
        ("Support Ticket Opened", {"ticket_id": "t1", "channel": "fax"}, "channel"),
        ("Support Message Sent", {"ticket_id": "t1", "author": "bot"}, "author"),
        ("Error Shown", {"kind": "network"}, "kind"),
    ],
)
def test_values_outside_their_allowed_set_are_wrong_type(event: str, props: dict, field: str) -> None:
    err = rejected(event, props)
    assert err.reason == "wrong_type" and err.detail.startswith(field)


def test_allowed_set_values_are_matched_case_insensitively_and_stored_lower_case() -> None:
    stored = check("Support Ticket Opened", {"ticket_id": 42, "channel": "Email"})
    assert stored == {"ticket_id": "42", "channel": "email"}


def test_element_clicked_flags_must_be_booleans() -> None:
    assert check("Element Clicked", {"selector": "#buy", "interactive": True, "responded": False})
    assert rejected("Element Clicked", {"selector": "#buy", "interactive": "yes"}).reason == "wrong_type"


def test_page_load_time_must_be_a_non_negative_number() -> None:
    assert check_properties(PAGE, {"path": "/", "load_time_ms": 812.5}) == {"path": "/", "load_time_ms": 812.5}
    with pytest.raises(PropertyError) as info:
        check_properties(PAGE, {"load_time_ms": -1})
    assert info.value.reason == "wrong_type"


def test_optional_null_is_kept() -> None:
    props = {"product_id": "p1", "name": None}
    assert check("Product Viewed", props) == {"product_id": "p1", "name": None}
