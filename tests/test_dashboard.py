"""The dashboard server's rules without a pipeline: token, cookie, redirect, 401s, SQL rendering.

The numbers themselves are checked against a real pipeline in Chromium
(tests/browser/test_dashboard.py); here the store is a recorder that
answers every query with one fixed row, so that what is tested is who gets
an answer, not what the answer is.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.dashboard.charts import CHARTS, Chart, first_day, render, sql_string
from pipeline.dashboard.server import Dashboard, StoreUnavailable, cookie_name, cookie_value, make_app
from pipeline.settings import Settings
from pipeline.webtoken import new_token, read_token
from sinks.client import ClickHouse, connect

PORT = 8123  # only names the cookie: the test server listens where aiohttp chooses


class RecordingStore:
    def __init__(self, unavailable: bool = False) -> None:
        self.queries: list[str] = []
        self.unavailable = unavailable

    def query(self, sql: str) -> tuple[list[str], list]:
        if self.unavailable:
            raise StoreUnavailable("no pipeline runs on /nowhere: start cxstream up")
        self.queries.append(sql)
        return ["x"], [[1]]


def _dashboard(data_dir: Path, store: RecordingStore) -> Dashboard:
    settings = Settings(_env_file=None, data_dir=data_dir, write_keys="wk=shop-a")
    return Dashboard(settings, PORT, store, token_of=lambda: read_token(data_dir), today=lambda: date(2026, 3, 10))


@pytest.fixture
async def client(tmp_path: Path):
    new_token(tmp_path)
    store = RecordingStore()
    async with TestClient(TestServer(make_app(_dashboard(tmp_path, store)))) as c:
        c.store = store
        c.token = read_token(tmp_path)
        c.data_dir = tmp_path
        yield c


def test_sql_string_escapes_quotes_and_backslashes() -> None:
    assert sql_string("shop") == "'shop'"
    assert sql_string("o'brien\\x") == "'o\\'brien\\\\x'"


def test_window_of_14_days_starts_13_days_before_today() -> None:
    assert first_day(date(2026, 3, 10), 14) == date(2026, 2, 25)
    assert first_day(date(2026, 3, 10), 1) == date(2026, 3, 10)
    with pytest.raises(ValueError):
        first_day(date(2026, 3, 10), 0)


def test_every_chart_renders_to_sql_with_the_tenant_and_day_as_literals() -> None:
    for chart in CHARTS:
        sql = render(chart, "shop'a", date(2026, 2, 25))
        assert "{tenant}" not in sql and "{since}" not in sql, chart.id
        assert "tenant = 'shop\\'a'" in sql, chart.id
        assert "toDate('2026-02-25')" in sql, chart.id


@pytest.fixture(scope="module")
def chdb(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    ch = connect(f"chdb://{tmp_path_factory.mktemp('chdb')}")
    yield ch
    ch.close()


# The tenant comes from the page's query string: any text, the placeholders' own names among it.
TENANTS = st.text(st.characters(exclude_categories=["Cs"]), max_size=40) | st.builds(
    "".join, st.lists(st.sampled_from(["{since}", "{tenant}", "'", "\\", "\\'", "--", ";", "/*", "a", "é", "\x00", "\n"]), max_size=8)
)


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(tenant=TENANTS, since=st.dates(date(2000, 1, 1), date(2099, 12, 31)))
def test_any_tenant_renders_as_one_literal_that_clickhouse_reads_back_as_it_is(chdb: ClickHouse, tenant: str, since: date) -> None:
    probe = Chart(id="probe", title="probe", definition="probe", sql="SELECT {tenant} AS t, {since} AS d, {tenant} = {tenant} AS same")
    assert chdb.execute(render(probe, tenant, since)) == [(tenant, since, 1)]


@pytest.mark.parametrize("path", ["/", "/static/echarts.min.js", "/api/meta", "/api/data?tenant=shop-a"])
async def test_without_token_every_path_is_401_and_runs_no_query(client, path: str) -> None:
    response = await client.get(path)
    assert response.status == 401
    assert client.store.queries == []


async def test_token_in_url_sets_a_strict_httponly_cookie_and_redirects_without_it(client) -> None:
    response = await client.get(f"/?token={client.token}&x=1", allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == "/?x=1"
    cookie = response.cookies[cookie_name(PORT)]
    assert cookie.value == cookie_value(client.token) != client.token
    assert cookie["httponly"] is True and cookie["samesite"] == "Strict"
    follow = await client.get("/api/data?tenant=shop-a")  # the client's jar now holds the cookie
    assert follow.status == 200


async def test_wrong_token_in_url_sets_no_cookie(client) -> None:
    response = await client.get("/?token=wrong", allow_redirects=False)
    assert response.status == 401
    assert cookie_name(PORT) not in response.cookies


async def test_bearer_header_opens_the_data_and_the_page_is_served_with_a_strict_csp(client) -> None:
    headers = {"Authorization": f"Bearer {client.token}"}
    data = await client.get("/api/data?tenant=shop-a&days=7", headers=headers)
    assert data.status == 200
    body = await data.json()
    assert [c["id"] for c in body["charts"]] == [c.id for c in CHARTS]
    assert body["since"] == "2026-03-04"
    assert len(client.store.queries) == len(CHARTS)
    page = await client.get("/", headers=headers)
    assert page.status == 200
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]


async def test_a_new_token_ends_the_old_cookie(client) -> None:
    await client.get(f"/?token={client.token}", allow_redirects=False)
    assert (await client.get("/api/meta")).status == 200
    new_token(client.data_dir)  # as the next `cxstream up` does
    assert (await client.get("/api/meta")).status == 401


async def test_answers_are_cached_for_two_seconds_per_tenant_and_window(client) -> None:
    headers = {"Authorization": f"Bearer {client.token}"}
    for _ in range(3):
        assert (await client.get("/api/data?tenant=shop-a&days=7", headers=headers)).status == 200
    assert len(client.store.queries) == len(CHARTS)
    assert (await client.get("/api/data?tenant=shop-a&days=8", headers=headers)).status == 200
    assert len(client.store.queries) == 2 * len(CHARTS)


@pytest.mark.parametrize("query", ["", "?tenant=", "?tenant=shop-a&days=0", "?tenant=shop-a&days=x"])
async def test_bad_data_requests_are_400(client, query: str) -> None:
    response = await client.get("/api/data" + query, headers={"Authorization": f"Bearer {client.token}"})
    assert response.status == 400


async def test_no_pipeline_running_is_503_with_the_reason(tmp_path: Path) -> None:
    token = new_token(tmp_path)
    async with TestClient(TestServer(make_app(_dashboard(tmp_path, RecordingStore(unavailable=True))))) as c:
        response = await c.get("/api/data?tenant=shop-a", headers={"Authorization": f"Bearer {token}"})
        assert response.status == 503
        assert "start cxstream up" in (await response.json())["error"]


async def test_only_the_shipped_assets_are_served(client) -> None:
    headers = {"Authorization": f"Bearer {client.token}"}
    assert (await client.get("/static/echarts.min.js", headers=headers)).status == 200
    assert (await client.get("/static/unauthorized.html", headers=headers)).status == 404
    assert (await client.get("/static/..%2Fserver.py", headers=headers)).status == 404


def test_the_url_printed_to_a_log_leaves_the_token_out_and_names_its_file(tmp_path: Path) -> None:
    from pipeline.cli import _shown_url

    shown = _shown_url("http://127.0.0.1:8123/?token=s3cret", Settings(_env_file=None, data_dir=tmp_path))
    assert "s3cret" not in shown
    assert shown.startswith("http://127.0.0.1:8123/ ") and str(tmp_path / "worker.token") in shown
