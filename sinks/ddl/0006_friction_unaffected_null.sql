DROP TABLE IF EXISTS cx.friction_daily;

-- friction_daily again, as in 0002 except conversion_rate_unaffected: NULL
-- (not 0) on a day when every session was affected by the signal on that
-- page, since there is no unaffected session to compare with. A 0 read as
-- "the others never convert". The view stores nothing: dropping it loses
-- no data.
CREATE VIEW IF NOT EXISTS cx.friction_daily AS
SELECT
    tenant,
    day,
    signal,
    page,
    sessions AS sessions_affected,
    occurrences,
    converted / greatest(sessions, toUInt64(1)) AS conversion_rate_affected,
    if(day_sessions = sessions, NULL,
       (toInt64(day_converted) - toInt64(converted)) / (toInt64(day_sessions) - toInt64(sessions)))
        AS conversion_rate_unaffected
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
