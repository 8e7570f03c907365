DROP TABLE IF EXISTS cx.kpi_daily;

-- kpi_daily again (0001_base.sql has the rest of its definition), with
-- sessions as browsing sessions and orders sent from a backend:
--   sessions: only sessions with an event that has an anonymous id; a
--     server-side event (user id only: a backend order, a helpdesk
--     ticket) is no browsing session of its own.
--   converted: the session has an Order Completed, or it is the latest
--     browsing session of the order's customer when the shop's backend
--     sent the order (user id only): the session's last event of that
--     user id less than 30 minutes (the default CX_SESSION_GAP_MS) before
--     the order (docs/identity.md). A backend order converts at most one
--     session; one with no such session converts none.
-- The view stores nothing: dropping it loses no data. GLOBAL IN: on a
-- cluster the subquery reads the Distributed table once.
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
            toUInt64(has_order OR ((tenant, session_id) GLOBAL IN
                (
                    SELECT tenant, session_id
                    FROM
                    (
                        SELECT
                            tenant,
                            arrayReduce(
                                'argMax',
                                arrayFilter((id, t) -> t <= order_ms AND order_ms - t < 1800000, s_ids, s_last),
                                arrayFilter(t -> t <= order_ms AND order_ms - t < 1800000, s_last)
                            ) AS session_id
                        FROM
                        (
                            SELECT
                                tenant,
                                user_id,
                                groupArrayIf(session_id, src = 1) AS s_ids,
                                groupArrayIf(t_ms, src = 1) AS s_last,
                                groupArrayIf(t_ms, src = 2) AS o_times
                            FROM
                            (
                                SELECT tenant, user_id, session_id, max(event_time_ms) AS t_ms, toUInt8(1) AS src
                                FROM cx.events FINAL
                                WHERE session_id != '' AND anonymous_id != '' AND user_id != ''
                                GROUP BY tenant, user_id, session_id
                                UNION ALL
                                SELECT tenant, user_id, '' AS session_id, event_time_ms AS t_ms, toUInt8(2) AS src
                                FROM cx.events FINAL
                                WHERE event = 'Order Completed' AND anonymous_id = '' AND user_id != ''
                            )
                            GROUP BY tenant, user_id
                        )
                        ARRAY JOIN o_times AS order_ms
                    )
                    WHERE session_id != ''
                ))) AS n_converted,
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
            WHERE session_id != '' AND anonymous_id != ''
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
