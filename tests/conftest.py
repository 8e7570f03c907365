"""Shared fixtures. Component fixtures live in tests/fixtures/ as plugins."""

from __future__ import annotations

import itertools
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Iterator

import pytest

from pipeline.settings import Settings

pytest_plugins = ["tests.fixtures.report", "tests.fixtures.kafka", "tests.fixtures.clickhouse"]

_seq = itertools.count()


@pytest.fixture(autouse=True)
def _logging_as_found() -> Iterator[None]:
    """Every test leaves Python's logging as it found it.

    A CLI command run in-process (``CliRunner``) sets up this process's logs
    (``pipeline.logs.configure``): a root handler on the runner's stderr,
    which is closed when the command returns, the root level, and in JSON
    mode ``sys.excepthook`` and the capture of warnings. Kept, a later test's
    thread that logs (a collector answering a client that hung up) hit the
    closed stream and printed "--- Logging error ---" into the run.
    """
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    hook, showwarning = sys.excepthook, warnings.showwarning
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    sys.excepthook = hook
    if warnings.showwarning is not showwarning:
        logging.captureWarnings(False)
        warnings.showwarning = showwarning


@pytest.fixture
def fresh_settings(tmp_path: Path) -> Settings:
    """Settings with topic names and a consumer group no other test uses."""
    return new_settings(tmp_path)


def new_settings(tmp_path: Path) -> Settings:
    """``fresh_settings`` for a fixture of wider scope (data under ``tmp_path``)."""
    n = f"{os.getpid()}-{next(_seq)}"
    return Settings(
        _env_file=None,
        data_dir=tmp_path / "data",
        topic_events=f"t{n}.events",
        topic_triggers=f"t{n}.triggers",
        topic_deadletter=f"t{n}.deadletter",
        topic_delivery_deadletter=f"t{n}.triggers.deadletter",
        topic_deliveries=f"t{n}.deliveries",
        delivery_group=f"cx-test-deliver-{n}",
        worker_group=f"cx-test-{n}",
        worker_session_timeout_s=6.0,
        kafka_partitions=2,
        write_keys="wk_shop_a=shop-a,wk_shop_b=shop-b",
        pii_salt="test-salt",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Long runs are opt-in: they are skipped, with the reason, unless CX_SLOW=1."""
    if os.environ.get("CX_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="long run: set CX_SLOW=1 to include it")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
