"""Avro schemas: the source of truth for every record cxstream writes to Kafka."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import fastavro

__all__ = ["SCHEMA_DIR", "load_schema", "parsed_schemas"]

SCHEMA_DIR = Path(__file__).parent


@cache
def parsed_schemas() -> dict[str, dict]:
    """All schemas parsed together (EventBatch refers to Event), by short name."""
    named: dict = {}
    out: dict[str, dict] = {}
    for name in ("event", "event_batch", "trigger", "deadletter", "delivery", "delivery_deadletter"):
        raw = json.loads((SCHEMA_DIR / f"{name}.avsc").read_text())
        out[name] = fastavro.parse_schema(raw, named_schemas=named)
    return out


def load_schema(name: str) -> dict:
    """Parsed schema ``name`` (event, event_batch, trigger, deadletter, delivery, delivery_deadletter)."""
    return parsed_schemas()[name]
