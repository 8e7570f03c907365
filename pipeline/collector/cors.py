"""Cross-origin rules for browsers posting events (CORS): which origins, which request headers.

Storefront SDKs run on the shop's pages and post to the collector on
another origin, so the browser asks first (a preflight ``OPTIONS``) for
every request that is not a "simple" one, and blocks the real request
unless the answer allows its method and each of its headers. A retry
whose header the preflight did not allow is lost in the browser, never
seen by the collector.

Request headers a browser may send (``ALLOWED_HEADERS``, compared without
case), and who sends them:

- ``Authorization``: basic auth with the write key (analytics-next,
  RudderStack's XHR transport);
- ``Content-Type``, ``Content-Encoding``, ``Accept``: every SDK;
- ``X-Retry-Count``: analytics-next on a retry;
- ``AnonymousId`` (base64 anonymous id) and ``SentAt``: RudderStack's
  analytics-js on every request;
- ``Rsa-*`` (``Rsa-Retry-Attempt``, ``Rsa-Retry-Reason``,
  ``Rsa-Since-Last-Attempt``, ``Rsa-Since-First-Attempt``,
  ``Rsa-Recovered``): RudderStack's delivery metadata, on retries and on
  events recovered from storage. The family is allowed by its prefix.

A preflight is answered with exactly the requested headers, each checked
against the list: a request for any other header gets ``403`` listing the
allowed ones (the browser then blocks the request, and the developer sees
why). Refusals never quote the request's own headers or origin.

Origins (``CX_COLLECTOR_ALLOWED_ORIGINS``): ``*`` answers
``Access-Control-Allow-Origin: *`` and never allows credentials (browsers
refuse that pair anyway). A list answers only its origins, each echoed
with ``Access-Control-Allow-Credentials: true`` and ``Vary: Origin``; a
browser request (one with an ``Origin`` header) from any other origin is
refused with 403 before its body is read, so nothing of it is produced.
Requests without ``Origin`` (server SDKs, curl) are not browser requests
and are always served: the write key is what authenticates them.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["ALLOWED_HEADERS", "ALLOWED_HEADER_PREFIXES", "HEADER_REFUSED", "MAX_AGE_S", "ORIGIN_REFUSED", "CorsPolicy"]

ALLOWED_HEADERS = frozenset({
    "accept", "authorization", "content-type", "content-encoding",
    "x-retry-count",
    "anonymousid", "sentat",
})  # fmt: skip
ALLOWED_HEADER_PREFIXES = ("rsa-",)
# How long a browser may reuse a preflight's answer: Chromium caps it at 2 h, Firefox at 24 h.
MAX_AGE_S = 7200
METHODS = "POST, OPTIONS"
# Headers a page's script may read on an answer (the SDKs back off by Retry-After).
EXPOSED = "Retry-After"
# The refusals quote nothing of the request (its origin, its header names).
ORIGIN_REFUSED = "this origin is not in CX_COLLECTOR_ALLOWED_ORIGINS"
HEADER_REFUSED = (
    "a requested header is not allowed; allowed: "
    + ", ".join(sorted(ALLOWED_HEADERS)) + ", " + ", ".join(p + "*" for p in ALLOWED_HEADER_PREFIXES)
)


def header_allowed(name: str) -> bool:
    name = name.strip().lower()
    return name in ALLOWED_HEADERS or name.startswith(ALLOWED_HEADER_PREFIXES)


class CorsPolicy:
    """The CORS answer for one configuration: ``origins`` empty means any origin (``*``)."""

    def __init__(self, origins: tuple[str, ...]) -> None:
        self.origins = frozenset(o.lower() for o in origins)

    def origin_allowed(self, origin: str | None) -> bool:
        """Whether a request with this ``Origin`` header may be served (None: not a browser request)."""
        return origin is None or not self.origins or origin.lower() in self.origins

    def headers(self, origin: str | None) -> dict[str, str]:
        """The CORS headers of any answer to a request with this ``Origin``."""
        if not self.origins:
            return {"Access-Control-Allow-Origin": "*", "Access-Control-Expose-Headers": EXPOSED}
        out = {"Vary": "Origin"}  # the answer differs per origin: caches must keep them apart
        if origin is not None and origin.lower() in self.origins:
            out.update({
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Credentials": "true",
                "Access-Control-Expose-Headers": EXPOSED,
            })  # fmt: skip
        return out

    def preflight(self, request_headers: Mapping[str, str]) -> tuple[int, dict[str, str], str | None]:
        """(status, headers, refusal) for an ``OPTIONS`` request; refusal is None when allowed."""
        origin = request_headers.get("Origin")
        headers = self.headers(origin)
        if not self.origin_allowed(origin):
            return 403, headers, ORIGIN_REFUSED
        requested = [h.strip() for h in request_headers.get("Access-Control-Request-Headers", "").split(",") if h.strip()]
        refused = [h for h in requested if not header_allowed(h)]
        if refused:
            return 403, headers, HEADER_REFUSED
        headers.update({"Access-Control-Allow-Methods": METHODS, "Access-Control-Max-Age": str(MAX_AGE_S)})
        if requested:
            headers["Access-Control-Allow-Headers"] = ", ".join(requested)
            # The answer echoes the request's list: a cache must not reuse it for another list.
            vary = headers.get("Vary")
            headers["Vary"] = f"{vary}, Access-Control-Request-Headers" if vary else "Access-Control-Request-Headers"
        return 204, headers, None
