"""The worker web port's token: written at ``cxstream up``, required on every request.

``cxstream up`` writes a new token to ``<data dir>/worker.token`` at each
start (``new_token``), readable by its owner only (mode 0600 from the moment
the file exists). A worker started on its own (``cxstream worker``) uses
the token it finds there or writes one. Every request to a worker's web
port must carry ``Authorization: Bearer <token>``; any other request gets
401 (``token_middleware``), except ``/health`` and ``/ready`` (``OPEN_PATHS``:
they answer a status for load balancers and orchestrators, and no data).
``cxstream query`` reads the token from the data
dir, as do the tests and the benchmark.
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

from aiohttp import web

__all__ = [
    "OPEN_PATHS", "TOKEN_FILE", "TokenMissing", "ensure_token", "new_token", "read_token", "token_middleware",
    "worker_headers",
]  # fmt: skip

TOKEN_FILE = "worker.token"
# Answered without the token: liveness and readiness (a status, no data).
OPEN_PATHS = frozenset(("/health", "/ready"))


class TokenMissing(FileNotFoundError):
    """No usable worker token in the data dir: the file is absent, empty or not text; the message names it.

    A ``FileNotFoundError``, whatever the case: ``pipeline.cli.main`` prints
    an ``OSError`` as one line (exit 1), and the callers that take a missing
    file for "no pipeline ran here" (the dashboard's store, ``ensure_token``)
    take an empty one so too.
    """


def new_token(data_dir: Path) -> str:
    """Write a fresh token to ``data_dir/worker.token`` (mode 0600 from creation); return it.

    The file is created under a temporary name with ``O_EXCL`` and mode
    0600, then renamed over the old one: at no moment can another user
    read a token, and a reader never sees a half-written one.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    tmp = data_dir / f".{TOKEN_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(token + "\n")
        os.replace(tmp, data_dir / TOKEN_FILE)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return token


def read_token(data_dir: Path) -> str:
    """The worker token of ``data_dir``.

    ``TokenMissing`` when the file is absent, empty or not text (no worker
    ever ran there, or the file was removed or overwritten); any other
    ``OSError`` (a directory, no permission) as the OS raised it, with the path.
    """
    path = data_dir / TOKEN_FILE
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        raise TokenMissing(_no_token(path, "does not exist")) from None
    except UnicodeDecodeError:
        raise TokenMissing(_no_token(path, "is not text")) from None
    if not token:
        raise TokenMissing(_no_token(path, "is empty"))
    return token


def _no_token(path: Path, what: str) -> str:
    # The absolute path: cxstream status names the data dir so, and it runs from anywhere.
    return f"no worker token: {path.resolve()} {what} (cxstream up writes it at each start)"


def ensure_token(data_dir: Path) -> str:
    """The token ``cxstream up`` wrote, or a new one for a worker started on its own.

    Only a missing, empty or garbled file is replaced: one this process
    cannot read may be another user's, and its error says so.
    """
    try:
        return read_token(data_dir)
    except TokenMissing:
        return new_token(data_dir)


def token_middleware(token: str):  # noqa: ANN201 - aiohttp's middleware type
    """An aiohttp middleware that answers 401 to any request without ``Authorization: Bearer <token>``.

    ``GET`` (or ``HEAD``) of a path in ``OPEN_PATHS`` needs no token.
    """
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def require_token(request: web.Request, handler):  # noqa: ANN001, ANN202
        if request.path in OPEN_PATHS and request.method in ("GET", "HEAD"):
            return await handler(request)
        given = request.headers.get("Authorization", "").encode("utf-8", "surrogateescape")
        if not hmac.compare_digest(given, expected):
            return web.json_response(
                {"error": "missing or wrong token: send Authorization: Bearer <token of the data dir>"},
                status=401,
                headers={"WWW-Authenticate": 'Bearer realm="cxstream-worker"'},
            )
        return await handler(request)

    return require_token


def worker_headers(token: str) -> dict[str, str]:
    """The header every request to a worker's web port carries."""
    return {"Authorization": f"Bearer {token}"}
