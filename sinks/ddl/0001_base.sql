-- Base schema: raw tables and the first analyst views.
-- Portable subset: runs unchanged on ClickHouse 18.16 and on chdb 26.9
-- (no DateTime64, Nullable, LowCardinality, TTL, JOIN or window functions).
-- Absent values are '' or 0. Times are DateTime('UTC') so no server or
-- session time zone can shift them; `day` is computed from epoch ms in UTC
-- by the writer, and every view groups by it.
-- One row per record id: ReplacingMergeTree keyed by the id collapses the
-- copies a replay writes, and the views read with FINAL so the numbers are
-- exact before background merges run. A replayed record always lands in the
-- same partition (its `day` is derived from the record), so FINAL sees all
-- copies together.

CREATE TABLE IF NOT EXISTS cx.events
(
    tenant String,
    event_id String,
    day Date,
    event_time DateTime('UTC'),
    event_time_ms Int64,
    received_at DateTime('UTC'),
    type String,
    event String,
    anonymous_id String,
    user_id String,
    session_id String,
    cart_key String,
    order_id String,
    checkout_id String,
    product_id String,
    revenue Float64,
    currency String,
    page_path String,
    properties String,
    email_hash String,
    ip_hash String
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(day)
ORDER BY (tenant, event_id);

CREATE TABLE IF NOT EXISTS cx.triggers
(
    tenant String,
    trigger_id String,
    kind String,
    day Date,
    event_time DateTime('UTC'),
    event_time_ms Int64,
    emitted_at DateTime('UTC'),
    customer_id String,
    anonymous_id String,
    session_id String,
    cart_key String,
    cart_id String,
    cart_value Float64,
    currency String,
    action String,
    holdout UInt8,
    experiment String,
    reasons Array(String),
    friction_score UInt8,
    offer_code String,
    discount_pct UInt8,
    offer_expires_at DateTime('UTC'),
    channel String,
    ref_trigger_id String,
    items String
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(day)
ORDER BY (tenant, trigger_id);

CREATE TABLE IF NOT EXISTS cx.deadletters
(
    tenant String,
    dl_id String,
    day Date,
    received_at DateTime('UTC'),
    reason String,
    detail String,
    source String,
    payload String,
    payload_bytes UInt32
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(day)
ORDER BY (tenant, dl_id);

-- kpi_daily: three per-day aggregates stacked with UNION ALL and summed
-- (portable; FULL JOIN is not). Each branch fills its own columns with 0.
--   sessions: counted on the day of the session's first event; converted
--     when the session has an Order Completed.
--   carts: a cart_key's first Product Added day; abandoned when a
--     cart_abandoned trigger names the same tenant and cart_key (a second
--     UNION ALL instead of a JOIN).
--   orders: one per order_id on its first Order Completed, with the
--     revenue of that event.
-- x / greatest(n, 1) is 0 when n is 0, because x is then 0 too.
CREATE VIEW IF NOT EXISTS cx.kpi_daily AS
SELECT
    tenant,
    day,
    sessions,
    carts,
    orders,
    revenue,
    converted / greatest(sessions, toUInt64(1)) AS conversion_rate,
    abandoned / greatest(carts, toUInt64(1)) AS cart_abandonment_rate,
    revenue / greatest(orders, toUInt64(1)) AS aov
FROM
(
    SELECT
        tenant,
        day,
        sum(n_sessions) AS sessions,
        sum(n_converted) AS converted,
        sum(n_carts) AS carts,
        sum(n_abandoned) AS abandoned,
        sum(n_orders) AS orders,
        sum(s_revenue) AS revenue
    FROM
    (
        SELECT
            tenant,
            first_day AS day,
            toUInt64(1) AS n_sessions,
            toUInt64(has_order) AS n_converted,
            toUInt64(0) AS n_carts,
            toUInt64(0) AS n_abandoned,
            toUInt64(0) AS n_orders,
            toFloat64(0) AS s_revenue
        FROM
        (
            SELECT
                tenant,
                session_id,
                min(day) AS first_day,
                max(event = 'Order Completed') AS has_order
            FROM cx.events FINAL
            WHERE session_id != ''
            GROUP BY tenant, session_id
        )
        UNION ALL
        SELECT
            tenant,
            first_day AS day,
            toUInt64(0) AS n_sessions,
            toUInt64(0) AS n_converted,
            toUInt64(1) AS n_carts,
            toUInt64(was_abandoned) AS n_abandoned,
            toUInt64(0) AS n_orders,
            toFloat64(0) AS s_revenue
        FROM
        (
            SELECT
                tenant,
                cart_key,
                minIf(day, source = 'event') AS first_day,
                max(source = 'trigger') AS was_abandoned,
                countIf(source = 'event') AS adds
            FROM
            (
                SELECT tenant, cart_key, day, 'event' AS source
                FROM cx.events FINAL
                WHERE event = 'Product Added' AND cart_key != ''
                UNION ALL
                SELECT tenant, cart_key, day, 'trigger' AS source
                FROM cx.triggers FINAL
                WHERE kind = 'cart_abandoned' AND cart_key != ''
            )
            GROUP BY tenant, cart_key
            HAVING adds > 0
        )
        UNION ALL
        SELECT
            tenant,
            first_day AS day,
            toUInt64(0) AS n_sessions,
            toUInt64(0) AS n_converted,
            toUInt64(0) AS n_carts,
            toUInt64(0) AS n_abandoned,
            toUInt64(1) AS n_orders,
            order_revenue AS s_revenue
        FROM
        (
            SELECT
                tenant,
                order_id,
                min(day) AS first_day,
                argMin(revenue, event_time_ms) AS order_revenue
            FROM cx.events FINAL
            WHERE event = 'Order Completed' AND order_id != ''
            GROUP BY tenant, order_id
        )
    )
    GROUP BY tenant, day
);

CREATE VIEW IF NOT EXISTS cx.deadletter_daily AS
SELECT
    tenant,
    day,
    reason,
    count() AS events
FROM cx.deadletters FINAL
GROUP BY tenant, day, reason;
