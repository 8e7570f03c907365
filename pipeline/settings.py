"""Settings: one pydantic-settings object, read from ``CX_*`` variables and ``.env``.

Read once at start-up (``Settings.load()``); everything else receives the
object. A wrong value stops start-up with a message naming the variable.
"""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path
from urllib.parse import urlsplit
from typing import Callable, Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "DEFAULT_PII_KEYS",
    "DEFAULT_PII_SALT",
    "FRICTION_SIGNALS",
    "Settings",
    "SettingsError",
    "check_topic_name",
    "parse_friction_weights",
    "parse_holdouts",
    "parse_origins",
    "parse_pii_keys",
    "parse_pairs",
    "parse_selectors",
    "parse_tiers",
    "parse_write_keys",
]

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS

# The friction signals (friction_daily.signal; docs/detection.md).
FRICTION_SIGNALS = (
    "rage_click", "dead_click", "error_click", "payment_failed",
    "zero_result_search", "slow_page", "u_turn", "checkout_loop",
)  # fmt: skip
# Points per occurrence in the session friction score (capped at 100);
# docs/detection.md explains the choice: the nearer a signal is to a lost
# payment, the heavier it weighs.
DEFAULT_FRICTION_WEIGHTS = (
    "payment_failed=30,error_click=20,rage_click=20,checkout_loop=20,"
    "dead_click=10,u_turn=10,zero_result_search=10,slow_page=5"
)
# Clicking repeatedly on these is normal use, not rage (nor a dead click):
# text fields (a click per word to place the caret), selects and +/-
# quantity steppers. Each entry is a compound CSS selector matched against
# every element of the click's selector, quotes and case ignored, an
# ``input`` without ``type`` counting as a text field
# (``pipeline.detect.friction``). ';' separates entries (it cannot occur in
# a CSS selector, unlike ',').
DEFAULT_RAGE_EXCLUDE = (
    "input[type=text];input[type=search];input[type=email];input[type=tel];input[type=url];input[type=password];"
    "input[type=number];textarea;select;[contenteditable];[role=textbox];[role=spinbutton];[role=combobox];"
    "[class*=stepper];.qty-plus;.qty-minus"
)


# The shipped salt: public, so hashes made with it are reproducible by anyone.
DEFAULT_PII_SALT = "change-me"
DEFAULT_PII_KEYS = "email,phone,ip,address"


class SettingsError(ValueError):
    """A configuration value is wrong; the message names the ``CX_`` variable."""


def parse_write_keys(raw: str) -> dict[str, str]:
    """Parse ``key=tenant,key2=tenant2`` into ``{key: tenant}``."""
    keys: dict[str, str] = {}
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, tenant = item.partition("=")
        key, tenant = key.strip(), tenant.strip()
        if not sep or not key or not tenant:
            raise ValueError(f"expected key=tenant, got {item!r}")
        if key in keys:
            raise ValueError(f"write key {key!r} given twice")
        keys[key] = tenant
    if not keys:
        raise ValueError("at least one key=tenant pair is needed")
    return keys


def parse_friction_weights(raw: str) -> dict[str, int]:
    """Parse ``signal=points,...``; every signal of ``FRICTION_SIGNALS`` must be given once, 0..100."""
    weights: dict[str, int] = {}
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, points = (part.strip() for part in item.partition("="))
        if not sep or name not in FRICTION_SIGNALS:
            raise ValueError(f"expected signal=points with a signal of {', '.join(FRICTION_SIGNALS)}, got {item!r}")
        if name in weights:
            raise ValueError(f"signal {name!r} given twice")
        if not points.isdigit() or int(points) > 100:
            raise ValueError(f"{name}: points must be an integer 0..100, got {points!r}")
        weights[name] = int(points)
    missing = [s for s in FRICTION_SIGNALS if s not in weights]
    if missing:
        raise ValueError(f"missing weights for {', '.join(missing)}")
    return weights


def parse_pii_keys(raw: str) -> tuple[str, ...]:
    """Parse ``email,phone``: lower-case key patterns, letters and digits only, at least one."""
    patterns = tuple(dict.fromkeys(part.strip().lower() for part in raw.split(",") if part.strip()))
    for pattern in patterns:
        if not pattern.isascii() or not pattern.isalnum():
            raise ValueError(f"a key pattern is letters and digits, got {pattern!r}")
    if not patterns:
        raise ValueError("at least one key pattern is needed")
    return patterns


def parse_selectors(raw: str) -> tuple[str, ...]:
    """Parse ``sel;sel2``: entries separated by ';', blanks dropped."""
    return tuple(part.strip() for part in raw.split(";") if part.strip())


def parse_pairs(raw: str, form: str) -> list[tuple[str, str]]:
    """Parse ``a=b,c=d`` into ``[(a, b), (c, d)]``; empty text is an empty list; names are unique."""
    pairs: list[tuple[str, str]] = []
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, value = item.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name or not value:
            raise ValueError(f"expected {form}, got {item!r}")
        if name in dict(pairs):
            raise ValueError(f"{name!r} given twice")
        pairs.append((name, value))
    return pairs


def parse_tiers(raw: str) -> tuple[tuple[float, int], ...]:
    """Parse ``100=15,250=20`` (cart value=discount pct) into ascending ``((100.0, 15), (250.0, 20))``."""
    tiers = []
    for value, pct in parse_pairs(raw, "cart_value=discount_pct"):
        try:
            tier = (float(value), int(pct))
        except ValueError:
            raise ValueError(f"expected a number=whole percent, got {value}={pct}") from None
        if tier[0] < 0 or not 0 <= tier[1] <= 100:
            raise ValueError(f"cart value must be >= 0 and discount within 0..100, got {value}={pct}")
        tiers.append(tier)
    if [t[0] for t in tiers] != sorted({t[0] for t in tiers}):
        raise ValueError("tiers must be given in ascending cart value")
    return tuple(tiers)


def parse_origins(raw: str) -> tuple[str, ...]:
    """Parse ``*`` (any origin) into ``()``, or ``https://a.example,https://b.example`` into its origins.

    An origin is ``scheme://host[:port]``, as browsers send it in ``Origin``:
    no path, no trailing slash.
    """
    raw = raw.strip()
    if raw == "*":
        return ()
    origins = []
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        scheme, sep, rest = item.partition("://")
        if item == "*" or not sep or scheme not in ("http", "https") or not rest or "/" in rest:
            raise ValueError(f"expected '*' or origins such as https://shop.example (no path), got {item!r}")
        origins.append(item.lower())
    if not origins:
        raise ValueError("expected '*' or at least one origin")
    return tuple(origins)


def parse_holdouts(raw: str) -> tuple[tuple[str, float], ...]:
    """Parse ``spring=20,friction-v1=5`` into ``(("spring", 20.0), ("friction-v1", 5.0))``."""
    out = []
    for name, pct in parse_pairs(raw, "experiment=holdout_pct"):
        try:
            share = float(pct)
        except ValueError:
            raise ValueError(f"holdout of {name!r} is not a number: {pct!r}") from None
        if not 0 <= share <= 100:
            raise ValueError(f"holdout of {name!r} must be within 0..100")
        out.append((name, share))
    return tuple(out)


# The parser each text-valued setting must pass (see Settings._check_parsed).
# Kafka's rule for topic names (its Topic.validate): 1 to 249 of these characters, not "." or "..".
_TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")


def check_topic_name(name: str) -> None:
    """Raise ValueError unless Kafka accepts ``name`` as a topic name."""
    if not _TOPIC_NAME.fullmatch(name) or name in (".", ".."):
        raise ValueError(
            f"{name!r} is not a Kafka topic name (1 to 249 letters, digits, '.', '_' or '-'; not '.' or '..')"
        )


_PARSERS: dict[str, Callable[[str], object]] = {
    "write_keys": parse_write_keys,
    "collector_allowed_origins": parse_origins,
    "friction_weights": parse_friction_weights,
    "offer_discount_tiers": parse_tiers,
    "experiment_holdouts": parse_holdouts,
    "experiment_by_kind": lambda v: parse_pairs(v, "kind=experiment"),
    "pii_keys": parse_pii_keys,
}


def _check_env_file(path: Path) -> None:
    """A ``.env`` line that cannot be read as ``NAME=value`` is an error, not a warning and a skipped line.

    python-dotenv only warns and goes on: ``CX_KAFKA_BOOTSTRAP broker:9092`` (no ``=``) would leave the
    setting unset, and the pipeline would start on its embedded defaults instead of the shop's Kafka.
    A ``CX_`` name with no ``=`` at all is refused for the same reason.
    """
    from dotenv.parser import parse_stream

    try:
        with path.open(encoding="utf-8") as stream:
            bindings = list(parse_stream(stream))
    except FileNotFoundError:
        return
    except (UnicodeDecodeError, IsADirectoryError, PermissionError):
        return  # said by pydantic-settings' own read, below (not text) or left to it
    bad = []
    for binding in bindings:
        no_value = binding.key is not None and binding.value is None and binding.key.upper().startswith("CX_")
        if binding.error or no_value:
            original = binding.original.string
            blank_lines = original[: len(original) - len(original.lstrip())].count("\n")  # before the statement
            bad.append(f"line {binding.original.line + blank_lines}: {original.strip()[:80]!r} is not NAME=value")
    if bad:
        raise SettingsError(f"invalid configuration: .env in {Path.cwd()}:\n  " + "\n  ".join(bad))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CX_", env_file=".env", extra="ignore", frozen=True
    )

    # --- components -------------------------------------------------------
    kafka_bootstrap: str = Field(
        "", description="Kafka bootstrap servers (host:port,...); empty starts the embedded broker (memory only)"
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="security protocol of every Kafka client"
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "PLAIN", description="SASL mechanism, used when the protocol is SASL_PLAINTEXT or SASL_SSL"
    )
    kafka_sasl_username: str = Field("", description="SASL user name")
    kafka_sasl_password: str = Field("", description="SASL password")
    kafka_ssl_cafile: str = Field(
        "", description="CA file that signs the brokers' TLS certificates; empty: the Kafka clients' default trust store"
    )
    kafka_partitions: int = Field(
        4, ge=1, le=1024, description="partitions of the topics cxstream creates (an existing topic keeps its own)"
    )
    kafka_replication: int = Field(1, ge=1, le=16, description="replication factor of the topics cxstream creates")
    kafka_check_timeout_s: float = Field(
        10.0, gt=0, le=300,
        description="how long a starting worker, collector or deliver waits for the broker to answer before it exits 69",
    )

    clickhouse_url: str = Field(
        "",
        description="chdb:///path (embedded), clickhouse://user:password@host:9000/db (a server, native protocol) "
        "or clickhouses://user:password@host:9440/db (the same over TLS; query-string options such as "
        "?verify=false or ?ca_certs=/path go to clickhouse-driver); empty: chdb in CX_DATA_DIR/clickhouse. "
        "The /db part is only the connection's default database (it must exist; default does): every table "
        "and view is in the database cx, which cxstream creates",
    )
    clickhouse_cluster: str = Field(
        "",
        description="name of a cluster in the servers' remote_servers config: every table is created ON CLUSTER as a "
        "Replicated*MergeTree <table>_local (ZooKeeper path /clickhouse/tables/{shard}/cx/<table>_local/<migration>, "
        "macros {shard} and {replica}) under a Distributed <table> that the worker writes and the views read "
        "(docs/clickhouse.md, Cluster mode); needs a clickhouse:// URL. Empty: single-server tables",
    )
    data_dir: Path = Field(Path(".cxdata"), description="directory of the embedded store, logs and run.json")

    collector_host: str = Field("127.0.0.1", description="address the collector listens on")
    collector_port: int = Field(
        8088, ge=0, le=65535, description="port the collector listens on; 0: cxstream up picks a free port and prints the URL"
    )
    collector_processes: int = Field(
        1, ge=1, le=64,
        description="collector processes serving the one port (SO_REUSEPORT: the kernel spreads connections over "
        "them; Linux); process i serves its metrics on CX_COLLECTOR_METRICS_PORT + i. 1: one process, no SO_REUSEPORT",
    )
    collector_max_inflight_bytes: int = Field(
        64 * 1024 * 1024, gt=0, description="request bytes the collector holds at once; past it: 503 + Retry-After"
    )
    collector_body_timeout_s: float = Field(
        30.0, gt=0, le=600, description="time a request's whole body may take to arrive; past it: 408, its reservation freed"
    )
    collector_idle_timeout_s: float = Field(
        10.0, gt=0, le=600, description="time the collector waits for the next bytes of a body; past it: 408"
    )
    collector_header_timeout_s: float = Field(
        10.0, gt=0, le=600,
        description="time a connection has to send a whole request line and headers, from its opening or from the "
        "first byte of a next request; past it the connection is closed",
    )
    collector_keepalive_s: float = Field(
        75.0, gt=0, le=3600,
        description="time a kept-alive connection may stay idle after an answer before the collector closes it "
        "(keep it above the idle timeout of a load balancer in front)",
    )
    collector_max_pending_connections: int = Field(
        512, ge=1, le=100_000,
        description="connections open at once that have not yet sent a whole request's headers (idle kept-alive "
        "ones included); past it the oldest of them is closed",
    )
    collector_max_unauthenticated: int = Field(
        64, ge=1, le=100_000,
        description="requests read at once before their write key is known (key in the body, at most 64 KB each); past it: 503",
    )
    collector_allowed_origins: str = Field(
        "*",
        description=(
            "web origins browsers may send events from: '*' (any origin, no credentials) or a comma-separated "
            "list such as https://shop.example,https://www.shop.example (only those; credentials allowed; a "
            "browser request from any other origin is refused with 403)"
        ),
    )
    write_keys: str = Field(
        "demo_write_key=demo-shop", description="key=tenant,key2=tenant2: each write key names one storefront (tenant)"
    )
    worker_web_port: int = Field(
        6066,
        ge=0,
        le=65535,
        description="the worker's loopback endpoint (/cx/query, /cx/stats). cxstream up and cxstream demo replace "
        "6066 (and 0) with a free port, recorded in CX_DATA_DIR/run.json where cxstream query finds it; any other "
        "value is used as is, as by cxstream worker run alone",
    )
    worker_web_bind: str = Field(
        "127.0.0.1", min_length=1, description="address the worker's web port listens on (token required on every request)"
    )
    dashboard_enabled: bool = Field(
        True, description="cxstream up also serves the analysts' dashboard (docs/dashboard.md) as a child process"
    )
    dashboard_bind: str = Field(
        "127.0.0.1", min_length=1,
        description="address the dashboard listens on (the data dir's worker token is required on every request)",
    )
    dashboard_port: int = Field(
        0, ge=0, le=65535,
        description="port of the dashboard; 0: a free port, printed with its URL by cxstream up and cxstream dashboard",
    )
    dashboard_refresh_s: float = Field(
        10.0, ge=1, le=3600,
        description="how often an open dashboard page asks for fresh numbers (each time: seven queries over the views)",
    )
    dashboard_days: int = Field(14, ge=1, le=366, description="days the dashboard shows when the page does not choose")
    query_timeout_s: float = Field(30.0, gt=0, le=3600, description="longest run of one analyst query (/cx/query, the dashboard, cxstream query)")
    query_max_memory_mb: int = Field(1000, gt=0, description="memory one analyst query may use (/cx/query, the dashboard, cxstream query)")
    query_max_result_rows: int = Field(100_000, gt=0, description="rows one analyst query may return (/cx/query, the dashboard, cxstream query)")
    worker_group: str = Field(
        "cxstream", min_length=1, description="Faust app id, i.e. the Kafka consumer group of the workers"
    )
    worker_session_timeout_s: float = Field(
        10.0, gt=0, description="consumer-group session timeout of the workers and of deliver: how soon a dead one's partitions move to another (heartbeat: a tenth of it)"
    )
    recovery_stall_s: float = Field(
        30.0, ge=1, le=3600,
        description="a worker whose table recovery reads nothing from a changelog partition it still needs for this long exits 75 and starts again",
    )
    # How long a worker's fetch may wait at the broker for data. A Kafka broker
    # answers as soon as data arrives; the embedded broker only when this runs
    # out, so it bounds the latency there (faust-streaming fixes it at 1,500).
    kafka_fetch_wait_ms: int = Field(
        100, ge=1, le=60_000, description="longest a worker's fetch waits at the broker for data (faust-streaming's own: 1,500)"
    )

    # --- supervision (cxstream up restarts its collector and workers) -----
    restart_budget: int = Field(
        5, ge=0, le=1000,
        description="restarts of one component that may fail in a row; one more failure stops cxstream up (exit 70)",
    )
    restart_backoff_s: float = Field(
        1.0, gt=0, le=60,
        description="wait before the first restart; doubled after each failed one, at most 30 s",
    )
    restart_stable_s: float = Field(
        30.0, gt=0,
        description="a component up this long after a (re)start counts as started: its failures in a row go back to 0",
    )

    # --- operations (docs/operations.md) ----------------------------------
    log_format: Literal["text", "json"] = Field(
        "text",
        description="log lines of every cxstream process: text, or json (one object a line: ts, level, component, "
        "message, and tenant, topic, partition, offset where known)",
    )
    collector_metrics_host: str = Field(
        "127.0.0.1", min_length=1,
        description="address of the collector's metrics port (/metrics, /health, /ready; no credentials: keep it off "
        "public networks, it names tenants)",
    )
    collector_metrics_port: int = Field(
        9108, ge=0, le=65535,
        description="port of the collector's metrics endpoint. cxstream up replaces 9108 (and 0) with a free port, "
        "recorded in CX_DATA_DIR/run.json; any other value is used as is (0 on a collector run alone: any free port)",
    )
    ready_max_lag: int = Field(
        10_000, ge=0,
        description="a worker answers /ready with 200 only while each of its partitions is at most this many "
        "records behind the end of its topic",
    )

    # --- topics -----------------------------------------------------------
    topic_events: str = Field("cx.events", description="topic of accepted events (the collector writes, workers read)")
    topic_triggers: str = Field("cx.triggers", description="topic of triggers for marketing automation")
    topic_deadletter: str = Field("cx.deadletter", description="topic of dead letters: rejected input with its reason")
    trigger_format: Literal["json", "avro"] = Field(
        "json", description="encoding of trigger records: JSON, or the Avro binary of schemas/trigger.avsc"
    )

    # --- webhook delivery of triggers (cxstream deliver, docs/delivery.md) --
    delivery_config: str = Field(
        "",
        description="TOML or JSON file listing the webhook destinations of triggers (docs/delivery.md); "
        "empty: cxstream deliver refuses to start",
    )
    delivery_enabled: bool = Field(
        False, description="cxstream up also starts and supervises cxstream deliver (needs CX_DELIVERY_CONFIG)"
    )
    delivery_group: str = Field(
        "cxstream-deliver", min_length=1, description="Kafka consumer group of cxstream deliver on the triggers topic"
    )
    topic_delivery_deadletter: str = Field(
        "cx.triggers.deadletter",
        description="topic of triggers a destination refused for good or that ran out of attempts, with the reason",
    )
    topic_customers: str = Field(
        "",
        description="topic from the worker's device stage to its customer stage, keyed by customer; empty: the "
        "events topic's name with .events replaced by (or else followed by) .customers, so cx.customers",
    )
    topic_deliveries: str = Field(
        "cx.deliveries", description="topic of delivery outcomes (one per trigger and destination); the worker stores them"
    )
    delivery_max_attempts: int = Field(
        8, ge=1, le=100, description="attempts per trigger and destination before it is dead-lettered (a destination may set its own)"
    )
    delivery_timeout_s: float = Field(
        10.0, gt=0, le=300, description="time one webhook request may take (a destination may set its own)"
    )
    delivery_backoff_s: float = Field(
        0.5, gt=0, le=60, description="base of the retry backoff: the wait before attempt n+1 is random in [0, base x 2^(n-1)]"
    )
    delivery_backoff_max_s: float = Field(
        60.0, gt=0, le=3600, description="longest backoff between two attempts when the answer has no Retry-After"
    )
    delivery_retry_after_max_s: float = Field(
        600.0, gt=0, le=86_400,
        description="longest wait a Retry-After may ask for; a longer one is cut to this (the trigger's offset waits meanwhile)",
    )
    delivery_max_inflight: int = Field(
        256, ge=1, le=100_000, description="triggers being delivered at once; past it cxstream deliver pauses its consumer"
    )
    delivery_drain_s: float = Field(
        30.0, ge=0, le=600, description="on SIGTERM, how long cxstream deliver lets deliveries in progress finish before it stops"
    )

    # --- event-time rules -------------------------------------------------
    abandon_after_ms: int = Field(
        30 * MINUTE_MS, gt=0, description="cart inactivity (event time) after which a cart with items is abandoned"
    )
    session_gap_ms: int = Field(30 * MINUTE_MS, gt=0, description="inactivity (event time) that ends a session")
    allowed_lateness_ms: int = Field(
        1_000, ge=0, description="how far behind the newest event of its partition an event may arrive and still count"
    )
    idle_partition_ms: int = Field(
        250, gt=0, description="wall time a caught-up partition may stay silent before its watermark follows the clock"
    )
    max_event_age_ms: int = Field(
        7 * DAY_MS, gt=0, description="oldest accepted event time, after clock-skew correction; older: too_old dead letter"
    )
    max_event_future_ms: int = Field(
        HOUR_MS, ge=0, description="how far ahead of receipt an event time may be; later: too_far_future dead letter"
    )

    # --- offers -----------------------------------------------------------
    experiment: str = Field("default", description="experiment name on triggers; part of the holdout hash")
    holdout_pct: float = Field(
        10.0, ge=0, le=100, description="holdout share (percent) of experiments without their own in CX_EXPERIMENT_HOLDOUTS"
    )
    offer_cap_ms: int = Field(DAY_MS, ge=0, description="at most one offer or assist per customer (over all devices) in this time")
    offer_valid_ms: int = Field(2 * DAY_MS, gt=0, description="offer validity: expires_at = trigger time + this")
    offer_discount_pct: int = Field(10, ge=0, le=100, description="discount of a cart below the first tier")
    offer_discount_tiers: str = Field(
        "100=15,250=20",
        description="value=pct,...: a cart worth at least value gets pct off (the highest tier reached); empty: none",
    )
    offer_channel: Literal["email", "sms", "onsite"] = Field("email", description="channel named in offers")
    experiment_holdouts: str = Field(
        "", description="name=pct,...: holdout share of named experiments; others use holdout_pct"
    )
    experiment_by_kind: str = Field(
        "", description="kind=name,...: experiment of a trigger kind (e.g. checkout_friction=friction-v1); others: experiment"
    )
    loyalty_assist_score: int = Field(
        70, ge=0, le=101, description="loyalty score from which an eligible customer gets assist (no discount); 101: never"
    )
    loyalty_full_revenue: float = Field(500.0, gt=0, description="revenue that earns the full monetary part of the loyalty score")
    attribution_window_ms: int = Field(
        7 * DAY_MS, gt=0, description="an order this long after an abandonment trigger, or less, recovers it"
    )

    # --- friction (docs/detection.md) -------------------------------------
    friction_rage_clicks: int = Field(
        3, ge=2, le=16, description="clicks on one selector that make a rage click (PostHog's default: 3)"
    )
    friction_rage_window_ms: int = Field(1_000, gt=0, description="rage clicks fall within this span (PostHog: 1 s)")
    friction_rage_radius_px: float = Field(
        30.0, gt=0, description="rage clicks land within this distance (PostHog: 30 px)"
    )
    friction_rage_exclude_selectors: str = Field(
        DEFAULT_RAGE_EXCLUDE, description="';'-separated compound CSS selectors; a click on a matching element is never rage nor dead"
    )
    friction_error_click_ms: int = Field(
        1_000, gt=0, description="an Error Shown this soon after a click makes it an error click"
    )
    friction_slow_page_ms: int = Field(
        4_000, gt=0, description="a page whose load_time_ms is over this is slow (LCP 'poor')"
    )
    friction_u_turn_ms: int = Field(10_000, gt=0, description="back on the previous page within this is a u-turn")
    friction_loop_step_views: int = Field(
        3, ge=2, description="views of one checkout step in a session that make a loop"
    )
    friction_loop_coupon_denials: int = Field(2, ge=1, description="Coupon Denied in a session that make a loop")
    friction_weights: str = Field(
        DEFAULT_FRICTION_WEIGHTS, description="signal=points per occurrence; score capped at 100"
    )
    friction_assist_score: int = Field(
        50, ge=1, le=100, description="score at which a session in checkout gets an assist"
    )
    friction_assist_cap_ms: int = Field(10 * MINUTE_MS, ge=0, description="at most one assist per session per this")
    # --- support ----------------------------------------------------------
    support_risk_sentiment: float = Field(
        -0.4, ge=-1, le=0, description="a customer message at or below this sentiment on an open ticket: support_risk"
    )
    support_recent_order_ms: int = Field(
        30 * DAY_MS, ge=0, description="an NPS detractor this long after an order fires support_risk"
    )

    # --- privacy ----------------------------------------------------------
    pii_salt: str = Field(
        DEFAULT_PII_SALT, min_length=1,
        description="secret salt of every personal-data hash; the collector, the worker and `up` refuse to start with the default",
    )
    pii_keys: str = Field(
        DEFAULT_PII_KEYS,
        description="comma-separated key patterns whose values the collector hashes at any depth (see docs/privacy.md)",
    )

    # --- ClickHouse writes ------------------------------------------------
    sink_max_interval_ms: int = Field(
        1_000, gt=0, description="longest a worker waits to fill a batch before it processes and writes it"
    )
    # Most Kafka records one worker batch takes (a collector record holds one
    # request's events of one partition). Each batch costs one insert per table
    # and two changelog round trips: measured with `cxstream bench`, 250 made
    # live traffic at 2,000 events/s (2-3 events per record) wait 6.6 s (p50)
    # for its cart_abandoned triggers, 2,000 and 10,000 2.2 s; a backlog of
    # 48-event records then fills 100k-event batches (RSS, insert size).
    batch_max_records: int = Field(2_000, gt=0, description="most Kafka records one worker batch takes")

    @field_validator(
        "write_keys",
        "collector_allowed_origins",
        "friction_weights",
        "offer_discount_tiers",
        "experiment_holdouts",
        "experiment_by_kind",
        "pii_keys",
    )
    @classmethod
    def _check_parsed(cls, value: str, info: ValidationInfo) -> str:
        """These settings are kept as text (child processes get them as env vars) but must parse."""
        _PARSERS[info.field_name](value)
        return value

    @field_validator("topic_events", "topic_triggers", "topic_deadletter", "topic_delivery_deadletter", "topic_deliveries")
    @classmethod
    def _check_topic(cls, value: str) -> str:
        """A name Kafka accepts; an empty one would have the collector accept events no worker can read."""
        check_topic_name(value)
        return value

    @field_validator("topic_customers")
    @classmethod
    def _check_customers_topic(cls, value: str) -> str:
        if value:  # empty: derived from the events topic
            check_topic_name(value)
        return value

    @field_validator("collector_metrics_port")
    @classmethod
    def _check_metrics_ports(cls, value: int, info: ValidationInfo) -> int:
        """The metrics ports of the collector processes (this + i) must not include the collector's own port."""
        port, processes = info.data.get("collector_port"), info.data.get("collector_processes", 1)
        if value and port and value <= port < value + processes:
            shown = str(value) if processes == 1 else f"{value} to {value + processes - 1}"
            raise ValueError(f"the collector processes' metrics ports ({shown}) include CX_COLLECTOR_PORT {port}")
        return value

    @field_validator("data_dir", mode="before")
    @classmethod
    def _check_data_dir(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            raise ValueError("must name a directory (empty would be the working directory)")
        return value

    @field_validator("clickhouse_url")
    @classmethod
    def _check_clickhouse_url(cls, value: str) -> str:
        if value and not value.startswith(("chdb://", "clickhouse://", "clickhouses://")):
            raise ValueError("must start with chdb:// or clickhouse://")
        if value.startswith(("clickhouse://", "clickhouses://")) and not urlsplit(value).hostname:
            raise ValueError("names no server: clickhouse://user:password@host:9000/db")
        return value

    @field_validator("clickhouse_cluster")
    @classmethod
    def _check_clickhouse_cluster(cls, value: str, info: ValidationInfo) -> str:
        if not value:
            return value
        from sinks.cluster import check_cluster_name

        check_cluster_name(value)
        url = info.data.get("clickhouse_url", "")
        if not url.startswith(("clickhouse://", "clickhouses://")):
            raise ValueError("cluster mode needs a ClickHouse server: set CX_CLICKHOUSE_URL to clickhouse://...")
        return value

    @property
    def customers_topic(self) -> str:
        """``topic_customers``, or the name derived from the events topic (one pipeline, one pair of topics)."""
        if self.topic_customers:
            return self.topic_customers
        events = self.topic_events
        return (events[: -len(".events")] if events.endswith(".events") else events) + ".customers"

    @cached_property
    def write_key_map(self) -> dict[str, str]:
        return parse_write_keys(self.write_keys)

    @cached_property
    def allowed_origins(self) -> tuple[str, ...]:
        """The origins of ``collector_allowed_origins``; empty for ``*`` (any)."""
        return parse_origins(self.collector_allowed_origins)

    def with_run_salt(self) -> "Settings":
        """These settings, with a fresh random ``pii_salt`` if it is the default (the demo and the bench)."""
        if self.pii_salt != DEFAULT_PII_SALT:
            return self
        import secrets

        return self.model_copy(update={"pii_salt": secrets.token_hex(16)})

    def require_pii_salt(self) -> None:
        """Raise SettingsError unless ``CX_PII_SALT`` is set to something other than the shipped default."""
        if self.pii_salt == DEFAULT_PII_SALT:
            raise SettingsError(
                f"CX_PII_SALT: set a secret salt (the default {DEFAULT_PII_SALT!r} makes personal-data hashes reproducible by anyone)"
            )

    @property
    def embedded_kafka(self) -> bool:
        return not self.kafka_bootstrap

    @property
    def resolved_clickhouse_url(self) -> str:
        if self.clickhouse_url:
            return self.clickhouse_url
        return f"chdb://{(self.data_dir / 'clickhouse').resolve()}"

    def kafka_client_config(self) -> dict[str, str]:
        """librdkafka options for the configured security settings (no bootstrap)."""
        conf: dict[str, str] = {"security.protocol": self.kafka_security_protocol}
        if self.kafka_security_protocol.startswith("SASL"):
            conf["sasl.mechanism"] = self.kafka_sasl_mechanism
            conf["sasl.username"] = self.kafka_sasl_username
            conf["sasl.password"] = self.kafka_sasl_password
        if self.kafka_ssl_cafile:
            conf["ssl.ca.location"] = self.kafka_ssl_cafile
        return conf

    def to_env(self) -> dict[str, str]:
        """These settings as ``CX_*`` variables, for child processes."""
        env = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            env[f"CX_{name.upper()}"] = str(value)
        return env

    @classmethod
    def load(cls, **overrides: object) -> "Settings":
        """Build settings from the environment; raise SettingsError naming the variable."""
        if "_env_file" not in overrides:
            _check_env_file(Path(".env"))
        try:
            return cls(**overrides)
        except UnicodeDecodeError as exc:  # a .env file in the working directory that is not text
            raise SettingsError(f"invalid configuration: .env in {Path.cwd()} is not UTF-8 text ({exc.reason})") from None
        except ValidationError as exc:
            lines = []
            for err in exc.errors():
                field = str(err["loc"][0]) if err["loc"] else "?"
                lines.append(f"CX_{field.upper()}: {err['msg']}")
            raise SettingsError("invalid configuration:\n  " + "\n  ".join(lines)) from None
