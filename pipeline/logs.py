"""Log lines of every cxstream process: text, or one JSON object a line (``CX_LOG_FORMAT=json``).

A JSON line has ``ts`` (UTC, ISO 8601 with milliseconds), ``level``,
``component`` (collector, worker, up, ...), ``logger``, ``message``, and
where the code that logs knows them ``tenant``, ``topic``, ``partition`` and
``offset`` (passed as ``extra=``; see ``context``). An exception adds
``exc``, its traceback as text. Lines are written to stderr; ``cxstream up``
sends each child's stderr to ``<data dir>/logs/<name>.log``.

The worker's logging is set up by Faust (mode), which replaces the root
handlers: ``dict_config`` gives it the same JSON formatter.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
from typing import Any

import orjson

__all__ = ["CONTEXT_FIELDS", "JsonFormatter", "configure", "context", "dict_config"]

# Record attributes copied into a JSON line when a log call sets them (``extra=``).
CONTEXT_FIELDS = ("tenant", "topic", "partition", "offset")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def context(
    *, tenant: str | None = None, topic: str | None = None, partition: int | None = None, offset: int | None = None
) -> dict[str, Any]:
    """``extra=`` for a log call: the fields given, for the JSON line (text lines do not show them)."""
    values = {"tenant": tenant, "topic": topic, "partition": partition, "offset": offset}
    return {k: v for k, v in values.items() if v is not None}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def __init__(self, component: str = "cxstream") -> None:
        super().__init__()
        self.component = component

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "component": self.component,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc"] = record.exc_text
        return orjson.dumps(line, default=str).decode()


def _formatter(fmt: str, component: str) -> logging.Formatter:
    return JsonFormatter(component) if fmt == "json" else logging.Formatter(TEXT_FORMAT)


def configure(fmt: str, component: str, level: int = logging.INFO) -> None:
    """Send the root logger's records to stderr in ``fmt`` (``text`` or ``json``), replacing its handlers.

    In JSON mode Python's warnings and an uncaught exception (which would
    print a traceback of many lines) become log records too.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_formatter(fmt, component))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    if fmt == "json":
        logging.captureWarnings(True)
        sys.excepthook = _log_uncaught


def _log_uncaught(exc_type, exc, tb) -> None:  # noqa: ANN001 - sys.excepthook's signature
    if issubclass(exc_type, KeyboardInterrupt):
        sys.__excepthook__(exc_type, exc, tb)
        return
    logging.getLogger("cxstream").critical("uncaught %s: %s", exc_type.__name__, exc, exc_info=(exc_type, exc, tb))


def dict_config(component: str, level: str = "WARNING") -> dict:
    """A ``logging.config.dictConfig`` of JSON lines to stderr, for Faust's ``Worker(logging_config=...)``."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter, "component": component}},
        "handlers": {"json": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr", "formatter": "json"}},
        "root": {"level": level, "handlers": ["json"]},
    }
