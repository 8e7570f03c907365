"""What the SDK tests run around the collector: the shop's page server, a fault proxy, Kafka read-back.

The page server and the proxy listen on their own loopback ports, so a page
and the collector (or the proxy in front of it) are always different
origins: every request the SDKs make is a cross-origin one, with the
browser's CORS checks, as on a real shop.
"""

from __future__ import annotations

import asyncio
import functools
import json
import shutil
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import aiohttp
from aiohttp import web
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from pipeline.supervisor.ports import free_port, wait_for_port
from pipeline.wire.records import decode_batch

HERE = Path(__file__).resolve().parent
CHROMIUM = Path("/usr/bin/chromium")
NODE_MODULES = HERE / "node_modules"


def sdk_tools_missing() -> str | None:
    """Why the SDK tests cannot run here (None when they can): what infra/setup.sh installs."""
    if shutil.which("node") is None:
        return "node is not installed (Node.js 20+ is needed to run the npm SDKs)"
    if not (NODE_MODULES / "puppeteer-core").is_dir():
        return f"the pinned npm SDKs are not installed in {NODE_MODULES}: run bash infra/setup.sh --clickhouse-server"
    return None


def drive_pages(urls: dict[str, str], then: Callable[[dict[str, dict]], None] | None = None) -> dict[str, dict]:
    """Open every page at once in one headless Chromium (``drive.mjs``); page name -> its answer line.

    Reads one answer per page until ``drive.mjs`` says all ran; runs
    ``then(answers)`` (where a test waits for what the pages sent); then
    closes the pages and the browser, which flushes what the pages still
    hold. Raises when ``drive.mjs`` exits with an error.
    """
    spec = {"chromium": str(CHROMIUM), "pages": [{"name": n, "url": u} for n, u in urls.items()]}
    proc = subprocess.Popen(
        ["node", str(HERE / "drive.mjs"), json.dumps(spec)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    answers: dict[str, dict] = {}
    try:
        for line in proc.stdout:
            answer = json.loads(line)
            if answer["name"] == "*":
                break
            answers[answer["name"]] = answer
        if then is not None:
            then(answers)
        proc.stdin.write("close\n")
        proc.stdin.flush()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    if proc.returncode != 0:
        raise RuntimeError(f"drive.mjs exited {proc.returncode}: {proc.stderr.read()[-2000:]}")
    return answers


def chromium_missing() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} not found: Debian's chromium package is installed by bash infra/setup.sh --clickhouse-server"
    return sdk_tools_missing()


def build_bundles() -> None:
    """Bundle the SDK entries (tests/browser/entries) into tests/browser/build with esbuild."""
    subprocess.run(["node", str(HERE / "build.mjs")], check=True, timeout=120, capture_output=True)


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass


class PageServer:
    """The shop: serves tests/browser (index.html and the bundles) on its own port."""

    def __init__(self) -> None:
        self.port = free_port()
        handler = functools.partial(_Quiet, directory=str(HERE))
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="page-server", daemon=True)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> PageServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


class FaultProxy:
    """Forwards every request to the collector, except that the first POST is answered 503 (not forwarded).

    The 503 is the collector's own (``Retry-After: 5``, CORS headers), as
    when the broker does not acknowledge: the SDK must retry the same
    events, through a new preflight since the retry carries a new header.
    """

    def __init__(self, target: str) -> None:
        self.target = target
        self.port = free_port()
        self.refused = 0
        self.forwarded: list[str] = []  # "METHOD path" of each forwarded request
        self.retry_headers: list[str] = []  # X-Retry-Count of each forwarded POST that had one
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self._thread = threading.Thread(target=self._run, name="fault-proxy", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _forward(self, request: web.Request) -> web.Response:
        if request.method == "POST" and self.refused == 0:
            self.refused += 1
            await request.read()
            return web.json_response(
                {"success": False, "code": "unavailable", "message": "events not acknowledged by Kafka; retry"},
                status=503,
                headers={"Retry-After": "5", "Access-Control-Allow-Origin": "*", "Access-Control-Expose-Headers": "Retry-After"},
            )
        self.forwarded.append(f"{request.method} {request.path}")
        if request.method == "POST" and "X-Retry-Count" in request.headers:
            self.retry_headers.append(request.headers["X-Retry-Count"])
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        async with aiohttp.ClientSession(auto_decompress=False) as session:
            async with session.request(
                request.method, self.target + request.path_qs, data=await request.read(), headers=headers
            ) as resp:
                body = await resp.read()
                out = {k: v for k, v in resp.headers.items() if k.lower() not in ("content-length", "transfer-encoding")}
                return web.Response(status=resp.status, body=body, headers=out)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def serve() -> None:
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", self._forward)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", self.port).start()
            await self._stop.wait()
            await runner.cleanup()

        self._loop.run_until_complete(serve())
        self._loop.close()

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        wait_for_port(self.port, timeout_s=10, alive=self._thread.is_alive)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)


class EventsReader:
    """Every event on the events topic so far, read from the beginning and kept as it grows."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": f"sdk-reader-{time.monotonic_ns()}", "enable.auto.commit": False}
        )
        partitions = self._consumer.list_topics(topic, timeout=10).topics[topic].partitions
        self._consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        self.events: list[dict] = []

    def poll(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            msg = self._consumer.poll(0.1)
            if msg is not None and not msg.error():
                self.events.extend(decode_batch(msg.value()))

    def of(self, anonymous_id: str) -> list[dict]:
        return [e for e in self.events if e["anonymous_id"] == anonymous_id]

    def wait_for(self, done: Callable[[], bool], timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while not done() and time.monotonic() < deadline:
            self.poll(0.3)
        return done()

    def close(self) -> None:
        self._consumer.close()


def calls(events: list[dict]) -> Counter:
    """How many times each (type, event, product_id) arrived: the test's view of 'exactly once'."""
    import orjson

    out: Counter = Counter()
    for e in events:
        out[(e["type"], e["event"], orjson.loads(e["properties"]).get("product_id"))] += 1
    return out


# The 13 calls every page sends (tests/browser/entries/common.js), each once.
THIRTEEN = Counter(
    {("page", None, None): 1, ("identify", None, None): 1}
    | {("track", "Product Viewed", f"p{n}"): 1 for n in range(1, 12)}
)
