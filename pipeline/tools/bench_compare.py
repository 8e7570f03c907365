"""``cxstream bench-compare OLD NEW``: two ``cxstream bench --json`` files side by side.

Every figure of either run (``figures``, stable flat names) with its value
in each and the change; then each performance target as judged in each
run (``pipeline.tools.bench_targets``), re-judged from the figures so that a
file written before the bench judged targets compares too. A figure only
one run has (a section the other skipped) shows ``-`` for the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import orjson

from pipeline.tools.bench_targets import DEFAULT_ALLOWED_LATENESS_MS, Verdict, judge

__all__ = ["CompareError", "FigureChange", "compare_figures", "compare_targets", "load_run"]

class CompareError(ValueError):
    """A file that is not a ``cxstream bench --json`` result."""


@dataclass(frozen=True, slots=True)
class FigureChange:
    name: str
    old: float | None
    new: float | None

    @property
    def change(self) -> float | None:
        """(new - old) / old; None when either is missing or old is 0."""
        if self.old is None or self.new is None or self.old == 0:
            return None
        return (self.new - self.old) / self.old

    def cells(self) -> tuple[str, str, str, str]:
        change = self.change
        return (
            self.name,
            _number(self.old),
            _number(self.new),
            "" if change is None else f"{change:+.1%}",
        )


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, int) or float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.4g}" if abs(value) < 1 else f"{value:,.2f}".rstrip("0").rstrip(".")


# Far above any run's JSON (a run with every section is under 100 KB).
MAX_RUN_BYTES = 16_000_000


def load_run(path: Path) -> dict:
    """The parsed file; ``CompareError`` naming the file when it cannot be one bench run's JSON."""
    try:
        with path.open("rb") as file:  # a bench run is some kilobytes; /dev/zero never ends
            raw = file.read(MAX_RUN_BYTES + 1)
        if len(raw) > MAX_RUN_BYTES:
            raise CompareError(f"{path}: over {MAX_RUN_BYTES // 1_000_000} MB, not a `cxstream bench --json` file")
        data = orjson.loads(raw)
    except OSError as exc:
        raise CompareError(f"{path}: {exc.strerror or exc}") from None
    except orjson.JSONDecodeError as exc:
        raise CompareError(f"{path}: not JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("figures"), dict):
        raise CompareError(f"{path}: not a `cxstream bench --json` file (no `figures` object)")
    bad = [k for k, v in data["figures"].items() if isinstance(v, bool) or not isinstance(v, (int, float))]
    if bad:
        raise CompareError(f"{path}: figure {bad[0]!r} is not a number")
    return data


def compare_figures(old: dict, new: dict) -> list[FigureChange]:
    """Every figure of either run, in the newer file's order, then those only the older one has."""
    a, b = old["figures"], new["figures"]
    names = list(b) + [name for name in a if name not in b]
    return [FigureChange(name, a.get(name), b.get(name)) for name in names]


def _verdicts(run: dict) -> list[Verdict]:
    # A file from before the bench recorded its allowed lateness ran with the default.
    lateness = run.get("allowed_lateness_ms", DEFAULT_ALLOWED_LATENESS_MS)
    options = run.get("options")
    return judge(
        run["figures"],
        lateness if isinstance(lateness, int) else DEFAULT_ALLOWED_LATENESS_MS,
        options if isinstance(options, dict) else None,
    )


def compare_targets(old: dict, new: dict) -> list[tuple[Verdict, Verdict]]:
    """Each target's verdict in the older run and in the newer one, each re-judged from that run's figures."""
    return list(zip(_verdicts(old), _verdicts(new)))
