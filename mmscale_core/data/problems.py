"""What can be wrong with a release: errors that block loading, warnings that do not, and
the signal that an analysis needs a field this release does not carry.

Errors are collected in full before failing, so a user fixes a bad export in one pass.
Warnings (a stored mean that is not the mean of the stored ratings, ...) are deviations a
real release may legitimately have; they are counted and shown with examples.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass

import pandas as pd

from mmscale_core.errors import MmscaleError


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a dataset, located precisely enough to fix it."""

    file: str
    message: str
    record: str | None = None  # 'scenario_id=...' or 'line N'
    field: str | None = None

    def __str__(self) -> str:
        where = self.file
        if self.record:
            where += f" [{self.record}]"
        if self.field:
            where += f" field '{self.field}'"
        return f"{where}: {self.message}"


@dataclass(frozen=True)
class DataWarning:
    """A deviation that does not block loading. ``kind`` is shared by all occurrences of the
    same deviation (it is what gets counted); ``detail`` is this occurrence's values."""

    file: str
    field: str
    kind: str
    record: str
    detail: str


class DatasetError(MmscaleError):
    """A dataset failed validation; ``problems`` lists every issue found."""

    exit_code = 1

    def __init__(self, root: str | os.PathLike, problems: list[Problem]):
        self.root = str(root)
        self.problems = list(problems)
        n = len(self.problems)
        shown = "\n".join(f"  - {p}" for p in self.problems[:50])
        more = f"\n  ... and {n - 50} more" if n > 50 else ""
        super().__init__(f"{n} problem{'s' * (n != 1)} in dataset {self.root}:\n{shown}{more}")


class NotInRelease(MmscaleError):
    """An analysis needs a field that no scenario of this release carries (e.g. the authors'
    release has no ``normbank_label`` and no ``annotators``). Pages print the message and move on."""

    def __init__(self, what: str, field: str):
        self.what, self.field = what, field
        super().__init__(f"{what}: not available in this release (no scenario has '{field}')")


def has_field(frame: pd.DataFrame, field: str) -> bool:
    """Whether at least one scenario carries ``field`` (absent column or all null: no)."""
    return field in frame.columns and bool(frame[field].notna().any())


def require_fields(frame: pd.DataFrame, what: str, *fields: str) -> None:
    """Raise :class:`NotInRelease` for the first of ``fields`` no scenario carries."""
    for name in fields:
        if not has_field(frame, name):
            raise NotInRelease(what, name)


def format_warnings(warnings: list[DataWarning], examples: int = 3) -> list[str]:
    """One line per kind of warning: where, how many, and a few examples."""
    groups: dict[tuple[str, str, str], list[DataWarning]] = defaultdict(list)
    for w in warnings:
        groups[(w.file, w.field, w.kind)].append(w)
    lines = []
    for (file, field, kind), items in groups.items():
        shown = "; ".join(f"{w.record} ({w.detail})" for w in items[:examples])
        more = f"; ... {len(items) - examples} more" if len(items) > examples else ""
        lines.append(f"{file} field '{field}': {len(items)} scenario{'s' * (len(items) != 1)}: {kind}, "
                     f"e.g. {shown}{more}")
    return lines
