"""A real webhook receiver for delivery tests: aiohttp on a loopback port, in a thread of the test process.

It checks every request's ``X-Cx-Signature`` with ``pipeline.deliver.signing.verify``
and that ``Idempotency-Key`` is the body's ``trigger_id`` (a request failing
either is answered 401 and recorded). ``policy(request_number, trigger_id,
attempt)`` decides what each request gets, failures included (see
``Action``). ``effects[key]`` lists the requests whose work the receiver did
(it answered 2xx, or did the work and answered too late): a receiver that
honours the key acts on the first of them only; more than one is a
duplicate on the wire, which tests allow only where a lost answer or a
killed sender explains it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Callable

import orjson
from aiohttp import web

from pipeline.supervisor.ports import free_port
from pipeline.deliver.signing import verify

__all__ = ["Action", "Receiver", "Request"]

# What the receiver does with a request:
#   ok                  200, acts on the trigger
#   status:<n>          answers <n> (500, 503, 400, 408...), does not act
#   retry_after_s:<n>   429 with Retry-After: <n> (seconds form)
#   retry_after_date:<n> 429 with Retry-After: an HTTP date <n> seconds ahead
#   slow:<s>            waits <s> seconds, then 200 and acts
#   timeout:<s>         acts, then waits <s> seconds (past the sender's timeout) before its 200
#   reset               closes the connection without an answer, does not act
Action = str


@dataclass
class Request:
    key: str
    trigger_id: str
    attempt: int
    signature_ok: bool
    body: bytes
    action: Action
    at: float  # monotonic arrival time
    answered_at: float = 0.0  # when a 429 was answered (for Retry-After checks)


@dataclass
class Receiver:
    secret: bytes
    policy: Callable[[int, str, int], Action] = lambda n, tid, attempt: "ok"
    requests: list[Request] = field(default_factory=list)
    effects: dict[str, list[Request]] = field(default_factory=dict)  # key -> requests whose work was done
    port: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def _act(self, req: Request) -> None:
        with self._lock:
            self.effects.setdefault(req.key, []).append(req)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        key = request.headers.get("Idempotency-Key", "")
        try:
            trigger_id = orjson.loads(body).get("trigger_id", "")
        except orjson.JSONDecodeError:
            trigger_id = ""
        attempt = int(request.headers.get("X-Cx-Attempt", "0"))
        ok = verify(self.secret, request.headers.get("X-Cx-Signature", ""), body, int(time.time()))
        with self._lock:
            n = len(self.requests)
            action = self.policy(n, trigger_id, attempt)
            req = Request(key, trigger_id, attempt, ok, body, action, time.monotonic())
            self.requests.append(req)
        if not ok or key != trigger_id:
            return web.Response(status=401, text="bad signature or idempotency key")
        if action == "ok":
            self._act(req)
            return web.Response(status=200, text="ok")
        kind, _, arg = action.partition(":")
        if kind == "status":
            return web.Response(status=int(arg), text=f"refused with {arg}")
        if kind == "retry_after_s":
            req.answered_at = time.monotonic()
            return web.Response(status=429, headers={"Retry-After": arg}, text="slow down")
        if kind == "retry_after_date":
            req.answered_at = time.monotonic()
            return web.Response(status=429, headers={"Retry-After": formatdate(time.time() + float(arg), usegmt=True)})
        if kind == "slow":
            await asyncio.sleep(float(arg))
            self._act(req)
            return web.Response(status=200, text="ok, slowly")
        if kind == "timeout":
            self._act(req)  # the work is done; the answer comes too late for the sender
            await asyncio.sleep(float(arg))
            return web.Response(status=200, text="ok, too late")
        if kind == "reset":
            assert request.transport is not None
            request.transport.abort()
            return web.Response(status=500)  # never sent: the connection is gone
        raise AssertionError(f"unknown action {action!r}")

    def start(self) -> "Receiver":
        self.port = self.port or free_port()
        started = threading.Event()
        self._loop = asyncio.new_event_loop()

        async def serve() -> None:
            app = web.Application()
            app.router.add_post("/hook", self._handle)
            self._runner = web.AppRunner(app, access_log=None)
            await self._runner.setup()
            await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
            started.set()

        self._thread = threading.Thread(target=self._loop.run_forever, name="receiver", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(serve(), self._loop).result(10)
        started.wait(10)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def snapshot(self) -> tuple[list[Request], dict[str, list[Request]]]:
        with self._lock:
            return list(self.requests), {k: list(v) for k, v in self.effects.items()}

    def __enter__(self) -> "Receiver":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
