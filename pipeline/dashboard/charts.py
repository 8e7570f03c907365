"""The dashboard's charts: each one a definition and the SQL over the analysts' views that produces it.

The SQL is what the page shows under each chart and what the server runs,
as an analyst's read-only query (``pipeline.analyst_sql``), on the same
views analysts query (``cx.kpi_daily``, ``cx.friction_daily``,
``cx.support_daily``, ``cx.offers_daily``, ``cx.deadletter_daily``; the
checkout step of the funnel reads ``cx.events``, since no view counts
checkouts). ``render`` fills in the tenant and the first day as literals, so
the text shown can be pasted into ``cxstream query`` as it is.

The queries use what both ClickHouse 18.16 and the embedded chdb run (no
JOIN, no window function), like the views themselves (docs/clickhouse.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta

from pipeline.offers_report import ARM_RATES, MIN_ARM_TRIGGERS, UPLIFT_COLUMNS

__all__ = ["CHARTS", "Chart", "TENANTS_SQL", "first_day", "render", "sql_string"]


@dataclass(frozen=True)
class Chart:
    """One chart: ``id`` (also the page's element id), title, definition, SQL template.

    The template holds ``{tenant}`` and ``{since}`` where ``render`` puts a
    quoted tenant and ``toDate('YYYY-MM-DD')``; nothing else is substituted.
    """

    id: str
    title: str
    definition: str
    sql: str


def sql_string(value: str) -> str:
    """``value`` as a ClickHouse string literal: quoted, backslashes and quotes escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def first_day(today: date, days: int) -> date:
    """The first UTC day of a window of ``days`` days that ends with ``today``."""
    if days < 1:
        raise ValueError("days must be >= 1")
    return today - timedelta(days=days - 1)


_PLACEHOLDER = re.compile(r"\{(tenant|since)\}")


def render(chart: Chart, tenant: str, since: date) -> str:
    """The SQL of ``chart`` for one tenant, from ``since`` (a UTC day) on.

    One pass over the template: a tenant holding ``{since}`` stays text
    inside its literal (replacing one placeholder after the other put the
    date's quotes into the tenant's literal).
    """
    values = {"tenant": sql_string(tenant), "since": f"toDate('{since.isoformat()}')"}
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], chart.sql)


# Tenants to pick from: those with events in the store (the page adds the
# configured ones, which may have none yet).
TENANTS_SQL = "SELECT tenant FROM cx.events GROUP BY tenant ORDER BY tenant"

FUNNEL = Chart(
    id="funnel",
    title="Conversion funnel",
    definition=(
        "Over the days shown. sessions: sessions that started on those days (cx.kpi_daily.sessions). "
        "carts: carts whose first Product Added fell on those days (kpi_daily.carts). checkouts: distinct "
        "checkout ids of Checkout Started events on those days (cx.events; no view counts checkouts). "
        "orders: distinct order ids of Order Completed on those days (kpi_daily.orders). Each step is counted "
        "on its own: a cart or an order may belong to a session of an earlier day."
    ),
    sql="""\
SELECT stage, total
FROM
(
    SELECT
        ['sessions', 'carts', 'checkouts', 'orders'] AS stages,
        [n_sessions, n_carts, n_checkouts, n_orders] AS totals
    FROM
    (
        SELECT
            sum(sessions) AS n_sessions,
            sum(carts) AS n_carts,
            (
                SELECT uniqExact(checkout_id)
                FROM cx.events FINAL
                WHERE tenant = {tenant} AND day >= {since} AND event = 'Checkout Started' AND checkout_id != ''
            ) AS n_checkouts,
            sum(orders) AS n_orders
        FROM cx.kpi_daily
        WHERE tenant = {tenant} AND day >= {since}
    )
)
ARRAY JOIN stages AS stage, totals AS total""",
)

ABANDONMENT = Chart(
    id="abandonment",
    title="Cart abandonment and recovered revenue by day",
    definition=(
        "Per UTC day. carts and cart_abandonment_rate come from cx.kpi_daily: a cart counts on the day of "
        "its first Product Added and is abandoned when a cart_abandoned trigger names it; abandoned_carts = "
        "carts x rate. Recovered revenue comes from cx.offers_daily, on the day of the trigger (abandoned "
        "cart or checkout friction) that an order within the attribution window recovered: treatment "
        "(an offer or an assist was sent) and holdout (nothing was sent; those customers came back on "
        "their own) apart."
    ),
    sql="""\
SELECT
    day,
    sum(n_carts) AS carts,
    toUInt64(round(sum(rate) * sum(n_carts))) AS abandoned_carts,
    sum(rate) AS cart_abandonment_rate,
    sum(rev_treatment) AS recovered_revenue_treatment,
    sum(rev_holdout) AS recovered_revenue_holdout,
    sum(n_recovered) AS recovered_orders
FROM
(
    SELECT
        day,
        carts AS n_carts,
        cart_abandonment_rate AS rate,
        toFloat64(0) AS rev_treatment,
        toFloat64(0) AS rev_holdout,
        toUInt64(0) AS n_recovered
    FROM cx.kpi_daily
    WHERE tenant = {tenant} AND day >= {since}
    UNION ALL
    SELECT
        day,
        toUInt64(0) AS n_carts,
        toFloat64(0) AS rate,
        sumIf(recovered_revenue, arm = 'treatment') AS rev_treatment,
        sumIf(recovered_revenue, arm = 'holdout') AS rev_holdout,
        sum(recovered_orders) AS n_recovered
    FROM cx.offers_daily
    WHERE tenant = {tenant} AND day >= {since}
    GROUP BY day
)
GROUP BY day
ORDER BY day""",
)

FRICTION = Chart(
    id="friction",
    title="Friction signals by page and their conversion cost",
    definition=(
        "From cx.friction_daily, the 12 (signal, page) pairs with the most affected sessions over the days "
        "shown. sessions_affected: sessions with the signal on that page, summed over days; occurrences: "
        "signal rows. conversion_affected: share of those sessions with an Order Completed. "
        "conversion_unaffected: the same share among the other sessions of the same days, each day weighted "
        "by its affected sessions (a day-matched comparison; days when every session was affected have no "
        "comparison and are left out). conversion_gap = affected - unaffected; missed_orders = sessions "
        "affected x (unaffected rate - affected rate), day by day: the orders those sessions would have had "
        "at the unaffected rate. A gap is an association, not a proven cause."
    ),
    sql="""\
SELECT
    signal,
    page,
    sum(affected) AS sessions_affected,
    sum(hits) AS occurrences,
    sum(rate_affected * affected) / sum(affected) AS conversion_affected,
    sum(rate_unaffected * affected) / nullIf(sum(if(isNull(rate_unaffected), 0, affected)), 0) AS conversion_unaffected,
    conversion_affected - conversion_unaffected AS conversion_gap,
    sum((rate_unaffected - rate_affected) * affected) AS missed_orders
FROM
(
    SELECT
        signal,
        page,
        sessions_affected AS affected,
        occurrences AS hits,
        conversion_rate_affected AS rate_affected,
        conversion_rate_unaffected AS rate_unaffected
    FROM cx.friction_daily
    WHERE tenant = {tenant} AND day >= {since}
)
GROUP BY signal, page
ORDER BY sessions_affected DESC, signal, page
LIMIT 12""",
)

SUPPORT = Chart(
    id="support",
    title="Support KPIs",
    definition=(
        "From cx.support_daily over the days shown; each rate is recomputed from the counts behind it, not "
        "averaged over days. first_response_s_avg: mean seconds from a ticket's opening to the first agent "
        "reply, over tickets with a reply. fcr_rate: resolved tickets resolved at first contact / resolved "
        "tickets. csat: CSAT answers of 4 or 5 / CSAT answers. nps: 100 x (answers 9-10 - answers 0-6) / "
        "NPS answers. ces_avg: mean CES answer. negative_sentiment_share: customer messages scored "
        "negative / customer messages with text. Tickets count on the day they were opened, messages and "
        "survey answers on their own day."
    ),
    sql="""\
SELECT
    sum(n_tickets) AS tickets,
    sum(fr_avg * n_responded) / greatest(sum(n_responded), toUInt64(1)) AS first_response_s_avg,
    sum(n_fcr) / greatest(sum(n_resolved), toUInt64(1)) AS fcr_rate,
    sum(csat_share * n_csat) / greatest(sum(n_csat), toUInt64(1)) AS csat,
    sum(nps_score * n_nps) / greatest(sum(n_nps), toUInt64(1)) AS nps,
    sum(ces_mean * n_ces) / greatest(sum(n_ces), toUInt64(1)) AS ces_avg,
    sum(n_negative) / greatest(sum(n_messages), toUInt64(1)) AS negative_sentiment_share,
    sum(n_responded) AS responded_tickets,
    sum(n_resolved) AS resolved_tickets,
    sum(n_csat) AS csat_answers,
    sum(n_nps) AS nps_answers,
    sum(n_ces) AS ces_answers,
    sum(n_messages) AS customer_messages
FROM
(
    SELECT
        tickets AS n_tickets,
        first_response_s_avg AS fr_avg,
        responded_tickets AS n_responded,
        resolved_tickets AS n_resolved,
        fcr_tickets AS n_fcr,
        csat AS csat_share,
        csat_answers AS n_csat,
        nps AS nps_score,
        nps_answers AS n_nps,
        ces_avg AS ces_mean,
        ces_answers AS n_ces,
        negative_messages AS n_negative,
        customer_messages AS n_messages
    FROM cx.support_daily
    WHERE tenant = {tenant} AND day >= {since}
)""",
)

SUPPORT_DAILY = Chart(
    id="support_daily",
    title="Support by day",
    definition=(
        "cx.support_daily as it is, one row per UTC day: tickets opened, the median and 90th percentile "
        "of the first response in seconds (tickets with an agent reply; linear interpolation between the "
        "two nearest ranks), and the day's FCR, CSAT, NPS, CES and negative-sentiment share as defined above."
    ),
    sql="""\
SELECT
    day,
    tickets,
    first_response_s_median,
    first_response_s_p90,
    fcr_rate,
    csat,
    nps,
    ces_avg,
    negative_sentiment_share
FROM cx.support_daily
WHERE tenant = {tenant} AND day >= {since}
ORDER BY day""",
)

OFFERS = Chart(
    id="offers",
    title="Offers and assists: uplift per experiment",
    definition=(
        "From cx.offers_daily over the days shown, per experiment and trigger kind (cart_abandoned: "
        "discount offers; checkout_friction: checkout assists). n_treatment / n_holdout: triggers in each "
        "arm; offers_sent / assists_sent: triggers answered with an offer or an assist; revenue_recovered: "
        "revenue of the recovered orders, both arms; rate_*: recovered orders / triggers of the arm; uplift = rate_treatment - rate_holdout, with "
        "a 95 % interval uplift +/- 1.96 se, se = sqrt(p_t (1 - p_t) / n_t + p_h (1 - p_h) / n_h) (normal "
        f"approximation, NULL when an arm has fewer than {MIN_ARM_TRIGGERS} triggers). An interval that "
        "contains 0 shows no measurable effect."
    ),
    sql=f"""\
SELECT
    experiment,
    kind,
    n_treatment,
    n_holdout,
    offers_sent,
    assists_sent,
    revenue_recovered,
    rate_treatment,
    rate_holdout,
{UPLIFT_COLUMNS}
FROM
(
    SELECT
        experiment,
        kind,
        sum(offers) AS offers_sent,
        sum(assists) AS assists_sent,
        sum(recovered_revenue) AS revenue_recovered,
{ARM_RATES}
    FROM cx.offers_daily
    WHERE tenant = {{tenant}} AND day >= {{since}}
    GROUP BY experiment, kind
)
ORDER BY experiment, kind""",
)

DEADLETTERS = Chart(
    id="deadletters",
    title="Dead letters by reason",
    definition=(
        "From cx.deadletter_daily: messages the pipeline could not use (bad JSON or encoding, schema "
        "violations, missing or mistyped properties, oversize, event time out of the window, processing "
        "errors), per UTC day they were received and reason, for this tenant (a dead letter has a tenant "
        "when its write key was known). Each one is kept in cx.deadletters with its payload."
    ),
    sql="""\
SELECT day, reason, sum(events) AS dead_letters
FROM cx.deadletter_daily
WHERE tenant = {tenant} AND day >= {since}
GROUP BY day, reason
ORDER BY day, reason""",
)

CHARTS: tuple[Chart, ...] = (FUNNEL, ABANDONMENT, FRICTION, SUPPORT, SUPPORT_DAILY, OFFERS, DEADLETTERS)
