"""Help triggers (checkout_friction, support_risk) share the offers' holdout and then assist, with no marketing guardrail."""

from __future__ import annotations

from pipeline.detect import Rules
from pipeline.detect.offers import decide_assist, holdout_bucket


def test_a_customer_outside_the_holdout_gets_an_assist_without_offer() -> None:
    # cust-0's bucket in experiment "default" is 3580: not below 1,000 (10 %)
    decision = decide_assist(Rules(), kind="checkout_friction", tenant="shop-a", subject="cust-0")
    assert (decision.action, decision.holdout, decision.experiment, decision.offer, decision.why) == (
        "assist", False, "default", None, "help",
    )


def test_a_customer_in_the_holdout_gets_no_action() -> None:
    assert holdout_bucket("shop-a", "default", "cust-8") < 1_000
    decision = decide_assist(Rules(), kind="support_risk", tenant="shop-a", subject="cust-8")
    assert (decision.action, decision.holdout, decision.why) == ("none", True, "holdout")


def test_an_anonymous_visitor_without_consent_still_gets_help() -> None:
    # consent and identity guard marketing offers; on-site help needs neither
    decision = decide_assist(Rules(), kind="checkout_friction", tenant="shop-a", subject="anon-77")
    assert decision.action == "assist"


def test_a_help_kind_runs_its_own_experiment_and_share() -> None:
    rules = Rules(experiment_by_kind=(("checkout_friction", "help-v1"),), experiment_holdouts=(("help-v1", 100.0),))
    friction = decide_assist(rules, kind="checkout_friction", tenant="shop-a", subject="cust-0")
    support = decide_assist(rules, kind="support_risk", tenant="shop-a", subject="cust-0")
    assert (friction.experiment, friction.action, friction.holdout) == ("help-v1", "none", True)
    assert (support.experiment, support.action, support.holdout) == ("default", "assist", False)
