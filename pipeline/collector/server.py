"""The Segment-compatible HTTP API (aiohttp): authenticate, validate, pack, produce, answer.

Per request, in order: the origin (``pipeline.collector.cors``) -> the
write key from the basic-auth header or the ``writeKey`` query parameter,
decided before any body byte is read (else a
body of at most 64 KB is read for its ``writeKey``, within a separate,
small allowance of such requests) -> body read under Segment's limits
(gzip too) and within a time limit -> JSON -> each message
normalized on its own -> events packed into one record per partition, dead
letters beside them -> ``200 {"success": true}`` only once Kafka has
acknowledged every record. When the broker does not acknowledge, or the
collector holds too many bytes already, the answer is 503 with
``Retry-After`` and the SDK retries: the collector buffers nothing it could
lose. The limits are listed in docs/security.md ("Collector").

Routes: Segment's ``/v1/batch`` and single calls, which are RudderStack's
HTTP API too (same paths, same basic auth; RudderStack's extra headers are
allowed by the CORS rules), and RudderStack's ``/beacon/v1/batch`` (and
single calls) that ``navigator.sendBeacon`` posts as ``text/plain`` with
the write key in the query string (a beacon cannot set headers). The
content type is never read: every body is parsed as JSON. ``GET /health``
answers while the process serves, ``GET /ready`` once the broker answers and
the events topic is known; the metrics port (``make_metrics_app``,
loopback by default) serves ``/metrics`` with both (docs/operations.md).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson
from aiohttp import hdrs, web
from confluent_kafka import KafkaException

from pipeline.collector.auth import AuthDecision, WriteKeys, authenticate
from pipeline.collector.cors import ORIGIN_REFUSED, CorsPolicy
from pipeline.collector.body import (
    BODY_KEY_MAX_BYTES,
    MAX_BATCH_BYTES,
    MAX_EVENT_BYTES,
    BadBody,
    BodyTimeout,
    BodyTooLarge,
    decode_json,
    read_limited,
)
from pipeline.collector.ingest import RequestError, ingest, messages_of
from pipeline.collector.normalize import NormalizeRules
from pipeline.collector.packing import Record, dead_letter_records, pack_events
from pipeline.collector.producer import BrokerUnavailable, EventProducer, KafkaProducer
from pipeline.metrics import CONTENT_TYPE_LATEST, CollectorMetrics, render
from pipeline.wire.records import DeadLetterReason, dead_letter
from pipeline.settings import Settings
from pipeline.wire.topics import ensure_topics

__all__ = [
    "BEACON_PREFIX", "CALL_PATHS", "RETRY_AFTER_S", "InflightBudget", "make_app", "make_metrics_app", "run_collector", "tune_gc",
    "wall_ms",
]

log = logging.getLogger("cxstream.collector")

RETRY_AFTER_S = 5
GC_GEN0_THRESHOLD = 50_000
SHUTDOWN_TIMEOUT_S = 30.0
WARN_INTERVAL_S = 5.0
_READ_CHUNK = 64 * 1024
# Longest request line and header line (name and value) aiohttp accepts; a
# longer one is answered 400 without reading further (aiohttp's defaults,
# stated here because the limit is part of the collector's contract).
MAX_LINE_BYTES = 8190
MAX_HEADERS = 128

# Path -> Segment call; the one-letter forms are analytics.js's.
CALL_PATHS = {
    "track": "track", "t": "track",
    "page": "page", "p": "page",
    "identify": "identify", "i": "identify",
    "screen": "screen", "s": "screen",
    "group": "group", "g": "group",
    "alias": "alias", "a": "alias",
}  # fmt: skip
BATCH_PATHS = ("batch", "b")
# RudderStack's beacon transport posts to /beacon/v1/batch?writeKey=...
BEACON_PREFIX = "/beacon"


def wall_ms() -> int:
    """The wall clock in epoch ms (the receive time of requests)."""
    return time.time_ns() // 1_000_000


class InflightBudget:
    """Bytes of requests being handled; refuses more past the maximum (one request always fits)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.used = 0

    def try_acquire(self, n: int) -> bool:
        if self.used and self.used + n > self.max_bytes:
            return False
        self.used += n
        return True

    def release(self, n: int) -> None:
        self.used -= n


class HeaderDeadlines:
    """Connections that have not yet sent a whole request line and headers (no write key can be known yet).

    A new connection, and a kept-alive one once the first byte of its next
    request arrives, is closed when ``timeout_s`` passes without the whole
    headers; a kept-alive connection that sends nothing after an answer is
    closed after ``idle_s`` (longer, so that a proxy or load balancer reusing
    it does not meet a closed one). Past ``limit`` such connections at once,
    the oldest is closed to make room, so a crowd of slow clients cannot hold
    the process's sockets while a client that sends its headers at once is
    served.
    """

    def __init__(
        self, timeout_s: float, limit: int, on_close: Callable[[str], None] = lambda reason: None, idle_s: float = 75.0
    ) -> None:
        self.timeout_s = timeout_s
        self.idle_s = idle_s
        self.limit = limit
        self.on_close = on_close  # told "header_timeout", "idle_timeout" or "pending_limit" for each one closed
        self.pending: dict[web.RequestHandler, asyncio.TimerHandle] = {}  # oldest first
        self.idle: set[web.RequestHandler] = set()  # kept-alive, no byte of a next request yet

    def wait(self, handler: web.RequestHandler) -> None:
        """Start the wait for ``handler``'s request headers (a new connection, or a next request begun)."""
        self._arm(handler, self.timeout_s, "header_timeout")

    def rest(self, handler: web.RequestHandler) -> None:
        """An answer was sent on a kept-alive connection: wait ``idle_s`` for its next request to begin."""
        self._arm(handler, self.idle_s, "idle_timeout")
        self.idle.add(handler)

    def data(self, handler: web.RequestHandler) -> None:
        """Bytes arrived: a resting connection's next request has begun and gets the header time."""
        if handler in self.idle:
            self.wait(handler)

    def arrived(self, handler: web.RequestHandler) -> None:
        """Headers came (or the connection ended): no deadline until the next wait."""
        self.idle.discard(handler)
        timer = self.pending.pop(handler, None)
        if timer is not None:
            timer.cancel()

    def _arm(self, handler: web.RequestHandler, after_s: float, reason: str) -> None:
        self.arrived(handler)
        if len(self.pending) >= self.limit:
            self._close(next(iter(self.pending)), "pending_limit")
        self.pending[handler] = asyncio.get_running_loop().call_later(after_s, self._close, handler, reason)

    def _close(self, handler: web.RequestHandler, reason: str) -> None:
        self.arrived(handler)
        handler.force_close()
        self.on_close(reason)


@dataclass
class _Collector:
    settings: Settings
    producer: EventProducer
    keys: WriteKeys
    cors: CorsPolicy
    rules: NormalizeRules
    budget: InflightBudget
    now_ms: Callable[[], int]
    metrics: CollectorMetrics
    headers: HeaderDeadlines
    unauthenticated: int = 0  # requests being read for a write key in their body
    partitions: int | None = None
    _warned_at: float = float("-inf")
    _unwarned: int = 0

    def warn_unavailable(self, exc: Exception) -> None:
        """Log a 503 for a broker problem, at most every few seconds (an outage means many)."""
        now = time.monotonic()
        if now - self._warned_at < WARN_INTERVAL_S:
            self._unwarned += 1
            return
        log.warning("answering 503 (and %d more since the last warning): %s", self._unwarned, exc)
        self._warned_at, self._unwarned = now, 0

    async def send(self, records: list[Record]) -> None:
        """``producer.send_many``, timed (``cxstream_kafka_produce_seconds``)."""
        started = time.perf_counter()
        outcome = "failed"
        try:
            await self.producer.send_many(records)
            outcome = "ok"
        finally:
            self.metrics.produce_seconds.labels("collector", outcome).observe(time.perf_counter() - started)

    async def event_partitions(self) -> int:
        """The events topic's partition count, asked of the broker once (in a thread)."""
        if self.partitions is None:
            loop = asyncio.get_running_loop()
            self.partitions = await loop.run_in_executor(
                None, self.producer.partitions_for, self.settings.topic_events
            )
        return self.partitions


STATE = web.AppKey("cx_collector", _Collector)
# Set by the handlers, read by ``_count_requests``: the request's tenant once known, its call.
TENANT = web.RequestKey("cx_tenant", str)
CALL = web.RequestKey("cx_call", str)


class _QuietRequestHandler(web.RequestHandler):
    """aiohttp's connection handler, whose answer to an unparsable request quotes none of it.

    aiohttp answers a request line or header over ``MAX_LINE_BYTES`` (or
    otherwise malformed) with a 400 whose text includes part of the
    offending bytes; this one says what was wrong, in the collector's JSON.
    """

    __slots__ = ("_cx_headers",)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._cx_headers: HeaderDeadlines = self._manager.cx_headers  # type: ignore[union-attr]
        self._cx_headers.wait(self)

    def data_received(self, data: bytes) -> None:
        self._cx_headers.data(self)
        super().data_received(data)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._cx_headers.arrived(self)
        super().connection_lost(exc)

    def handle_error(
        self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None, message: str | None = None
    ) -> web.StreamResponse:
        if isinstance(exc, ConnectionResetError):
            # The client hung up while its request was read (a closed tab, a lost signal): nothing
            # was produced and no one reads an answer. One line, not aiohttp's traceback at ERROR.
            log.info("%s closed the connection while its request was read; nothing produced", request.remote)
            response = web.Response(status=400)
            response.force_close()
            return response
        if status >= 500:
            return super().handle_error(request, status, exc, None)
        self.log_debug("refused an unparsable request from %s: %s", request.remote, type(exc).__name__)
        if request.writer.output_size > 0:
            raise ConnectionError("response already sent")
        response = _error(
            status,
            "bad_request",
            f"request line or headers malformed or too large (at most {MAX_HEADERS} headers of {MAX_LINE_BYTES} bytes)",
        )
        response.force_close()
        return response


class _QuietServer(web.Server):
    __slots__ = ()

    def __call__(self) -> web.RequestHandler:
        return _QuietRequestHandler(self, loop=self._loop, **self._kwargs)


class _CollectorRunner(web.AppRunner):
    """The app runner whose connections answer unparsable requests without quoting them and must send
    their headers in time (``HeaderDeadlines``)."""

    __slots__ = ()

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _QuietServer  # same layout; only the handler it makes differs
        server.cx_headers = self.app[STATE].headers  # type: ignore[attr-defined]
        return server


def _answer(status: int, body: dict, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, body=orjson.dumps(body), content_type="application/json", headers=headers
    )


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    # analytics-python reads "code" and "message" from error bodies.
    return _answer(status, {"success": False, "code": code, "message": message}, headers)


def _unavailable(message: str) -> web.Response:
    return _error(503, "unavailable", message, {"Retry-After": str(RETRY_AFTER_S)})


async def _refuse(
    cx: _Collector,
    tenant: str | None,
    reason: DeadLetterReason,
    detail: str,
    payload: bytes,
    received_at_ms: int,
    *,
    close: bool = False,
) -> web.Response:
    """400 for a request that cannot be read; its payload goes to the dead-letter topic first.

    Without a tenant (the write key was in the unreadable body) nothing is
    produced: unauthenticated input never reaches Kafka. ``close``: the
    body was not read to its end, so the connection is closed after the
    answer rather than drained.
    """
    if tenant is not None:
        dl = dead_letter(
            tenant=tenant, reason=reason, detail=detail, payload=cx.rules.scrubber.payload(payload),
            received_at_ms=received_at_ms,
        )
        await cx.send(dead_letter_records([dl], topic=cx.settings.topic_deadletter))
        cx.metrics.deadletter(tenant, reason)
    response = _error(400, reason, detail)
    if close:
        response.force_close()
    return response


async def _process(
    request: web.Request, cx: _Collector, body: bytes, call: str | None, decision: AuthDecision, received_at_ms: int
) -> web.Response:
    tenant = decision.tenant
    value, bad = decode_json(body)
    if bad is not None:
        detail = "body is not JSON" if bad == "bad_json" else "body is not UTF-8"
        return await _refuse(cx, tenant, bad, detail, body, received_at_ms)
    if decision.needs_body:
        tenant = authenticate(cx.keys, body=value, body_read=True).tenant
        request[TENANT] = tenant
        if tenant is None:
            return _unauthorized("missing or unknown write key")
    if not isinstance(value, dict):
        return await _refuse(cx, tenant, "bad_json", "body must be a JSON object", body, received_at_ms)
    try:
        messages, batch_sent_at = messages_of(value, call)
    except RequestError as exc:
        return await _refuse(cx, tenant, "schema_violation", str(exc), body, received_at_ms)

    result = ingest(messages, tenant=tenant, received_at_ms=received_at_ms, batch_sent_at=batch_sent_at, rules=cx.rules)
    if result.oversize:
        # Segment's rule: one event over 32 KB refuses the whole request, so the
        # SDK learns it; the oversize events are kept as dead letters.
        await cx.send(dead_letter_records(result.oversize, topic=cx.settings.topic_deadletter))
        _count_messages(cx, tenant, result.outcomes, refused=True)
        cx.metrics.deadletter(tenant, "oversize", len(result.oversize))
        return _error(400, "oversize", result.oversize[0].detail)
    records: list[Record] = []
    if result.events:
        records = pack_events(result.events, topic=cx.settings.topic_events, partitions=await cx.event_partitions())
    records += dead_letter_records(result.dead_letters, topic=cx.settings.topic_deadletter)
    produced = sum(len(r[3]) for r in records)
    if not cx.budget.try_acquire(produced):
        return _unavailable("collector overloaded")
    try:
        await cx.send(records)
    finally:
        cx.budget.release(produced)
    _count_messages(cx, tenant, result.outcomes)
    for dl in result.dead_letters:
        cx.metrics.deadletter(tenant, dl.reason)
    return _answer(200, {"success": True})


def _count_messages(cx: _Collector, tenant: str | None, outcomes: dict, *, refused: bool = False) -> None:
    """Count a request's messages by type and outcome, once Kafka acknowledged what was produced.

    A request refused for an oversize message produced only its oversize
    dead letters: its other messages count as ``refused``.
    """
    for (kind, outcome), n in outcomes.items():
        if refused and outcome != "oversize":
            outcome = "refused"
        cx.metrics.events.labels(cx.metrics.labels.tenant(tenant), cx.metrics.labels.call_type(kind), outcome).inc(n)


def _body_reservation(request: web.Request, limit: int) -> int:
    """Bytes to reserve before reading: the declared length, or the limit when unknown or compressed."""
    length = request.content_length
    if length is None or request.headers.get(hdrs.CONTENT_ENCODING, "").strip().lower() not in ("", "identity"):
        return limit
    return min(length, limit)


async def _read_body(request: web.Request, cx: _Collector, limit: int) -> bytes:
    """The request's body under ``limit`` and the time limits (raises BodyTooLarge, BadBody, BodyTimeout)."""
    return await read_limited(
        request.content.iter_chunked(_READ_CHUNK),
        request.headers.get(hdrs.CONTENT_ENCODING, ""),
        limit,
        total_s=cx.settings.collector_body_timeout_s,
        idle_s=cx.settings.collector_idle_timeout_s,
    )


def _timed_out(exc: BodyTimeout) -> web.Response:
    response = _error(408, "timeout", str(exc))
    response.force_close()
    return response


def _unauthorized(message: str) -> web.Response:
    response = _error(401, "unauthorized", message)
    response.force_close()  # the body, if any, is not read
    return response


async def _handle(request: web.Request, call: str | None) -> web.Response:
    cx = request.app[STATE]
    received_at_ms = cx.now_ms()
    decision = authenticate(
        cx.keys, authorization=request.headers.get(hdrs.AUTHORIZATION), query_key=request.query.get("writeKey")
    )
    if decision.refused:
        return _unauthorized("unknown write key")
    request[TENANT] = decision.tenant
    if decision.needs_body:
        return await _handle_body_key(request, cx, call, received_at_ms)
    tenant = decision.tenant
    # Reserve before reading, so concurrent uploads cannot together pass the budget.
    reserved = _body_reservation(request, MAX_BATCH_BYTES)
    if not cx.budget.try_acquire(reserved):
        return _unavailable("collector overloaded")
    try:
        try:
            body = await _read_body(request, cx, MAX_BATCH_BYTES)
        except BodyTooLarge as exc:
            detail = f"{exc} (payload: its first {MAX_EVENT_BYTES // 1024} KB)"
            return await _refuse(cx, tenant, "oversize", detail, exc.prefix[:MAX_EVENT_BYTES], received_at_ms, close=True)
        except BadBody as exc:
            return await _refuse(cx, tenant, "bad_encoding", str(exc), exc.raw, received_at_ms, close=True)
        except BodyTimeout as exc:
            return _timed_out(exc)
        cx.budget.release(reserved - len(body))  # hold what the body really takes
        reserved = len(body)
        return await _process(request, cx, body, call, decision, received_at_ms)
    except BrokerUnavailable as exc:
        cx.warn_unavailable(exc)
        return _unavailable("events not acknowledged by Kafka; retry")
    finally:
        cx.budget.release(reserved)


async def _handle_body_key(request: web.Request, cx: _Collector, call: str | None, received_at_ms: int) -> web.Response:
    """A request whose write key can only be in its body: read at most 64 KB, within its own allowance.

    These requests are unauthenticated while they are read, so they never
    take from the in-flight budget of authenticated ones: at most
    ``collector_max_unauthenticated`` of them are read at once, each under
    the same time limits.
    """
    length = request.content_length
    if length is not None and length > BODY_KEY_MAX_BYTES:
        return _unauthorized(
            f"missing write key: a body over {BODY_KEY_MAX_BYTES // 1024} KB needs it in the Authorization header"
        )
    if cx.unauthenticated >= cx.settings.collector_max_unauthenticated:
        return _unavailable("too many requests without a write key in their headers")
    cx.unauthenticated += 1
    try:
        body = await _read_body(request, cx, BODY_KEY_MAX_BYTES)
    except BodyTooLarge:
        return _unauthorized(
            f"missing write key: a body over {BODY_KEY_MAX_BYTES // 1024} KB needs it in the Authorization header"
        )
    except BadBody as exc:
        return _error(400, "bad_encoding", str(exc))  # unauthenticated: nothing is produced
    except BodyTimeout as exc:
        return _timed_out(exc)
    finally:
        cx.unauthenticated -= 1
    if not cx.budget.try_acquire(len(body)):
        return _unavailable("collector overloaded")
    try:
        return await _process(request, cx, body, call, AuthDecision(needs_body=True), received_at_ms)
    except BrokerUnavailable as exc:
        cx.warn_unavailable(exc)
        return _unavailable("events not acknowledged by Kafka; retry")
    finally:
        cx.budget.release(len(body))


async def _call(request: web.Request) -> web.Response:
    name = request.match_info["call"]
    if name in BATCH_PATHS:
        request[CALL] = "batch"
        return await _handle(request, None)
    call = CALL_PATHS.get(name)
    if call is None:
        return _error(404, "not_found", "no such endpoint: events go to /v1/<call> or /beacon/v1/<call>")
    request[CALL] = call
    return await _handle(request, call)


@web.middleware
async def _headers_in_time(request: web.Request, handler: Callable) -> web.StreamResponse:
    """The request's headers arrived: its connection's deadline stops, and an idle one starts after the answer."""
    protocol = request.protocol
    deadlines = request.app[STATE].headers
    deadlines.arrived(protocol)
    try:
        return await handler(request)
    finally:
        if isinstance(protocol, _QuietRequestHandler) and protocol.transport is not None:
            deadlines.rest(protocol)  # kept alive: idle for a while, then the next request's headers in time


@web.middleware
async def _count_requests(request: web.Request, handler: Callable) -> web.StreamResponse:
    """``cxstream_collector_requests_total``: each answer on the event routes, by tenant, call and status."""
    status = 500
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        status = exc.status
        raise
    else:
        status = response.status
        return response
    finally:
        call = request.get(CALL)
        if request.method == hdrs.METH_OPTIONS:
            pass  # a browser's preflight, not a call
        elif call is not None or request.path.startswith(("/v1/", BEACON_PREFIX + "/v1/")):
            request.app[STATE].metrics.request(request.get(TENANT), call or "unknown", status)


async def _preflight(request: web.Request) -> web.Response:
    status, headers, refusal = request.app[STATE].cors.preflight(request.headers)
    if refusal is not None:
        return _error(status, "forbidden", refusal, headers)
    return web.Response(status=status, headers=headers)


@web.middleware
async def _cors(request: web.Request, handler: Callable) -> web.StreamResponse:
    """CORS headers on every answer; a browser POST from an origin not allowed is 403 before its body."""
    cors = request.app[STATE].cors
    if request.method == hdrs.METH_OPTIONS:
        return await handler(request)  # _preflight answers with its own headers
    origin = request.headers.get(hdrs.ORIGIN)
    if not cors.origin_allowed(origin):
        return _error(403, "forbidden", ORIGIN_REFUSED, cors.headers(origin))
    try:
        resp = await handler(request)
    except web.HTTPException as exc:  # aiohttp's own 404/405
        exc.headers.update(cors.headers(origin))
        raise
    resp.headers.update(cors.headers(origin))
    return resp


async def _health(request: web.Request) -> web.Response:
    """Alive: the process serves requests (for a liveness probe; the broker is ``/ready``'s business)."""
    return _answer(200, {"status": "ok"})


async def _ready(request: web.Request) -> web.Response:
    """200 when the broker answers and the events topic's partitions are known; else 503 and why."""
    cx = request.app[STATE]
    broker = await asyncio.get_running_loop().run_in_executor(None, cx.producer.healthy)
    topic = False
    if broker:
        try:
            await cx.event_partitions()
            topic = True
        except BrokerUnavailable:
            pass
    ok = broker and topic
    status = "ready" if ok else ("broker unreachable" if not broker else f"topic {cx.settings.topic_events} unavailable")
    return _answer(200 if ok else 503, {"status": status, "checks": {"broker": broker, "events_topic": topic}})


async def _metrics(request: web.Request) -> web.Response:
    body = render(request.app[STATE].metrics.registry)
    return web.Response(body=body, content_type=CONTENT_TYPE_LATEST.split(";")[0], charset="utf-8")


def make_metrics_app(collector_app: web.Application) -> web.Application:
    """The collector's metrics port: ``/metrics``, ``/health``, ``/ready`` (no credentials; loopback by default)."""
    app = web.Application()
    app[STATE] = collector_app[STATE]
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/health", _health)
    app.router.add_get("/ready", _ready)
    return app


def make_app(settings: Settings, producer: EventProducer, *, now_ms: Callable[[], int] = wall_ms) -> web.Application:
    """The collector's aiohttp application; ``now_ms`` is the receive clock (tests pass a fake)."""
    # aiohttp would inflate gzip bodies itself, without our output cap; read_limited does it instead.
    # lingering_time=0: a body left unread (a refused request) is not drained, the connection is closed.
    app = web.Application(
        client_max_size=MAX_BATCH_BYTES,
        handler_args={
            "auto_decompress": False,
            "lingering_time": 0,
            "max_line_size": MAX_LINE_BYTES,
            "max_field_size": MAX_LINE_BYTES,
            "max_headers": MAX_HEADERS,
        },
        middlewares=[_headers_in_time, _count_requests, _cors],
    )
    app[STATE] = _Collector(
        settings=settings,
        producer=producer,
        keys=WriteKeys.from_settings(settings),
        cors=CorsPolicy(settings.allowed_origins),
        rules=NormalizeRules.from_settings(settings),
        budget=InflightBudget(settings.collector_max_inflight_bytes),
        now_ms=now_ms,
        metrics=CollectorMetrics(settings.write_key_map.values()),
        headers=HeaderDeadlines(
            settings.collector_header_timeout_s, settings.collector_max_pending_connections,
            idle_s=settings.collector_keepalive_s,
        ),
    )
    app[STATE].headers.on_close = app[STATE].metrics.connection_closed
    app[STATE].metrics.inflight_bytes.set_function(lambda: app[STATE].budget.used)
    for prefix in ("", BEACON_PREFIX):
        app.router.add_post(prefix + "/v1/{call}", _call)
        app.router.add_route("OPTIONS", prefix + "/v1/{call}", _preflight)
    app.router.add_get("/health", _health)
    app.router.add_get("/ready", _ready)
    return app


def tune_gc() -> None:
    """Cyclic garbage collection for a process whose garbage is freed by reference counting.

    A request of 250 messages allocates some 25,000 objects (its decoded
    body, the events); none is cyclic, but CPython's default walked the
    young ones every 700 allocations and the whole heap (the modules of
    start-up) every few requests. ``cxstream collector`` calls this before
    it serves: start-up's objects are frozen out of every collection, and
    the young generation is collected every 50,000 allocations. In the
    bench's collector run (50,000 events) the collections took 0.20 s of
    the process's CPU by default, 0.06 s so.
    """
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, 50, 100)


async def run_collector(
    settings: Settings, bootstrap: str, *, ready: asyncio.Event | None = None, reuse_port: bool = False
) -> None:
    """Serve on ``collector_host:collector_port`` until cancelled, SIGINT or SIGTERM.

    Start-up creates missing topics (``ensure_topics``) and reads the
    events topic's partition count; a broker that does not answer yet is
    not fatal: requests get 503 until it does. Shutdown: stop accepting,
    let in-flight requests finish (up to 30 s), then flush the producer.
    ``ready`` is set once the port listens. ``reuse_port``: listen with
    ``SO_REUSEPORT``, beside other collector processes on the same port
    (``pipeline.collector.processes``). Raises SettingsError when
    ``CX_PII_SALT`` is the shipped default.
    """
    settings.require_pii_salt()
    producer = KafkaProducer(settings, bootstrap)
    app = make_app(settings, producer)
    loop = asyncio.get_running_loop()
    try:
        await loop.run_in_executor(None, ensure_topics, settings, bootstrap)
        app[STATE].partitions = await loop.run_in_executor(None, producer.partitions_for, settings.topic_events)
    except (BrokerUnavailable, KafkaException) as exc:
        # Serve anyway: requests get 503 (and /ready says why) until the broker answers.
        log.warning("starting without the events topic: %s", exc)
    runner = _CollectorRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
    await runner.setup()
    metrics_runner = web.AppRunner(make_metrics_app(app), access_log=None, shutdown_timeout=5)
    await metrics_runner.setup()
    stop = asyncio.Event()
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no signals here
            pass
    try:
        await web.TCPSite(metrics_runner, settings.collector_metrics_host, settings.collector_metrics_port).start()
        await web.TCPSite(runner, settings.collector_host, settings.collector_port, reuse_port=reuse_port or None).start()
        log.info("collector listening on %s:%s (metrics on %s:%s)", settings.collector_host, settings.collector_port,
                 settings.collector_metrics_host, settings.collector_metrics_port)
        if ready is not None:
            ready.set()
        await stop.wait()
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        await runner.cleanup()
        await metrics_runner.cleanup()
        await loop.run_in_executor(None, producer.close)
