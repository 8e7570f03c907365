"""Rules come from Settings one to one; bad values are refused."""

from __future__ import annotations

import pytest

from pipeline.detect import Rules
from pipeline.settings import Settings


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


def test_rules_refuse_a_holdout_share_above_100() -> None:
    with pytest.raises(ValueError, match="holdout_pct"):
        Rules(holdout_pct=150.0)
