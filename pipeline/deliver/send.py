"""One trigger to one destination: signed POSTs, retried with backoff until delivered or given up.

An attempt's result is one of three (``classify``):

* **delivered**: any 2xx;
* **retry**: 408, 429, any 5xx, a timeout, a refused or reset connection, a
  response that broke off. The wait before the next attempt is the
  response's ``Retry-After`` (seconds, or an HTTP date) when it has one, at
  most ``CX_DELIVERY_RETRY_AFTER_MAX_S``; else a random time in ``[0,
  min(CX_DELIVERY_BACKOFF_MAX_S, base x 2^(n-1))]`` ("full jitter");
* **permanent**: any other status (other 4xx, 3xx: redirects are not
  followed, a signed body is not replayed elsewhere). No more attempts.

After ``max_attempts`` attempts, or a permanent result, the trigger is
given up for this destination; the caller dead-letters it.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Callable

import aiohttp

from pipeline.deliver.config import Destination
from pipeline.deliver.signing import HEADER, sign

__all__ = ["Outcome", "RateLimiter", "backoff_s", "classify", "deliver", "retry_after_s"]

USER_AGENT = "cxstream-deliver/1"
ERROR_BODY_CHARS = 200  # of a refusing response's body, kept in last_error


@dataclass(frozen=True)
class Outcome:
    """What became of one trigger at one destination."""

    destination: str
    status: str  # "delivered" or "dead_lettered"
    attempts: int
    last_status: int  # HTTP status of the last attempt; 0: none (timeout, connection error)
    last_error: str  # "" when delivered
    reason: str  # "", "permanent" or "attempts_exhausted"
    first_attempt_ms: int
    last_attempt_ms: int  # the last attempt's end

    @property
    def latency_ms(self) -> int:
        return self.last_attempt_ms - self.first_attempt_ms


def classify(status: int) -> str:
    """``delivered``, ``retry`` or ``permanent`` for an HTTP status; 0 (no response) is ``retry``."""
    if 200 <= status < 300:
        return "delivered"
    if status == 0 or status in (408, 429) or status >= 500:
        return "retry"
    return "permanent"


def retry_after_s(value: str | None, now_s: float) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait (delay-seconds or HTTP-date form); None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now_s)


def backoff_s(attempt: int, base_s: float, max_s: float, rand: Callable[[], float] = random.random) -> float:
    """Full-jitter wait after failed attempt ``attempt`` (1-based): random in [0, min(max, base x 2^(attempt-1))]."""
    return rand() * min(max_s, base_s * 2 ** min(attempt - 1, 30))


class RateLimiter:
    """At most ``rate_per_s`` starts per second, evenly spaced (0: no limit)."""

    def __init__(self, rate_per_s: float) -> None:
        self.interval = 1.0 / rate_per_s if rate_per_s > 0 else 0.0
        self._next = 0.0

    async def acquire(self) -> None:
        if not self.interval:
            return
        now = time.monotonic()
        slot = max(now, self._next)
        self._next = slot + self.interval
        if slot > now:
            await asyncio.sleep(slot - now)


def _ms() -> int:
    return int(time.time() * 1000)


async def deliver(
    session: aiohttp.ClientSession,
    dest: Destination,
    limiter: RateLimiter,
    slots: asyncio.Semaphore,
    body: bytes,
    trigger_id: str,
    kind: str,
    *,
    backoff_base_s: float,
    backoff_max_s: float,
    retry_after_max_s: float,
) -> Outcome:
    """POST ``body`` to ``dest`` until it is delivered, refused for good or out of attempts."""
    first_ms = 0
    attempt = 0
    while True:
        attempt += 1
        await limiter.acquire()
        retry_after: str | None = None
        async with slots:
            started = _ms()
            first_ms = first_ms or started
            headers = {
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
                "Idempotency-Key": trigger_id,
                HEADER: sign(dest.secret, body, int(time.time())),
                "X-Cx-Trigger-Kind": kind,
                "X-Cx-Attempt": str(attempt),
            }
            try:
                async with session.post(
                    dest.url,
                    data=body,
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=dest.timeout_s),
                    allow_redirects=False,
                ) as resp:
                    status = resp.status
                    retry_after = resp.headers.get("Retry-After")
                    text = await resp.content.read(4096)
                error = "" if 200 <= status < 300 else f"HTTP {status}: {text.decode('utf-8', 'replace')[:ERROR_BODY_CHARS]}"
            except asyncio.TimeoutError:
                status, error = 0, f"timeout after {dest.timeout_s:g} s"
            except aiohttp.ClientError as exc:
                status, error = 0, f"{type(exc).__name__}: {str(exc)[:ERROR_BODY_CHARS]}"
            ended = _ms()
        verdict = classify(status)
        if verdict == "delivered":
            return Outcome(dest.name, "delivered", attempt, status, "", "", first_ms, ended)
        if verdict == "permanent" or attempt >= dest.max_attempts:
            reason = "permanent" if verdict == "permanent" else "attempts_exhausted"
            return Outcome(dest.name, "dead_lettered", attempt, status, error, reason, first_ms, ended)
        wait = retry_after_s(retry_after, time.time())
        if wait is None:
            wait = backoff_s(attempt, backoff_base_s, backoff_max_s)
        else:
            wait = min(wait, retry_after_max_s)
        await asyncio.sleep(wait)
