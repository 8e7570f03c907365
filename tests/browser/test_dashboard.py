"""The analysts' dashboard in headless Chromium, on a pipeline fed by the demo storefront.

One pipeline (embedded broker and chdb, started as ``cxstream up`` starts it,
dashboard included) receives a seeded demo day for two tenants through the
Segment SDK; once ClickHouse holds every event, trigger and dead letter,
Chromium opens the dashboard with the token URL, picks each tenant, waits for
the charts and reads every card's SQL and table back from the DOM. The
numbers on the page must be those the views return for the same SQL, the
funnel and the totals must match the storefront's own ledger, no request
may leave 127.0.0.1, and without the token every path answers 401.

Screenshots go to the test's temporary directory; with
CX_DASHBOARD_SCREENSHOTS=1 they are also written to docs/img/.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from pipeline.dashboard.server import cookie_name, cookie_value
from pipeline.demo.run import DAY_MS, SETTLED_AGO_MS, _clock_pages
from pipeline.demo.send import send
from pipeline.demo.storefront import generate
from pipeline.supervisor.runner import Pipeline
from pipeline.settings import Settings
from tests.browser.harness import CHROMIUM, HERE, chromium_missing

pytestmark = pytest.mark.integration

DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"
# tenant -> (write key, visitors, seed): a busy shop and a small one
SHOPS = {"shop-alpha": ("wk_alpha", 1500, 11), "shop-beta": ("wk_beta", 120, 5)}
CHART_VIEWS = {
    "funnel": {"cx.kpi_daily", "cx.events"},
    "abandonment": {"cx.kpi_daily", "cx.offers_daily"},
    "friction": {"cx.friction_daily"},
    "support": {"cx.support_daily"},
    "support_daily": {"cx.support_daily"},
    "offers": {"cx.offers_daily"},
    "deadletters": {"cx.deadletter_daily"},
}


@dataclass
class DashboardRun:
    pipeline: Pipeline
    expected: dict  # tenant -> the storefront's ledger (pipeline.demo.ledger.Expected)
    page: dict  # dashboard.mjs's answer
    answers: dict  # tenant -> chart id -> (columns, rows) of the page's SQL run through the worker after the page
    screenshots: dict[str, dict[str, Path]]  # tenant -> "top"/"bottom" -> png
    base: str


def _scalar(pipeline: Pipeline, sql: str) -> int:
    _, rows = pipeline.query(sql)
    return int(rows[0][0] or 0)


def _wait_stored(pipeline: Pipeline, tenant: str, exp, extra_events: int) -> None:
    """Until ClickHouse holds the tenant's valid events, abandonment triggers and dead letters (as the demo waits)."""
    t = f"tenant = '{tenant}'"
    want = (exp.messages - exp.invalid + extra_events, exp.abandoned_carts, exp.invalid)
    deadline = time.monotonic() + 120
    got = None
    while time.monotonic() < deadline:
        pipeline.restart_exited_workers()
        got = (
            _scalar(pipeline, f"SELECT count() FROM cx.events FINAL WHERE {t}"),
            _scalar(pipeline, f"SELECT count() FROM cx.triggers FINAL WHERE {t} AND kind = 'cart_abandoned'"),
            _scalar(pipeline, f"SELECT count() FROM cx.deadletters FINAL WHERE {t}"),
        )
        if got == want:
            return
        time.sleep(1.0)
    raise AssertionError(f"{tenant}: stored (events, abandoned, dead letters) {got}, expected {want}")


def _drive(base: str, token: str, screenshots: dict[str, dict[str, Path]]) -> dict:
    spec = {
        "chromium": str(CHROMIUM),
        "base": base,
        "token": token,
        "tenants": list(SHOPS),
        "screenshots": {t: {part: str(p) for part, p in paths.items()} for t, paths in screenshots.items()},
        "timeout_ms": 90_000,
    }
    proc = subprocess.run(
        ["node", str(HERE / "dashboard.mjs"), json.dumps(spec)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    page = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "error" not in page, f"{page['error']}\npage: {page.get('error_page')}\nbrowser console: {page['console']}"
    return page


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DashboardRun]:
    missing = chromium_missing()
    if missing is not None:
        pytest.skip(reason=missing)
    tmp = tmp_path_factory.mktemp("dashboard")
    settings = Settings(
        _env_file=None,
        data_dir=tmp / "data",
        collector_port=0,
        worker_web_port=0,
        write_keys=",".join(f"{key}={tenant}" for tenant, (key, _, _) in SHOPS.items()),
        pii_salt="dashboard-test-salt",
        dashboard_refresh_s=2,
        holdout_pct=50,  # both arms of shop-alpha's offers pass 30 triggers: the uplift gets its interval
    )
    now_ms = int(time.time() * 1000)
    start_ms = now_ms - SETTLED_AGO_MS - DAY_MS
    with Pipeline(settings, dashboard=True) as pipeline:
        expected = {}
        # Event time only moves forward on a partition, whatever the tenant: each shop gets a day of its
        # own, the older one sent first, so that no event arrives behind one already processed.
        for i, (tenant, (key, visitors, seed)) in enumerate(reversed(SHOPS.items())):
            day_start = start_ms - (len(SHOPS) - 1 - i) * DAY_MS
            traffic = generate(seed, visitors=visitors, start_ms=day_start, span_ms=DAY_MS)
            report = send(traffic.messages, host=pipeline.collector_url, write_key=key)
            assert report.failed == 0, report.errors[:3]
            expected[tenant] = traffic.expected
        clocks = {}
        for tenant, (key, _, _) in SHOPS.items():
            clock = send(_clock_pages(tenant, settings.kafka_partitions), host=pipeline.collector_url, write_key=key)
            assert clock.failed == 0, clock.errors[:3]
            clocks[tenant] = clock.sent
        for tenant, exp in expected.items():
            _wait_stored(pipeline, tenant, exp, clocks[tenant])
        base = f"http://127.0.0.1:{pipeline.dashboard_port}"
        shots = {"shop-alpha": {part: tmp / f"dashboard-{part}.png" for part in ("top", "bottom")}}
        page = _drive(base, pipeline.token, shots)
        answers = {
            tenant: {card["id"]: pipeline.query(card["sql"]) for card in page["tenants"][tenant]["cards"]}
            for tenant in SHOPS
        }
        if os.environ.get("CX_DASHBOARD_SCREENSHOTS"):
            DOCS_IMG.mkdir(exist_ok=True)
            for part, path in shots["shop-alpha"].items():
                shutil.copy(path, DOCS_IMG / f"dashboard-{part}.png")
        yield DashboardRun(pipeline, expected, page, answers, shots, base)


def _cards(run: DashboardRun, tenant: str) -> dict[str, dict]:
    return {card["id"]: card for card in run.page["tenants"][tenant]["cards"]}


def _same_value(shown: str, value: object) -> bool:
    """A cell's data-value (the JSON value as the page got it) against the value the query returned."""
    if value is None:
        return shown == "null"
    if isinstance(value, bool):
        return shown == str(value).lower()
    if isinstance(value, (int, float)):
        return float(shown) == float(value)
    return shown == str(value)


def _column(card: dict, name: str) -> list[str]:
    i = card["columns"].index(name)
    return [row[i] for row in card["rows"]]


@pytest.mark.parametrize("tenant", list(SHOPS))
def test_every_number_on_the_page_is_what_the_views_return_for_its_sql(run: DashboardRun, tenant: str) -> None:
    cards = _cards(run, tenant)
    assert sorted(cards) == sorted(CHART_VIEWS)
    for chart_id, card in cards.items():
        assert card["state"] == "ready", card
        for view in CHART_VIEWS[chart_id]:
            assert f"FROM {view}" in card["sql"], (chart_id, view)
        assert f"tenant = '{tenant}'" in card["sql"]
        columns, rows = run.answers[tenant][chart_id]
        assert card["columns"] == columns, chart_id
        assert len(card["rows"]) == len(rows), chart_id
        for shown_row, row in zip(card["rows"], rows):
            assert all(_same_value(s, v) for s, v in zip(shown_row, row, strict=True)), (chart_id, shown_row, row)


@pytest.mark.parametrize("tenant", list(SHOPS))
def test_funnel_and_totals_match_the_storefront_ledger(run: DashboardRun, tenant: str) -> None:
    exp = run.expected[tenant]
    cards = _cards(run, tenant)
    funnel = dict(zip(_column(cards["funnel"], "stage"), (int(v) for v in _column(cards["funnel"], "total"))))
    assert list(funnel) == ["sessions", "carts", "checkouts", "orders"]
    assert funnel["carts"] == exp.carts and funnel["orders"] == exp.orders
    assert funnel["sessions"] >= exp.browser_sessions  # plus the helpdesk's and the closing page views' sessions
    assert funnel["carts"] >= funnel["checkouts"] >= funnel["orders"] > 0
    t = f"tenant = '{tenant}'"
    _, [kpi] = run.pipeline.query(f"SELECT sum(sessions), sum(carts), sum(orders) FROM cx.kpi_daily WHERE {t}")
    assert (funnel["sessions"], funnel["carts"], funnel["orders"]) == tuple(int(v) for v in kpi)
    abandoned = sum(int(v) for v in _column(cards["abandonment"], "abandoned_carts"))
    assert abandoned == exp.abandoned_carts
    assert sum(int(v) for v in _column(cards["deadletters"], "dead_letters")) == exp.invalid
    [support] = cards["support"]["rows"]
    assert int(support[cards["support"]["columns"].index("tickets")]) == exp.tickets


def test_each_chart_is_drawn_and_states_its_definition(run: DashboardRun) -> None:
    cards = _cards(run, "shop-alpha")
    for chart_id, card in cards.items():
        assert card["definition"] and card["title"], chart_id
        assert card["drawn"] and not card["empty"], chart_id
    print("query time per chart, ms:", {chart_id: card["ms"] for chart_id, card in cards.items()})
    assert set(cards["support"]["tiles"]) >= {"tickets", "first_response_s_avg", "fcr_rate", "csat", "nps", "ces_avg"}
    offers = cards["offers"]
    [cart_offers] = [row for row in offers["rows"] if row[offers["columns"].index("kind")] == "cart_abandoned"]
    low, high = (float(cart_offers[offers["columns"].index(c)]) for c in ("ci95_low", "ci95_high"))
    assert low < float(cart_offers[offers["columns"].index("uplift")]) < high


def test_the_page_refreshes_itself_and_switches_tenant(run: DashboardRun) -> None:
    for tenant in SHOPS:
        state = run.page["tenants"][tenant]
        assert state["refreshed"], tenant
        assert state["status"].startswith(tenant)
        assert f"tenant={tenant}" in state["url"]
    alpha = _cards(run, "shop-alpha")["funnel"]["rows"]
    beta = _cards(run, "shop-beta")["funnel"]["rows"]
    assert alpha != beta


def test_no_request_leaves_loopback(run: DashboardRun) -> None:
    hosts = {urlsplit(url).netloc for url in run.page["requests"] if not url.startswith(("data:", "blob:"))}
    assert hosts == {urlsplit(run.base).netloc}
    paths = {urlsplit(url).path for url in run.page["requests"]}
    assert {"/static/echarts.min.js", "/static/dashboard.js", "/api/meta", "/api/data"} <= paths


def test_the_token_is_taken_once_and_kept_as_an_httponly_strict_cookie(run: DashboardRun) -> None:
    assert run.page["without_token"]["status"] == 401
    assert "token" not in urlsplit(run.page["url_after_token"]).query
    [cookie] = run.page["cookies"]
    assert cookie == {
        "name": cookie_name(run.pipeline.dashboard_port), "httpOnly": True, "sameSite": "Strict", "value_is_token": False
    }


@pytest.mark.parametrize("path", ["/", "/api/meta", "/api/data?tenant=shop-alpha&days=14", "/static/echarts.min.js"])
def test_without_the_token_every_path_answers_401(run: DashboardRun, path: str) -> None:
    url = run.base + path
    token = run.pipeline.token
    assert requests.get(url, timeout=10).status_code == 401
    assert requests.get(url, headers={"Authorization": "Bearer " + token[:-1]}, timeout=10).status_code == 401
    wrong_cookie = {cookie_name(run.pipeline.dashboard_port): cookie_value(token + "x")}
    assert requests.get(url, cookies=wrong_cookie, timeout=10).status_code == 401
    wrong_query = requests.get(url + ("&" if "?" in path else "?") + "token=nope", allow_redirects=False, timeout=10)
    assert wrong_query.status_code == 401 and "Set-Cookie" not in wrong_query.headers
    good = requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert good.status_code == 200


def test_screenshots_are_small(run: DashboardRun) -> None:
    for part, path in run.screenshots["shop-alpha"].items():
        size = path.stat().st_size
        assert 10_000 < size < 300_000, (part, size)
