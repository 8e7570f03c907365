"""Analyst queries about offers, kept as code so that tests run exactly what docs/offers.md shows."""

from __future__ import annotations

__all__ = ["ARM_RATES", "MIN_ARM_TRIGGERS", "UPLIFT_COLUMNS", "UPLIFT_SQL"]

# Fewest triggers per arm for a confidence interval: below it the normal
# approximation does not hold and the query returns NULL for se and the
# interval (the rates and their difference are still shown).
MIN_ARM_TRIGGERS = 30

# Triggers per arm and each arm's recovery rate, inside a query over
# cx.offers_daily grouped by experiment (a rate is NULL when its arm has no trigger).
ARM_RATES = """\
        sumIf(triggers, arm = 'treatment') AS n_treatment,
        sumIf(triggers, arm = 'holdout') AS n_holdout,
        if(n_treatment = 0, NULL, sumIf(recovered_orders, arm = 'treatment') / n_treatment) AS rate_treatment,
        if(n_holdout = 0, NULL, sumIf(recovered_orders, arm = 'holdout') / n_holdout) AS rate_holdout"""

# The uplift and its 95 % interval from ARM_RATES' columns: the one definition
# docs/offers.md and the dashboard show.
UPLIFT_COLUMNS = f"""\
    rate_treatment - rate_holdout AS uplift,
    if(least(n_treatment, n_holdout) >= {MIN_ARM_TRIGGERS},
       sqrt(rate_treatment * (1 - rate_treatment) / n_treatment
            + rate_holdout * (1 - rate_holdout) / n_holdout),
       NULL) AS se,
    uplift - 1.96 * se AS ci95_low,
    uplift + 1.96 * se AS ci95_high"""

# Uplift of the abandoned-cart offers of each experiment with a 95 %
# confidence interval: the difference of the arms' recovery rates, with the
# two-proportion normal approximation
# se = sqrt(p_t (1 - p_t) / n_t + p_h (1 - p_h) / n_h). A rate is NULL when
# its arm has no trigger. Over every day in cx.offers_daily; add
# `AND day BETWEEN ...` in the inner query for a range, and read the assists'
# uplift with kind = 'checkout_friction'.
UPLIFT_SQL = f"""\
SELECT
    tenant,
    experiment,
    n_treatment,
    n_holdout,
    rate_treatment,
    rate_holdout,
{UPLIFT_COLUMNS}
FROM
(
    SELECT
        tenant,
        experiment,
{ARM_RATES}
    FROM cx.offers_daily
    WHERE kind = 'cart_abandoned'
    GROUP BY tenant, experiment
)
ORDER BY tenant, experiment"""
