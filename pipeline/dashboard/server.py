"""The dashboard's web server: the page, its assets, and the JSON the page polls.

``cxstream dashboard`` runs it alone; ``cxstream up`` runs it as a child
process next to the collector and the worker. It listens on loopback by
default and answers only requests that carry the data dir's worker token
(``pipeline.webtoken``), in one of three ways:

* ``Authorization: Bearer <token>`` (scripts, tests);
* the session cookie ``cxstream-dashboard-<port>``, which holds an HMAC of
  the token, not the token (a stolen cookie does not open the worker's
  query endpoint), and is HttpOnly and SameSite=Strict;
* once, ``?token=<token>`` on a GET: the answer sets that cookie and
  redirects (303) to the same URL without the token, so it leaves the
  address bar and the history. This is the URL ``cxstream up`` and
  ``cxstream dashboard`` print.

Everything else gets 401, the assets included. The token is read from the
data dir at each request, so a new ``cxstream up`` (a new token) ends the
old sessions.

The numbers come from the charts' SQL (``pipeline.dashboard.charts``) run as
analysts' read-only queries: through the running worker's ``/cx/query`` on
the embedded store (the worker owns the chdb directory), or on a read-only
connection of the dashboard's own against a ClickHouse server.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Callable
from urllib.error import URLError
from urllib.parse import urlencode

import orjson
from aiohttp import web

from pipeline.analyst_sql import QueryLimits, run_analyst_query
from pipeline.dashboard.charts import CHARTS, TENANTS_SQL, first_day, render
from pipeline.settings import Settings
from pipeline.webtoken import read_token

__all__ = [
    "CACHE_S",
    "STATIC_FILES",
    "Dashboard",
    "StoreUnavailable",
    "cookie_name",
    "cookie_value",
    "dashboard_url",
    "make_app",
    "run_dashboard",
    "store_for",
]

log = logging.getLogger(__name__)

# The files under static/ the server hands out; nothing else is reachable.
STATIC_FILES = {
    "dashboard.js": "text/javascript",
    "dashboard.css": "text/css",
    "echarts.min.js": "text/javascript",
}
CACHE_S = 2.0  # one tenant's numbers are computed at most once per this, however many pages poll
# No script, style, image, font or connection from anywhere but this server.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


class StoreUnavailable(RuntimeError):
    """Nothing answers queries on this data dir (no pipeline runs on the embedded store)."""


def cookie_name(port: int) -> str:
    """The session cookie's name; cookies are per host, not per port, so the port is in the name."""
    return f"cxstream-dashboard-{port}"


def cookie_value(token: str) -> str:
    """What the session cookie holds: an HMAC of the token (never the token itself)."""
    return hmac.new(token.encode(), b"cxstream dashboard session", hashlib.sha256).hexdigest()


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode())


# --- where the numbers come from ---------------------------------------------


class WorkerStore:
    """The embedded store, through the running worker's ``/cx/query`` (it owns the chdb directory)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def query(self, sql: str) -> tuple[list[str], list[list]]:
        from pipeline.supervisor.runner import query_running_worker, read_run_file

        info = read_run_file(self.settings)
        if info is not None:
            port, host = info["worker_port"], info.get("worker_host", "127.0.0.1")
        else:  # under `cxstream up` before run.json is written, or a worker run alone
            port = self.settings.worker_web_port
            bind = self.settings.worker_web_bind
            host = "127.0.0.1" if bind in ("0.0.0.0", "::", "") else bind
        try:
            token = read_token(self.settings.data_dir)
        except (FileNotFoundError, ValueError) as exc:
            raise StoreUnavailable(f"no pipeline runs on {self.settings.data_dir.resolve()}: start cxstream up") from exc
        try:
            return query_running_worker(port, sql, token, timeout_s=self.settings.query_timeout_s + 10, host=host)
        except (URLError, ConnectionError, TimeoutError) as exc:
            raise StoreUnavailable(
                f"the worker of {self.settings.data_dir.resolve()} does not answer on {host}:{port} "
                f"({exc}): is cxstream up running?"
            ) from exc

    def close(self) -> None:
        pass


class ServerStore:
    """A ClickHouse server: the dashboard's own connection, each query read-only with the analysts' limits."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.limits = QueryLimits.from_settings(settings)
        self._ch = None
        self._lock = threading.Lock()

    def query(self, sql: str) -> tuple[list[str], list]:
        from sinks.client import connect

        with self._lock:  # one connection, one query at a time
            if self._ch is None:
                self._ch = connect(self.settings.resolved_clickhouse_url)
            return run_analyst_query(self._ch, sql, self.limits)

    def close(self) -> None:
        with self._lock:
            if self._ch is not None:
                self._ch.close()
                self._ch = None


def store_for(settings: Settings) -> WorkerStore | ServerStore:
    if settings.resolved_clickhouse_url.startswith("chdb://"):
        return WorkerStore(settings)
    return ServerStore(settings)


# --- the app -------------------------------------------------------------------


@dataclass
class Dashboard:
    """The server's state: settings, where the token is, the store, and a short cache of answers."""

    settings: Settings
    port: int
    store: object
    token_of: Callable[[], str]
    today: Callable[[], "datetime.date"] = field(default=lambda: datetime.now(timezone.utc).date())
    _cache: dict[tuple[str, int], tuple[float, bytes]] = field(default_factory=dict)
    _locks: dict[tuple[str, int], asyncio.Lock] = field(default_factory=dict)

    def current_token(self) -> str | None:
        try:
            return self.token_of()
        except (FileNotFoundError, ValueError):
            return None

    def authorized(self, request: web.Request) -> bool:
        token = self.current_token()
        if token is None:
            return False
        header = request.headers.get("Authorization", "")
        if header and _same(header, f"Bearer {token}"):
            return True
        cookie = request.cookies.get(cookie_name(self.port), "")
        return bool(cookie) and _same(cookie, cookie_value(token))

    async def run(self, sql: str) -> tuple[list[str], list]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self.store.query, sql)

    async def data(self, tenant: str, days: int) -> bytes:
        """The JSON of every chart for one tenant and window (computed at most once per CACHE_S)."""
        key = (tenant, days)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            cached = self._cache.get(key)
            if cached is not None and time.monotonic() - cached[0] < CACHE_S:
                return cached[1]
            since = first_day(self.today(), days)
            charts = []
            for chart in CHARTS:
                sql = render(chart, tenant, since)
                entry = {"id": chart.id, "title": chart.title, "definition": chart.definition, "sql": sql}
                started = time.monotonic()
                try:
                    entry["columns"], entry["rows"] = await self.run(sql)
                except StoreUnavailable:
                    raise
                except Exception as exc:  # noqa: BLE001 - one chart's failure is shown on its card
                    entry["error"] = str(exc)
                entry["ms"] = round((time.monotonic() - started) * 1000)
                charts.append(entry)
            body = orjson.dumps(
                {
                    "tenant": tenant,
                    "days": days,
                    "since": since.isoformat(),
                    "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "charts": charts,
                },
                default=str,
            )
            now = time.monotonic()
            for old in [k for k, (at, _) in self._cache.items() if now - at >= CACHE_S]:
                del self._cache[old]  # the cache holds only what may still be served
            self._cache[key] = (now, body)
            return body

    async def tenants(self) -> list[str]:
        _, rows = await self.run(TENANTS_SQL)
        found = {str(row[0]) for row in rows if row[0]}
        return sorted(found | set(self.settings.write_key_map.values()))


def _static(name: str) -> bytes:
    return resources.files("pipeline.dashboard").joinpath("static", name).read_bytes()


def make_app(dash: Dashboard) -> web.Application:
    """The aiohttp application of one dashboard."""

    @web.middleware
    async def guard(request: web.Request, handler):  # noqa: ANN001, ANN202
        token_given = request.query.get("token")
        if token_given is not None and request.method == "GET":
            token = dash.current_token()
            if token is not None and _same(token_given, token):
                rest = [(k, v) for k, v in request.query.items() if k != "token"]
                clean = request.path + (f"?{urlencode(rest)}" if rest else "")
                response = web.Response(status=303, headers={**SECURITY_HEADERS, "Location": clean})
                response.set_cookie(
                    cookie_name(dash.port), cookie_value(token), httponly=True, samesite="Strict", path="/"
                )
                return response
        if not dash.authorized(request):
            if request.path.startswith("/api/"):
                return web.json_response(
                    {"error": "missing or wrong token: open the URL cxstream printed (with ?token=), "
                     "or send Authorization: Bearer <token of the data dir>"},
                    status=401,
                    headers={**SECURITY_HEADERS, "WWW-Authenticate": 'Bearer realm="cxstream-dashboard"'},
                )
            return web.Response(
                text=_static("unauthorized.html").decode(),
                content_type="text/html",
                status=401,
                headers={**SECURITY_HEADERS, "WWW-Authenticate": 'Bearer realm="cxstream-dashboard"'},
            )
        response = await handler(request)
        response.headers.update(SECURITY_HEADERS)
        return response

    async def index(request: web.Request) -> web.Response:
        return web.Response(body=_static("index.html"), content_type="text/html", charset="utf-8")

    async def static(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in STATIC_FILES:
            raise web.HTTPNotFound()
        return web.Response(body=_static(name), content_type=STATIC_FILES[name])

    async def meta(request: web.Request) -> web.Response:
        try:
            tenants = await dash.tenants()
        except StoreUnavailable as exc:
            return web.json_response({"error": str(exc)}, status=503)
        return web.json_response(
            {
                "tenants": tenants,
                "refresh_s": dash.settings.dashboard_refresh_s,
                "days": dash.settings.dashboard_days,
                "charts": [{"id": c.id, "title": c.title, "definition": c.definition} for c in CHARTS],
            }
        )

    async def data(request: web.Request) -> web.Response:
        tenant = request.query.get("tenant", "")
        if not tenant:
            return web.json_response({"error": "tenant= is required"}, status=400)
        try:
            days = int(request.query.get("days", dash.settings.dashboard_days))
        except ValueError:
            return web.json_response({"error": "days= must be a whole number"}, status=400)
        if not 1 <= days <= 366:
            return web.json_response({"error": "days= must be between 1 and 366"}, status=400)
        try:
            body = await dash.data(tenant, days)
        except StoreUnavailable as exc:
            return web.json_response({"error": str(exc)}, status=503)
        return web.Response(body=body, content_type="application/json")

    app = web.Application(middlewares=[guard])
    app.router.add_get("/", index)
    app.router.add_get("/static/{name}", static)
    app.router.add_get("/api/meta", meta)
    app.router.add_get("/api/data", data)
    return app


def dashboard_url(host: str, port: int, token: str | None = None) -> str:
    """The address to open: ``http://host:port/``, with ``?token=`` for the first visit when given."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/" + (f"?{urlencode({'token': token})}" if token else "")


async def run_dashboard(
    settings: Settings, port: int, on_ready: Callable[[str], None] | None = None, stop: asyncio.Event | None = None
) -> None:
    """Serve the dashboard on ``settings.dashboard_bind:port`` until cancelled (or ``stop`` is set)."""
    data_dir: Path = settings.data_dir
    store = store_for(settings)
    dash = Dashboard(settings, port, store, token_of=lambda: read_token(data_dir))
    runner = web.AppRunner(make_app(dash), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.dashboard_bind, port)
        await site.start()
        if port == 0:  # the port the kernel chose
            dash.port = site._server.sockets[0].getsockname()[1]  # noqa: SLF001 - aiohttp exposes no other way
        if on_ready is not None:
            on_ready(dashboard_url(settings.dashboard_bind, dash.port, dash.current_token()))
        await (stop.wait() if stop is not None else asyncio.Event().wait())
    finally:
        await runner.cleanup()
        store.close()
