"""Friction settings: CX_FRICTION_* variables reach the rules; bad values name the variable."""

from __future__ import annotations

import pytest

from pipeline.detect import Rules
from pipeline.settings import Settings, SettingsError, parse_friction_weights, parse_selectors

ALL_TEN = (
    "rage_click=10,dead_click=10,error_click=10,payment_failed=10,zero_result_search=10,"
    "slow_page=10,u_turn=10,checkout_loop=10"
)


def test_friction_variables_reach_the_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CX_FRICTION_RAGE_CLICKS", "4")
    monkeypatch.setenv("CX_FRICTION_SLOW_PAGE_MS", "2500")
    monkeypatch.setenv("CX_FRICTION_RAGE_EXCLUDE_SELECTORS", "#carousel-next; .qty-stepper button ;")
    monkeypatch.setenv("CX_FRICTION_WEIGHTS", ALL_TEN)
    monkeypatch.setenv("CX_FRICTION_ASSIST_SCORE", "40")
    rules = Rules.from_settings(Settings.load(_env_file=None))
    assert (rules.friction_rage_clicks, rules.friction_slow_page_ms, rules.friction_assist_score) == (4, 2_500, 40)
    assert rules.friction_rage_exclude == ("#carousel-next", ".qty-stepper button")
    assert dict(rules.friction_weights) == dict.fromkeys(
        ("rage_click", "dead_click", "error_click", "payment_failed", "zero_result_search", "slow_page", "u_turn",
         "checkout_loop"), 10)  # fmt: skip


def test_default_settings_give_the_default_rules() -> None:
    assert Rules.from_settings(Settings(_env_file=None)) == Rules()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (ALL_TEN.replace("u_turn=10,", ""), "missing weights for u_turn"),
        (ALL_TEN + ",slow_page=5", "given twice"),
        (ALL_TEN.replace("u_turn", "uturn"), "expected signal=points"),
        (ALL_TEN.replace("u_turn=10", "u_turn=101"), "0..100"),
        (ALL_TEN.replace("u_turn=10", "u_turn=-1"), "0..100"),
    ],
)
def test_malformed_weights_are_refused(raw: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_friction_weights(raw)


def test_bad_weights_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CX_FRICTION_WEIGHTS", "rage_click=20")
    with pytest.raises(SettingsError, match="CX_FRICTION_WEIGHTS"):
        Settings.load(_env_file=None)


def test_selectors_split_on_semicolons_because_commas_belong_to_css() -> None:
    assert parse_selectors("a[href], button ; textarea;;") == ("a[href], button", "textarea")
