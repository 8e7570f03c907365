"""Webhook destinations, read from the file ``CX_DELIVERY_CONFIG`` names (TOML or JSON).

TOML::

    [[destination]]
    name = "klaviyo-flows"
    url = "https://hooks.example.com/cx"
    secret_env = "CX_HOOK_SECRET_KLAVIYO"   # or: secret = "..."
    kinds = ["cart_abandoned", "offer_cancelled"]   # empty or absent: every kind
    actions = ["offer"]                              # empty or absent: every action
    tenants = ["shop-a"]                             # empty or absent: every tenant
    rate_per_s = 20          # requests per second to this destination, at most
    timeout_s = 10           # one request
    max_attempts = 8         # then the trigger is dead-lettered for this destination
    concurrency = 8          # requests in flight to this destination, at most

JSON: ``{"destination": [{...}, ...]}`` with the same keys. A wrong file
stops start-up with a message naming the file, the destination and the key;
secrets are never part of a message (``Destination.__repr__`` hides them).
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from pipeline.settings import Settings

__all__ = ["ConfigError", "Destination", "KINDS", "ACTIONS", "load_destinations", "parse_destinations"]

KINDS = frozenset({"cart_abandoned", "checkout_friction", "support_risk", "offer_cancelled"})
ACTIONS = frozenset({"offer", "assist", "none"})
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_KEYS = frozenset({
    "name", "url", "secret", "secret_env", "kinds", "actions", "tenants",
    "rate_per_s", "timeout_s", "max_attempts", "concurrency",
})  # fmt: skip


class ConfigError(ValueError):
    """The delivery configuration is wrong; the message says where."""


@dataclass(frozen=True)
class Destination:
    name: str
    url: str
    secret: bytes = field(repr=False)
    kinds: frozenset[str] = frozenset()  # empty: every kind
    actions: frozenset[str] = frozenset()
    tenants: frozenset[str] = frozenset()
    rate_per_s: float = 0.0  # 0: no limit
    timeout_s: float = 10.0
    max_attempts: int = 8
    concurrency: int = 8

    def wants(self, trigger: dict) -> bool:
        """Whether this destination takes ``trigger`` (its kind, action and tenant filters)."""
        return (
            (not self.kinds or trigger.get("kind") in self.kinds)
            and (not self.actions or trigger.get("action") in self.actions)
            and (not self.tenants or trigger.get("tenant") in self.tenants)
        )

    @property
    def where(self) -> str:
        """The URL without credentials, query or fragment: safe to log."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{host}{port}{parts.path}"


def _strings(raw: object, what: str, allowed: frozenset[str] | None = None) -> frozenset[str]:
    if raw is None:
        return frozenset()
    if not isinstance(raw, list) or not all(isinstance(v, str) and v for v in raw):
        raise ConfigError(f"{what}: expected a list of non-empty strings")
    if allowed is not None and (unknown := sorted(set(raw) - allowed)):
        raise ConfigError(f"{what}: unknown {', '.join(map(repr, unknown))} (one of {', '.join(sorted(allowed))})")
    return frozenset(raw)


def _number(raw: object, what: str, default: float, low: float, high: float, integer: bool = False) -> float:
    if raw is None:
        return default
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or (integer and not isinstance(raw, int)):
        raise ConfigError(f"{what}: expected {'an integer' if integer else 'a number'}, got {raw!r}")
    if not low <= raw <= high:
        raise ConfigError(f"{what}: must be within {low:g}..{high:g}, got {raw!r}")
    return raw


def _check_url(url: object, where: str) -> None:
    """An http(s) URL with a host and, if it gives one, a port within 1..65535.

    ``urlsplit`` raises on a bracket left open (``http://[::1/x``) and
    ``.port`` on a port out of range: checked here, not when the first
    trigger is sent (``Destination.where`` reads the port).
    """
    expected = f"{where}: url: expected an http:// or https:// URL"
    if not isinstance(url, str):
        raise ConfigError(expected)
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # "Invalid IPv6 URL"
        raise ConfigError(f"{expected} ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(expected)
    try:
        port = parts.port
    except ValueError as exc:  # "Port out of range 0-65535", "Port could not be cast to integer value"
        raise ConfigError(f"{where}: url: the port must be a number within 1..65535 ({exc})") from None
    if port == 0:
        raise ConfigError(f"{where}: url: the port must be a number within 1..65535, got 0")


def parse_destinations(
    data: object, settings: Settings, source: str = "delivery config", environ: dict[str, str] | None = None
) -> list[Destination]:
    """Destinations of a parsed TOML or JSON document ``{"destination": [...]}``."""
    env = os.environ if environ is None else environ
    if not isinstance(data, dict) or not isinstance(data.get("destination"), list) or not data["destination"]:
        raise ConfigError(f"{source}: expected at least one [[destination]] table (JSON: a \"destination\" list)")
    if extra := sorted(set(data) - {"destination"}):
        raise ConfigError(f"{source}: unknown top-level key(s) {', '.join(map(repr, extra))}")
    out: list[Destination] = []
    for i, raw in enumerate(data["destination"]):
        where = f"{source}: destination {i + 1}"
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: expected a table of keys")
        name = raw.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigError(f"{where}: name: expected letters, digits, '_', '.' or '-' (at most 64), got {name!r}")
        where = f"{source}: destination {name!r}"
        if name in {d.name for d in out}:
            raise ConfigError(f"{where}: the name is used twice")
        if unknown := sorted(set(raw) - _KEYS):
            raise ConfigError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))} (known: {', '.join(sorted(_KEYS))})")
        url = raw.get("url")
        _check_url(url, where)
        if ("secret" in raw) == ("secret_env" in raw):
            raise ConfigError(f"{where}: give exactly one of secret and secret_env")
        if "secret_env" in raw:
            var = raw["secret_env"]
            if not isinstance(var, str) or not var:
                raise ConfigError(f"{where}: secret_env: expected the name of an environment variable")
            secret = env.get(var, "")
            if not secret:
                raise ConfigError(f"{where}: secret_env: the environment variable {var} is not set or empty")
            not_text = f"secret_env: the environment variable {var} is not UTF-8 text"
        else:
            secret = raw["secret"]
            if not isinstance(secret, str) or not secret:
                raise ConfigError(f"{where}: secret: expected a non-empty string")
            not_text = "secret: not UTF-8 text (a lone surrogate such as \\ud800)"
        if len(secret) < 16:
            raise ConfigError(f"{where}: the secret must be at least 16 characters")
        try:
            key = secret.encode()
        except UnicodeEncodeError:
            # A lone surrogate: JSON's "\ud800", or a byte of the environment that is not UTF-8
            # (Python reads it as one). HMAC signs bytes; the message never shows the secret.
            raise ConfigError(f"{where}: {not_text}") from None
        out.append(
            Destination(
                name=name,
                url=url,
                secret=key,
                kinds=_strings(raw.get("kinds"), f"{where}: kinds", KINDS),
                actions=_strings(raw.get("actions"), f"{where}: actions", ACTIONS),
                tenants=_strings(raw.get("tenants"), f"{where}: tenants"),
                rate_per_s=float(_number(raw.get("rate_per_s"), f"{where}: rate_per_s", 0.0, 0.0, 100_000.0)),
                timeout_s=float(_number(raw.get("timeout_s"), f"{where}: timeout_s", settings.delivery_timeout_s, 0.001, 300.0)),
                max_attempts=int(_number(raw.get("max_attempts"), f"{where}: max_attempts", settings.delivery_max_attempts, 1, 100, True)),
                concurrency=int(_number(raw.get("concurrency"), f"{where}: concurrency", 8, 1, 1000, True)),
            )
        )
    return out


def load_destinations(settings: Settings, environ: dict[str, str] | None = None) -> list[Destination]:
    """The destinations of the file ``CX_DELIVERY_CONFIG`` names (``.json``: JSON; otherwise TOML)."""
    if not settings.delivery_config:
        raise ConfigError("CX_DELIVERY_CONFIG: name the TOML or JSON file of webhook destinations (docs/delivery.md)")
    path = Path(settings.delivery_config)
    kind = "JSON" if path.suffix.lower() == ".json" else "TOML"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"CX_DELIVERY_CONFIG: cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:  # a binary file, or text in another encoding
        raise ConfigError(f"{path}: not valid {kind}: not UTF-8 text (byte {exc.start})") from None
    try:
        data = json.loads(text) if kind == "JSON" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: not valid {kind}: {exc}") from None
    except RecursionError:  # both parsers recurse once per level of nesting
        raise ConfigError(f"{path}: not valid {kind}: arrays or tables nested too deeply") from None
    return parse_destinations(data, settings, str(path), environ)
