"""Settings: one pydantic-settings object, read from ``CX_*`` variables and ``.env``.

Read once at start-up (``Settings.load()``); everything else receives the
object. A wrong value stops start-up with a message naming the variable.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "SettingsError", "parse_write_keys"]

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS


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


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CX_", env_file=".env", extra="ignore", frozen=True
    )

    # --- components -------------------------------------------------------
    kafka_bootstrap: str = Field(
        "", description="Kafka bootstrap servers; empty starts the embedded broker"
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    kafka_sasl_username: str = ""
    kafka_sasl_password: str = ""
    kafka_ssl_cafile: str = ""
    kafka_partitions: int = Field(4, ge=1, le=1024, description="partitions of topics cxstream creates")
    kafka_replication: int = Field(1, ge=1, le=16)

    clickhouse_url: str = Field(
        "", description="chdb:///path or clickhouse://user:password@host:9000/db; empty: chdb in CX_DATA_DIR"
    )
    data_dir: Path = Path(".cxdata")

    collector_host: str = "127.0.0.1"
    collector_port: int = Field(8088, ge=0, le=65535)
    collector_max_inflight_bytes: int = Field(
        64 * 1024 * 1024, gt=0, description="request bytes the collector holds at once; past it: 503 + Retry-After"
    )
    write_keys: str = Field("demo_write_key=demo-shop", description="key=tenant,key2=tenant2")
    worker_web_port: int = Field(6066, ge=0, le=65535)
    worker_group: str = Field("cxstream", min_length=1, description="Faust app id = Kafka consumer group")
    worker_session_timeout_s: float = Field(10.0, gt=0)

    # --- topics -----------------------------------------------------------
    topic_events: str = "cx.events"
    topic_triggers: str = "cx.triggers"
    topic_deadletter: str = "cx.deadletter"
    trigger_format: Literal["json", "avro"] = "json"

    # --- event-time rules -------------------------------------------------
    abandon_after_ms: int = Field(30 * MINUTE_MS, gt=0)
    session_gap_ms: int = Field(30 * MINUTE_MS, gt=0)
    allowed_lateness_ms: int = Field(1_000, ge=0)
    idle_partition_ms: int = Field(
        1_000, gt=0, description="wall time a caught-up partition may stay silent before its watermark follows the clock"
    )
    max_event_age_ms: int = Field(7 * DAY_MS, gt=0)
    max_event_future_ms: int = Field(HOUR_MS, ge=0)

    # --- offers -----------------------------------------------------------
    experiment: str = "default"
    holdout_pct: float = Field(10.0, ge=0, le=100)
    offer_cap_ms: int = Field(DAY_MS, ge=0)
    offer_valid_ms: int = Field(2 * DAY_MS, gt=0)
    offer_discount_pct: int = Field(10, ge=0, le=100)
    offer_channel: Literal["email", "sms", "onsite"] = "email"

    # --- support ----------------------------------------------------------
    support_risk_sentiment: float = Field(
        -0.4, ge=-1, le=0, description="a customer message at or below this sentiment on an open ticket: support_risk"
    )
    support_recent_order_ms: int = Field(
        30 * DAY_MS, ge=0, description="an NPS detractor this long after an order fires support_risk"
    )

    # --- privacy ----------------------------------------------------------
    pii_salt: str = Field("change-me", min_length=1, description="salt for email and ip hashes")

    # --- ClickHouse writes ------------------------------------------------
    sink_max_rows: int = Field(10_000, gt=0)
    sink_max_interval_ms: int = Field(1_000, gt=0)
    batch_max_events: int = Field(10_000, gt=0, description="most Kafka records one worker batch takes")

    @field_validator("write_keys")
    @classmethod
    def _check_write_keys(cls, value: str) -> str:
        parse_write_keys(value)
        return value

    @field_validator("clickhouse_url")
    @classmethod
    def _check_clickhouse_url(cls, value: str) -> str:
        if value and not value.startswith(("chdb://", "clickhouse://", "clickhouses://")):
            raise ValueError("must start with chdb:// or clickhouse://")
        return value

    @cached_property
    def write_key_map(self) -> dict[str, str]:
        return parse_write_keys(self.write_keys)

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
        try:
            return cls(**overrides)
        except ValidationError as exc:
            lines = []
            for err in exc.errors():
                field = str(err["loc"][0]) if err["loc"] else "?"
                lines.append(f"CX_{field.upper()}: {err['msg']}")
            raise SettingsError("invalid configuration:\n  " + "\n  ".join(lines)) from None
