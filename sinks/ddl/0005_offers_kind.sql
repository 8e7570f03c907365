DROP TABLE IF EXISTS cx.offers_daily;

-- offers_daily again, with `kind` (cart_abandoned or checkout_friction): the
-- two kinds are different treatments (a discount offer, help in the
-- checkout) that may share an experiment, so uplift is read per kind. Every
-- column of 0004 stays, with the same meaning, now per (tenant, day,
-- experiment, kind, arm). The view stores nothing: dropping it loses no data.
CREATE VIEW IF NOT EXISTS cx.offers_daily AS
SELECT
    tenant,
    day,
    experiment,
    kind,
    arm,
    triggers,
    offers,
    assists,
    recovered_orders,
    recovered_revenue,
    recovered_orders / greatest(triggers, toUInt64(1)) AS recovery_rate,
    est_discount_cost
FROM
(
    SELECT
        tenant,
        day,
        experiment,
        kind,
        arm,
        sum(n_triggers) AS triggers,
        sum(n_offers) AS offers,
        sum(n_assists) AS assists,
        sum(n_recovered) AS recovered_orders,
        sum(s_revenue) AS recovered_revenue,
        sum(s_cost) AS est_discount_cost
    FROM
    (
        SELECT
            tenant,
            day,
            experiment,
            kind,
            if(holdout = 1, 'holdout', 'treatment') AS arm,
            toUInt64(1) AS n_triggers,
            toUInt64(action = 'offer') AS n_offers,
            toUInt64(action = 'assist') AS n_assists,
            toUInt64(0) AS n_recovered,
            toFloat64(0) AS s_revenue,
            toFloat64(0) AS s_cost
        FROM cx.triggers FINAL
        WHERE kind IN ('cart_abandoned', 'checkout_friction')
        UNION ALL
        SELECT
            tenant,
            day,
            experiment,
            kind,
            if(holdout = 1, 'holdout', 'treatment') AS arm,
            toUInt64(0) AS n_triggers,
            toUInt64(0) AS n_offers,
            toUInt64(0) AS n_assists,
            toUInt64(1) AS n_recovered,
            toFloat64(revenue) AS s_revenue,
            toFloat64(revenue * discount_pct / 100) AS s_cost
        FROM cx.recoveries FINAL
    )
    GROUP BY tenant, day, experiment, kind, arm
);
