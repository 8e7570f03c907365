-- Offers: attribution of orders to abandonment triggers, in-stream loyalty
-- scores, and the analyst views offers_daily and customers.
-- Portable subset as in 0001_base.sql (ClickHouse 18.16 and chdb 26.9): no
-- Nullable, no JOIN; UNION ALL branches cast every column to one type.

-- One row per recovered trigger (the trigger id is the key: an order
-- recovers at most one trigger, a trigger is recovered at most once).
-- `day` is the trigger's UTC day, so a day's recovery rate is about the
-- triggers of that day, wherever their orders fell.
CREATE TABLE IF NOT EXISTS cx.recoveries
(
    tenant String,
    trigger_id String,
    kind String,
    day Date,
    trigger_time DateTime('UTC'),
    trigger_time_ms Int64,
    order_time DateTime('UTC'),
    order_time_ms Int64,
    customer_id String,
    anonymous_id String,
    order_id String,
    revenue Float64,
    holdout UInt8,
    experiment String,
    action String,
    discount_pct UInt8
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(day)
ORDER BY (tenant, trigger_id);

-- The loyalty score a visitor state computed for a customer, at the moments
-- it changed or was used (orders, friction, support, identify, a decision).
-- One row per (tenant, customer, visitor): the version keeps the latest in
-- event time, and a replay writes the same rows again.
CREATE TABLE IF NOT EXISTS cx.customer_scores
(
    tenant String,
    customer_id String,
    visitor_id String,
    scored_at DateTime('UTC'),
    scored_at_ms UInt64,
    loyalty_score UInt8,
    orders UInt32,
    revenue Float64
)
ENGINE = ReplacingMergeTree(scored_at_ms)
ORDER BY (tenant, customer_id, visitor_id);

-- offers_daily: triggers that start an offer decision (cart_abandoned,
-- checkout_friction) and their recoveries, per trigger day, experiment and
-- arm; uplift = treatment recovery_rate - holdout recovery_rate.
--   offers / assists: triggers with that action (holdout triggers have none)
--   recovered_orders: triggers recovered by an order within the
--     attribution window; recovered_revenue: those orders' revenue
--   recovery_rate = recovered_orders / triggers
--   est_discount_cost: recovered revenue x the offer's discount, the cost
--     if every recovered customer used the code
CREATE VIEW IF NOT EXISTS cx.offers_daily AS
SELECT
    tenant,
    day,
    experiment,
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
            if(holdout = 1, 'holdout', 'treatment') AS arm,
            toUInt64(0) AS n_triggers,
            toUInt64(0) AS n_offers,
            toUInt64(0) AS n_assists,
            toUInt64(1) AS n_recovered,
            toFloat64(revenue) AS s_revenue,
            toFloat64(revenue * discount_pct / 100) AS s_cost
        FROM cx.recoveries FINAL
    )
    GROUP BY tenant, day, experiment, arm
);

-- customers: one row per (tenant, customer id) seen in cx.events, exact
-- whatever device or visitor state the events came from.
--   orders: distinct order_ids of Order Completed; ltv: their revenue (each
--     order counted once, with its first event's revenue)
--   first_order_at: the first order's time, 1970-01-01 00:00:00 without one
--   repeat_buyer: 1 with two orders or more
--   last_seen_at: the customer's latest event
--   loyalty_score: the in-stream score of the latest cx.customer_scores row
--     (0 when none was computed)
CREATE VIEW IF NOT EXISTS cx.customers AS
SELECT
    tenant,
    customer_id,
    first_order_at,
    orders,
    ltv,
    toUInt8(orders >= 2) AS repeat_buyer,
    last_seen_at,
    loyalty_score
FROM
(
    SELECT
        tenant,
        customer_id,
        minIf(o_time, is_order = 1) AS first_order_at,
        sum(is_order) AS orders,
        sum(o_revenue) AS ltv,
        max(seen) AS last_seen_at,
        argMax(score, score_ms) AS loyalty_score,
        sum(n_events) AS events
    FROM
    (
        SELECT
            tenant,
            user_id AS customer_id,
            toUInt64(0) AS is_order,
            toDateTime(0, 'UTC') AS o_time,
            toFloat64(0) AS o_revenue,
            max(event_time) AS seen,
            toUInt8(0) AS score,
            toUInt64(0) AS score_ms,
            count() AS n_events
        FROM cx.events FINAL
        WHERE user_id != ''
        GROUP BY tenant, user_id
        UNION ALL
        SELECT
            tenant,
            customer_id,
            toUInt64(1) AS is_order,
            first_time AS o_time,
            toFloat64(first_revenue) AS o_revenue,
            toDateTime(0, 'UTC') AS seen,
            toUInt8(0) AS score,
            toUInt64(0) AS score_ms,
            toUInt64(0) AS n_events
        FROM
        (
            SELECT
                tenant,
                user_id AS customer_id,
                order_id,
                min(event_time) AS first_time,
                argMin(revenue, event_time_ms) AS first_revenue
            FROM cx.events FINAL
            WHERE event = 'Order Completed' AND order_id != '' AND user_id != ''
            GROUP BY tenant, user_id, order_id
        )
        UNION ALL
        SELECT
            tenant,
            customer_id,
            toUInt64(0) AS is_order,
            toDateTime(0, 'UTC') AS o_time,
            toFloat64(0) AS o_revenue,
            toDateTime(0, 'UTC') AS seen,
            toUInt8(loyalty_score) AS score,
            toUInt64(scored_at_ms + 1) AS score_ms,
            toUInt64(0) AS n_events
        FROM cx.customer_scores FINAL
        WHERE customer_id != ''
    )
    GROUP BY tenant, customer_id
    HAVING events > 0
);
