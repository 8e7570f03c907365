"""Analyst queries about offers, kept as code so that tests run exactly what the README shows."""

from __future__ import annotations

__all__ = ["UPLIFT_SQL"]

# Uplift of each experiment with a 95 % confidence interval: the difference
# of the arms' recovery rates, with the two-proportion normal approximation
# se = sqrt(p_t (1 - p_t) / n_t + p_h (1 - p_h) / n_h). Over every day in
# cx.offers_daily; add `WHERE day BETWEEN ...` in the inner query for a range.
UPLIFT_SQL = """\
SELECT
    tenant,
    experiment,
    n_treatment,
    n_holdout,
    rate_treatment,
    rate_holdout,
    rate_treatment - rate_holdout AS uplift,
    sqrt(rate_treatment * (1 - rate_treatment) / greatest(n_treatment, 1)
         + rate_holdout * (1 - rate_holdout) / greatest(n_holdout, 1)) AS se,
    uplift - 1.96 * se AS ci95_low,
    uplift + 1.96 * se AS ci95_high
FROM
(
    SELECT
        tenant,
        experiment,
        sumIf(triggers, arm = 'treatment') AS n_treatment,
        sumIf(triggers, arm = 'holdout') AS n_holdout,
        sumIf(recovered_orders, arm = 'treatment') / greatest(n_treatment, 1) AS rate_treatment,
        sumIf(recovered_orders, arm = 'holdout') / greatest(n_holdout, 1) AS rate_holdout
    FROM cx.offers_daily
    GROUP BY tenant, experiment
)
ORDER BY tenant, experiment"""
