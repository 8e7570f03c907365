"""The performance targets, judged on one ``cxstream bench`` run's figures.

Each target names one of ``BenchResult.figures()`` and a limit. A run
judges every target it measured: *met* or *missed* (and by how much); a
target whose figure the run did not produce (no live run at that rate, no
one-worker run, the collector skipped) is *not measured*, neither met nor
missed. Exact counts are not a target here: a bench whose counts differ
from the ledger stops with ``BenchError`` and judges nothing.

The latency limit of ``cart_abandoned`` follows the allowed lateness the
run used (the deadline fires only once an event that much later in event
time has come), plus 300 ms.

The targets are stated for sections of a size (``--events 200000``,
``--live-seconds 30``, ``--collector-events 50000``): a rate measured on a
smaller section (``--quick``'s 4,000 events, 6 s live) says little, so such
a target is *too small to judge*, neither met nor missed.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Callable, Mapping

from pipeline.settings import Settings

__all__ = ["DEFAULT_ALLOWED_LATENESS_MS", "STATED_FOR", "Target", "Verdict", "judge", "targets"]

CART_ABANDONED_MARGIN_MS = 300
DEFAULT_ALLOWED_LATENESS_MS: int = Settings.model_fields["allowed_lateness_ms"].default
# The run the targets are stated for (``BenchOptions`` fields; ``cxstream bench --targets``): a section
# smaller than this is too small to judge.
STATED_FOR = {"events": 200_000, "workers": (1,), "live_rates": (2_000, 10_000), "live_seconds": 30.0,
              "collector_events": 50_000}  # fmt: skip
_OPTION_NAMES = {"events": "--events", "live_seconds": "--live-seconds", "collector_events": "--collector-events"}

_OPS: dict[str, Callable[[float, float], bool]] = {"<": operator.lt, "<=": operator.le, ">=": operator.ge}


@dataclass(frozen=True, slots=True)
class Target:
    name: str  # stable, for the JSON
    what: str  # what is measured, for the table
    figure: str  # the key in ``BenchResult.figures()``
    op: str  # "<", "<=" or ">=": the figure against the limit
    limit: float
    unit: str  # "ms", "us", "events/s" or "" (a ratio, shown as a percentage)
    size: str  # the BenchOptions field sizing its section; its least value is in STATED_FOR

    def show(self, value: float) -> str:
        if self.unit == "":
            return f"{value:.1%}"
        if self.unit == "us":
            return f"{value:,.1f} us"
        return f"{value:,.0f} {self.unit}"


@dataclass(frozen=True, slots=True)
class Verdict:
    target: Target
    value: float | None  # None: not measured in this run
    met: bool | None  # None: not measured, or too small to judge
    too_small: str = ""  # why the section was too small to judge, when it was

    def text(self) -> str:
        """``353 ms: missed by 103 ms``, ``176 ms: met``, ``7.9%: missed by 22.1 points``, ``not measured in this run``."""
        if self.value is None:
            return "not measured in this run"
        if self.too_small:
            return f"{self.target.show(self.value)}: too small to judge ({self.too_small})"
        shown = self.target.show(self.value)
        if self.met:
            return f"{shown}: met"
        gap = abs(self.value - self.target.limit)
        if self.target.unit == "":
            return f"{shown}: missed by {gap * 100:.1f} points"
        return f"{shown}: missed by {self.target.show(gap)}"

    def as_dict(self) -> dict:
        t = self.target
        return {"name": t.name, "figure": t.figure, "op": t.op, "limit": t.limit, "value": self.value, "met": self.met,
                "too_small": self.too_small}  # fmt: skip


def targets(allowed_lateness_ms: int) -> tuple[Target, ...]:
    """The targets, in the order the bench prints them."""
    abandoned_limit = allowed_lateness_ms + CART_ABANDONED_MARGIN_MS
    return (
        Target("checkout_friction_2000_p99", "checkout_friction at 2,000/s, p99 < 250 ms",
               "live_2000_checkout_friction_p99_ms", "<", 250, "ms", "live_seconds"),
        Target("cart_abandoned_2000_p99",
               f"cart_abandoned at 2,000/s, p99 < allowed lateness + {CART_ABANDONED_MARGIN_MS} ms ({abandoned_limit:,} ms)",
               "live_2000_cart_abandoned_p99_ms", "<", abandoned_limit, "ms", "live_seconds"),
        Target("checkout_friction_10000_p99", "checkout_friction at 10,000/s, p99 < 1 s",
               "live_10000_checkout_friction_p99_ms", "<", 1000, "ms", "live_seconds"),
        Target("one_worker_ratio_to_raw", "one worker, >= 30% of the raw consumer",
               "workers_1_ratio_to_raw", ">=", 0.30, "", "events"),
        Target("worker_cpu_per_event", "one worker's CPU from the first record on, <= 20 us per event",
               "workers_1_cpu_us_per_event_processing", "<=", 20, "us", "events"),
        Target("collector_per_process", "collector, >= 60,000 events/s per process",
               "collector_events_per_s_per_process", ">=", 60_000, "events/s", "collector_events"),
    )  # fmt: skip


def _too_small(target: Target, options: Mapping | None) -> str:
    if options is None:
        return ""
    option, least = target.size, STATED_FOR[target.size]
    given = options.get(option)
    if not isinstance(given, (int, float)) or given >= least:
        return ""
    return f"{_OPTION_NAMES[option]} {given:,g}; the target is stated for {least:,g} or more"


def judge(figures: Mapping[str, float], allowed_lateness_ms: int, options: Mapping | None = None) -> list[Verdict]:
    """Every target against ``figures``; a figure absent from them is not measured.

    ``options``: the run's ``BenchOptions`` as a dict; a target whose section
    was smaller than it is stated for is too small to judge (None: no check).

    So is a rate, ratio or CPU time of 0: the bench writes 0 where it could
    not measure one (a run that took no record, a CPU it could not read),
    and no measured run has it. A latency of 0 ms is a latency.
    """
    verdicts = []
    for target in targets(allowed_lateness_ms):
        value = figures.get(target.figure)
        if value is None or (value == 0 and target.unit != "ms"):
            verdicts.append(Verdict(target, None, None))
        else:
            too_small = _too_small(target, options)
            met = None if too_small else _OPS[target.op](value, target.limit)
            verdicts.append(Verdict(target, value, met, too_small))
    return verdicts
