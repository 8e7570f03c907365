-- Support experience: tickets, messages (sentiment only, never text), surveys,
-- and the support_daily view. Same portable subset as 0001_base.sql.
--
-- support_tickets holds one row per ticket version: the detector writes the
-- ticket's whole state again after every event that changes it, with a
-- version that only grows, and ReplacingMergeTree(version) keeps the latest
-- (FINAL before merges). `day` is the UTC day the ticket was opened; it
-- never changes, so every version lands in the same partition.
-- Absent durations are 0 with their flag at 0 (has_response, resolved);
-- absent survey scores are 0 with has_<kind> at 0.
CREATE TABLE IF NOT EXISTS cx.support_tickets
(
    tenant String,
    ticket_id String,
    version UInt32,
    day Date,
    opened_at DateTime('UTC'),
    opened_ms Int64,
    updated_at DateTime('UTC'),
    customer_id String,
    channel String,
    topic String,
    order_id String,
    has_response UInt8,
    first_response_s Float64,
    resolved UInt8,
    resolution_s Float64,
    resolutions UInt16,
    reopened UInt8,
    agent_replies UInt16,
    contacts UInt16,
    negative_messages UInt16,
    fcr UInt8,
    has_csat UInt8,
    csat_score Float64,
    has_nps UInt8,
    nps_score Float64,
    has_ces UInt8,
    ces_score Float64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(day)
ORDER BY (tenant, ticket_id);

-- One row per Support Message Sent (id = the event id). The text is scored
-- in the worker and dropped: only language, score and label are kept.
-- `sentiment_label` is '' for agent messages and messages without text.
CREATE TABLE IF NOT EXISTS cx.support_messages
(
    tenant String,
    message_id String,
    day Date,
    event_time DateTime('UTC'),
    event_time_ms Int64,
    ticket_id String,
    customer_id String,
    author String,
    lang String,
    sentiment Float32,
    sentiment_label String
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(day)
ORDER BY (tenant, message_id);

-- One row per valid Survey Answered (id = the event id); a comment is kept
-- only as its sentiment.
CREATE TABLE IF NOT EXISTS cx.surveys
(
    tenant String,
    survey_id String,
    day Date,
    event_time DateTime('UTC'),
    event_time_ms Int64,
    customer_id String,
    survey String,
    score Float64,
    ticket_id String,
    order_id String,
    has_comment UInt8,
    comment_sentiment Float32,
    comment_label String
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(day)
ORDER BY (tenant, survey_id);

-- support_daily: three per-day aggregates stacked with UNION ALL, then
-- summed (counts) or maxed (ticket statistics, which only the first branch
-- fills; the others give 0).
--   tickets: by the day they were opened. first_response_s_* over tickets
--     with an agent reply; the median and p90 interpolate linearly between
--     the two nearest ranks of the sorted values, h = (n - 1) * q (as
--     quantile() does below 8,192 values, but exact at any size).
--     fcr_rate = first-contact resolutions / resolved tickets.
--   messages: by their own day; negative_sentiment_share = negative
--     customer messages / customer messages with text.
--   surveys: by the day they were answered. csat = answers 4-5 / answers;
--     nps = 100 * (answers 9-10 - answers 0-6) / answers; ces_avg = mean.
-- x / greatest(n, 1) is 0 when n is 0, because x is then 0 too: the answer
-- counts tell "no answers" from a score of 0.
CREATE VIEW IF NOT EXISTS cx.support_daily AS
SELECT
    tenant,
    day,
    tickets,
    first_response_s_avg,
    first_response_s_median,
    first_response_s_p90,
    fcr_rate,
    csat,
    nps,
    ces_avg,
    negative_sentiment_share,
    responded_tickets,
    resolved_tickets,
    fcr_tickets,
    reopened_tickets,
    resolution_s_avg,
    customer_messages,
    negative_messages,
    csat_answers,
    nps_answers,
    ces_answers
FROM
(
    SELECT
        tenant,
        day,
        sum(n_tickets) AS tickets,
        sum(n_responded) AS responded_tickets,
        max(fr_avg) AS first_response_s_avg,
        max(fr_median) AS first_response_s_median,
        max(fr_p90) AS first_response_s_p90,
        sum(n_resolved) AS resolved_tickets,
        sum(n_fcr) AS fcr_tickets,
        sum(n_reopened) AS reopened_tickets,
        max(res_avg) AS resolution_s_avg,
        fcr_tickets / greatest(resolved_tickets, toUInt64(1)) AS fcr_rate,
        sum(n_customer) AS customer_messages,
        sum(n_negative) AS negative_messages,
        negative_messages / greatest(customer_messages, toUInt64(1)) AS negative_sentiment_share,
        sum(n_csat) AS csat_answers,
        sum(n_csat_ok) / greatest(csat_answers, toUInt64(1)) AS csat,
        sum(n_nps) AS nps_answers,
        100 * (toInt64(sum(n_promoters)) - toInt64(sum(n_detractors))) / greatest(nps_answers, toUInt64(1)) AS nps,
        sum(n_ces) AS ces_answers,
        sum(s_ces) / greatest(ces_answers, toUInt64(1)) AS ces_avg
    FROM
    (
        SELECT
            tenant,
            day,
            n_tickets,
            n_responded,
            if(n_responded = 0, 0, fr_sum / n_responded) AS fr_avg,
            if(n_responded = 0, 0,
                fr[greatest(toInt64(floor(h50)) + 1, 1)]
                + (h50 - floor(h50)) * (fr[least(toInt64(floor(h50)) + 2, toInt64(n_responded))] - fr[greatest(toInt64(floor(h50)) + 1, 1)])
            ) AS fr_median,
            if(n_responded = 0, 0,
                fr[greatest(toInt64(floor(h90)) + 1, 1)]
                + (h90 - floor(h90)) * (fr[least(toInt64(floor(h90)) + 2, toInt64(n_responded))] - fr[greatest(toInt64(floor(h90)) + 1, 1)])
            ) AS fr_p90,
            n_resolved,
            n_fcr,
            n_reopened,
            if(n_resolved = 0, 0, res_sum / n_resolved) AS res_avg,
            toUInt64(0) AS n_customer,
            toUInt64(0) AS n_negative,
            toUInt64(0) AS n_csat,
            toUInt64(0) AS n_csat_ok,
            toUInt64(0) AS n_nps,
            toUInt64(0) AS n_promoters,
            toUInt64(0) AS n_detractors,
            toUInt64(0) AS n_ces,
            toFloat64(0) AS s_ces
        FROM
        (
            SELECT
                tenant,
                day,
                count() AS n_tickets,
                toUInt64(sum(has_response)) AS n_responded,
                sumIf(first_response_s, has_response = 1) AS fr_sum,
                arraySort(groupArrayIf(first_response_s, has_response = 1)) AS fr,
                (toInt64(n_responded) - 1) * 0.5 AS h50,
                (toInt64(n_responded) - 1) * 0.9 AS h90,
                toUInt64(sum(resolved)) AS n_resolved,
                toUInt64(sum(fcr)) AS n_fcr,
                toUInt64(sum(reopened)) AS n_reopened,
                sumIf(resolution_s, resolved = 1) AS res_sum
            FROM cx.support_tickets FINAL
            GROUP BY tenant, day
        )
        UNION ALL
        SELECT
            tenant,
            day,
            toUInt64(0) AS n_tickets,
            toUInt64(0) AS n_responded,
            toFloat64(0) AS fr_avg,
            toFloat64(0) AS fr_median,
            toFloat64(0) AS fr_p90,
            toUInt64(0) AS n_resolved,
            toUInt64(0) AS n_fcr,
            toUInt64(0) AS n_reopened,
            toFloat64(0) AS res_avg,
            toUInt64(count()) AS n_customer,
            toUInt64(countIf(sentiment_label = 'negative')) AS n_negative,
            toUInt64(0) AS n_csat,
            toUInt64(0) AS n_csat_ok,
            toUInt64(0) AS n_nps,
            toUInt64(0) AS n_promoters,
            toUInt64(0) AS n_detractors,
            toUInt64(0) AS n_ces,
            toFloat64(0) AS s_ces
        FROM cx.support_messages FINAL
        WHERE author = 'customer' AND sentiment_label != ''
        GROUP BY tenant, day
        UNION ALL
        SELECT
            tenant,
            day,
            toUInt64(0) AS n_tickets,
            toUInt64(0) AS n_responded,
            toFloat64(0) AS fr_avg,
            toFloat64(0) AS fr_median,
            toFloat64(0) AS fr_p90,
            toUInt64(0) AS n_resolved,
            toUInt64(0) AS n_fcr,
            toUInt64(0) AS n_reopened,
            toFloat64(0) AS res_avg,
            toUInt64(0) AS n_customer,
            toUInt64(0) AS n_negative,
            toUInt64(countIf(survey = 'csat')) AS n_csat,
            toUInt64(countIf(survey = 'csat' AND score >= 4)) AS n_csat_ok,
            toUInt64(countIf(survey = 'nps')) AS n_nps,
            toUInt64(countIf(survey = 'nps' AND score >= 9)) AS n_promoters,
            toUInt64(countIf(survey = 'nps' AND score <= 6)) AS n_detractors,
            toUInt64(countIf(survey = 'ces')) AS n_ces,
            sumIf(score, survey = 'ces') AS s_ces
        FROM cx.surveys FINAL
        GROUP BY tenant, day
    )
    GROUP BY tenant, day
);
