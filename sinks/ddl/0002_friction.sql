-- Friction: one row per signal occurrence (pipeline/detect/friction.py), and
-- the friction_daily view. Same portable subset and FINAL reads as 0001.
-- friction_id derives from the event that revealed the signal and the
-- signal, so a replay writes the same ids and ReplacingMergeTree keeps one.
-- `detail` is the clicked selector (click signals), the checkout id
-- (payment_failed) or `step N` / `coupon` (checkout_loop); never free text.

CREATE TABLE IF NOT EXISTS cx.friction
(
    tenant String,
    friction_id String,
    day Date,
    event_time DateTime('UTC'),
    event_time_ms Int64,
    session_id String,
    anonymous_id String,
    customer_id String,
    signal String,
    page String,
    detail String
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(day)
ORDER BY (tenant, friction_id);

-- friction_daily: per tenant, day, signal and page.
--   occurrences: signal rows that day; sessions_affected: distinct sessions
--     among them (a session once per signal and page).
--   The population of a day is every session with an event (or a signal)
--     that day; a session is converted when it has an Order Completed at
--     any time. conversion_rate_affected = converted affected sessions /
--     affected sessions; conversion_rate_unaffected = the same over the
--     day's other sessions (population minus affected).
-- Without JOIN (not in the portable subset): events and friction rows are
-- stacked with UNION ALL and grouped by session, which gives each session
-- its conversion and an array of (day, signal, page) hits, with one
-- (day, '', '') entry per day it was seen; ARRAY JOIN unrolls them. The
-- day totals (signal '') travel to each signal row the same way.
CREATE VIEW IF NOT EXISTS cx.friction_daily AS
SELECT
    tenant,
    day,
    signal,
    page,
    sessions AS sessions_affected,
    occurrences,
    converted / greatest(sessions, toUInt64(1)) AS conversion_rate_affected,
    (toInt64(day_converted) - toInt64(converted))
        / greatest(toInt64(day_sessions) - toInt64(sessions), toInt64(1)) AS conversion_rate_unaffected
FROM
(
    SELECT
        tenant,
        day,
        day_sessions,
        day_converted,
        per_signal.1 AS signal,
        per_signal.2 AS page,
        per_signal.3 AS sessions,
        per_signal.4 AS converted,
        per_signal.5 AS occurrences
    FROM
    (
        SELECT
            tenant,
            day,
            sumIf(n_sessions, signal = '') AS day_sessions,
            sumIf(n_converted, signal = '') AS day_converted,
            groupArrayIf((signal, page, n_sessions, n_converted, n_hits), signal != '') AS per_signal_rows
        FROM
        (
            SELECT
                tenant,
                day,
                signal,
                page,
                count() AS n_sessions,
                sum(conv) AS n_converted,
                sum(hits_in_session) AS n_hits
            FROM
            (
                SELECT
                    tenant,
                    session_id,
                    conv,
                    hit.1 AS day,
                    hit.2 AS signal,
                    hit.3 AS page,
                    count() AS hits_in_session
                FROM
                (
                    SELECT
                        tenant,
                        session_id,
                        max(is_order) AS conv,
                        arrayConcat(
                            arrayMap(d -> (d, '', ''), groupUniqArray(seen_day)),
                            groupArrayIf((seen_day, hit_signal, hit_page), source = 'friction')
                        ) AS hits
                    FROM
                    (
                        SELECT
                            tenant,
                            session_id,
                            day AS seen_day,
                            toUInt64(event = 'Order Completed') AS is_order,
                            '' AS hit_signal,
                            '' AS hit_page,
                            'event' AS source
                        FROM cx.events FINAL
                        WHERE session_id != ''
                        UNION ALL
                        SELECT
                            tenant,
                            session_id,
                            day AS seen_day,
                            toUInt64(0) AS is_order,
                            signal AS hit_signal,
                            page AS hit_page,
                            'friction' AS source
                        FROM cx.friction FINAL
                        WHERE session_id != ''
                    )
                    GROUP BY tenant, session_id
                )
                ARRAY JOIN hits AS hit
                GROUP BY tenant, session_id, conv, day, signal, page
            )
            GROUP BY tenant, day, signal, page
        )
        GROUP BY tenant, day
    )
    ARRAY JOIN per_signal_rows AS per_signal
);
