"""The one way benchmarks time two (or more) ways of doing the same work.

Each repeat runs every side once, in an order that alternates between repeats, so that a
change of load on a shared machine (another process, a thermal step) hits every side alike;
the first ``warmup`` repeats are dropped and the median of the rest is reported. The ratio is
then printed with both sides' times, never alone.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable


@dataclass
class Timing:
    """The kept repeat times of one side (seconds)."""

    name: str
    seconds: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def alternate(steps: dict[str, list[Callable[[], object]]], *, warmup: int = 0, repeats: int = 3,
              before: Callable[[str], None] | None = None, after: Callable[[str, bool], None] | None = None,
              ) -> list[Timing]:
    """Time every side's steps back to back, the order of the sides alternating.

    ``steps[name]`` is a list of callables of the same work items for every side (one item:
    a list of one); a repeat's time for a side is the sum over its items. ``before(name)`` and
    ``after(name, kept)`` run around each timed call (e.g. a CUDA synchronise, a peak-memory
    reset and read); ``kept`` says whether the repeat counts (past the warm-up).
    """
    names = list(steps)
    n_items = {len(items) for items in steps.values()}
    if len(n_items) != 1:
        raise ValueError(f"every side needs the same number of work items, got {sorted(n_items)}")
    (n,) = n_items
    results = {name: Timing(name) for name in names}
    for repeat in range(warmup + repeats):
        kept = repeat >= warmup
        totals = dict.fromkeys(names, 0.0)
        for i in range(n):
            for name in names if (repeat + i) % 2 == 0 else names[::-1]:
                if before is not None:
                    before(name)
                start = time.perf_counter()
                steps[name][i]()
                if after is not None:
                    after(name, kept)
                totals[name] += time.perf_counter() - start
        if kept:
            for name in names:
                results[name].seconds.append(totals[name])
    return [results[name] for name in names]


def time_once(fn: Callable[[], object]) -> float:
    """Wall time of one call (for work too long to repeat, e.g. a whole simulation)."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def ratio_line(what: str, slow: tuple[str, float], fast: tuple[str, float], unit: str = "s") -> str:
    """``what: 2.41x (slow-name 1.203 s / fast-name 0.499 s)``: the ratio beside both measurements."""
    (slow_name, slow_v), (fast_name, fast_v) = slow, fast
    ratio = slow_v / fast_v if fast_v else float("inf")
    return f"{what}: {ratio:.2f}x ({slow_name} {slow_v:.3f} {unit} / {fast_name} {fast_v:.3f} {unit})"


def medians(timings: Iterable[Timing]) -> dict[str, float]:
    return {t.name: t.median for t in timings}
