"""Tables as a reader of the report sees them, not as pandas prints them.

A notebook that ends a cell with a DataFrame shows its index (0..13), six-decimal
floats and ``NaN``; the report pages must not. :func:`display_table` lays a frame out
the way the headline table is shown: no index, an estimate and its interval in one
cell ("value [ci_low, ci_high] (chance c)"), three significant digits, and "—" where a
value does not exist (a paper row without a CI, a metric undefined on a split).
It returns an object that Jupyter renders as a Markdown table (the same renderer the
headline table goes through) and that prints as that Markdown elsewhere.
"""

from __future__ import annotations

import math
import numbers

import pandas as pd

MISSING = "—"
#: Columns holding an estimate, each shown with its CI (``ci_low``/``ci_high``) and chance level.
ESTIMATE_COLUMNS = ("value", "diff")
COUNT_COLUMNS = ("n", "count", "seed", "epochs", "min_list_size", "max_list_size")


def format_number(value, digits: int = 3) -> str:
    """``value`` with ``digits`` significant digits (integers as they are); "—" for None/NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if isinstance(value, bool) or not isinstance(value, numbers.Number):
        return MISSING if pd.isna(value) else str(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    value = float(value)
    if not math.isfinite(value):
        return MISSING if math.isnan(value) else str(value)
    if abs(value) >= 10 ** digits:
        return f"{value:.0f}"
    text = f"{value:#.{digits}g}"
    return text[:-1] if text.endswith(".") else text


def estimate_cell(value, ci_low=None, ci_high=None, chance=None, digits: int = 3) -> str:
    """'value [ci_low, ci_high] (chance c)', leaving out the parts that do not exist."""
    if value is None or pd.isna(value):
        return MISSING
    text = format_number(value, digits)
    if ci_low is not None and ci_high is not None and not (pd.isna(ci_low) or pd.isna(ci_high)):
        text += f" [{format_number(ci_low, digits)}, {format_number(ci_high, digits)}]"
    if chance is not None and not pd.isna(chance):
        text += f" (chance {format_number(chance, digits)})"
    return text


class Table:
    """A display-ready table: Markdown for Jupyter/Quarto (``_repr_markdown_``) and for print."""

    def __init__(self, frame: pd.DataFrame, caption: str | None = None):
        self.frame = frame
        self.caption = caption

    def to_markdown(self) -> str:
        body = self.frame.to_markdown(index=False, disable_numparse=True)
        return f"{self.caption}\n\n{body}" if self.caption else body

    def _repr_markdown_(self) -> str:
        return self.to_markdown()

    def __repr__(self) -> str:
        return self.to_markdown()


def table_cells(frame: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """The frame with every cell a string: index made into columns, estimates merged with their CI
    and chance level (column "value [95% CI] (chance)"), numbers to ``digits`` significant digits."""
    frame = frame.copy()
    if not isinstance(frame.index, pd.RangeIndex) or frame.index.name is not None:
        frame = frame.reset_index()
    frame.columns = [str(c) for c in frame.columns]
    frame.columns.name = None
    estimate = next((c for c in ESTIMATE_COLUMNS if c in frame.columns), None)
    if estimate is not None and {"ci_low", "ci_high"} <= set(frame.columns):
        has_chance = "chance" in frame.columns
        cells = [estimate_cell(row[estimate], row["ci_low"], row["ci_high"],
                               row["chance"] if has_chance else None, digits) for _, row in frame.iterrows()]
        label = f"{estimate} [95% CI]" + (" (chance)" if has_chance else "")
        position = frame.columns.get_loc(estimate)
        frame = frame.drop(columns=[estimate, "ci_low", "ci_high"] + (["chance"] if has_chance else []))
        frame.insert(min(position, len(frame.columns)), label, cells)
    return frame.apply(lambda column: column.map(
        (lambda v: format_number(v if pd.isna(v) else int(v), digits)) if _is_count(column)
        else (lambda v: format_number(v, digits))))


def _is_count(column: pd.Series) -> bool:
    """A count column (``n_lists``, ``seed``...) that NaNs turned into floats: show 14, not 14.0."""
    name = str(column.name)
    if not (name in COUNT_COLUMNS or name.startswith("n_")) or not pd.api.types.is_float_dtype(column):
        return False
    finite = column.dropna()
    return bool((finite == finite.round()).all())


def display_table(frame: pd.DataFrame, caption: str | None = None, digits: int = 3) -> Table:
    """A frame as the report shows tables (see the module docstring); end a notebook cell with it."""
    return Table(table_cells(frame, digits), caption)


def quiet_progress_bars() -> None:
    """No library progress bars in an executed notebook: a page is read after the run, and
    tqdm's bars (transformers' "Loading weights", the hub's downloads) land on it as stderr.
    The CLI keeps its bars; mmscale's own loops take ``progress=False`` instead."""
    import os

    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        return
    hf_logging.disable_progress_bar()
