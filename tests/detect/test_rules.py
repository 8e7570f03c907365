"""Rules come from Settings one to one; bad values are refused."""

from __future__ import annotations

import pytest

from pipeline.detect import Rules
from pipeline.settings import Settings, SettingsError


def test_rules_from_settings_copy_every_detection_setting() -> None:
    settings = Settings(
        _env_file=None, abandon_after_ms=45 * 60_000, session_gap_ms=20 * 60_000, allowed_lateness_ms=2_000,
        idle_partition_ms=3_000, experiment="spring", holdout_pct=25.0, offer_cap_ms=3_600_000,
        offer_valid_ms=7_200_000, offer_discount_pct=15, offer_channel="sms",
    )
    rules = Rules.from_settings(settings)
    assert rules == Rules(
        abandon_after_ms=45 * 60_000, session_gap_ms=20 * 60_000, allowed_lateness_ms=2_000,
        idle_partition_ms=3_000, experiment="spring", holdout_pct=25.0, offer_cap_ms=3_600_000,
        offer_valid_ms=7_200_000, offer_discount_pct=15, offer_channel="sms",
    )
    assert rules.inactivity_reason == "inactive_45m"


def test_inactivity_reason_names_the_delay_in_its_largest_whole_unit() -> None:
    assert Rules(abandon_after_ms=30 * 60_000).inactivity_reason == "inactive_30m"
    assert Rules(abandon_after_ms=90_000).inactivity_reason == "inactive_90s"  # 1.5 min: not whole minutes
    assert Rules(abandon_after_ms=5_000).inactivity_reason == "inactive_5s"
    assert Rules(abandon_after_ms=1_500).inactivity_reason == "inactive_1500ms"


def test_rules_refuse_a_holdout_share_above_100() -> None:
    with pytest.raises(ValueError, match="holdout_pct"):
        Rules(holdout_pct=150.0)


def test_offer_settings_are_parsed_into_rules() -> None:
    settings = Settings(
        _env_file=None, offer_discount_tiers="50=5, 150=12", experiment_holdouts="spring=20",
        experiment_by_kind="checkout_friction=friction-v1", loyalty_assist_score=80, attribution_window_ms=3_600_000,
    )  # fmt: skip
    rules = Rules.from_settings(settings)
    assert rules.offer_discount_tiers == ((50.0, 5), (150.0, 12))
    assert [rules.discount_for(v) for v in (49.99, 50.0, 150.0)] == [10, 5, 12]  # below the first tier: the base
    assert (rules.holdout_pct_for("spring"), rules.holdout_pct_for("default")) == (20.0, 10.0)
    assert (rules.experiment_for("checkout_friction"), rules.experiment_for("cart_abandoned")) == ("friction-v1", "default")
    assert (rules.loyalty_assist_score, rules.attribution_window_ms) == (80, 3_600_000)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("offer_discount_tiers", "150=10,50=5", "ascending"),
        ("offer_discount_tiers", "100=150", "within 0..100"),
        ("offer_discount_tiers", "100", "cart_value=discount_pct"),
        ("experiment_holdouts", "spring=120", "within 0..100"),
        ("experiment_by_kind", "checkout_friction", "kind=experiment"),
    ],
)
def test_bad_offer_settings_stop_start_up_naming_the_variable(variable: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=f"CX_{variable.upper()}.*{message}"):
        Settings.load(_env_file=None, **{variable: value})


def test_the_rules_defaults_are_the_settings_defaults() -> None:
    # Each default is written once, in Settings: a Rules() and the rules of unset settings are the same.
    assert Rules() == Rules.from_settings(Settings(_env_file=None))
    assert Rules().abandon_after_ms == 30 * 60_000 and Rules().offer_discount_tiers == ((100.0, 15), (250.0, 20))


def test_a_changed_setting_reaches_its_rule() -> None:
    rules = Rules.from_settings(Settings(_env_file=None, friction_u_turn_ms=5_000, experiment_by_kind="support_risk=care"))
    assert rules.friction_u_turn_ms == 5_000
    assert rules.experiment_for("support_risk") == "care" and rules.experiment_for("cart_abandoned") == "default"
