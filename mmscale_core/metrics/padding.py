"""The padded representation: a long frame of scenarios -> (lists x n_max) arrays.

Every list metric is computed on padded 2-D arrays so that numpy vectorizes
over all lists at once (a Python loop per list is far slower, see
``mmscale bench metrics``). Padding cells hold NaN and ``mask`` is False there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mmscale_core.errors import MmscaleError

ArrayLike = np.typing.ArrayLike


@dataclass(frozen=True)
class PaddedLists:
    """Lists of one frame, padded: ``values[col]`` is (n_lists, n_max), NaN where ``~mask``."""

    list_ids: np.ndarray  # (L,) the list key of each row, in order of first appearance
    values: dict[str, np.ndarray]
    mask: np.ndarray  # (L, n_max) bool
    sizes: np.ndarray  # (L,) items per list

    @property
    def n_lists(self) -> int:
        return int(self.mask.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.sizes.sum())


def pad_lists(frame: pd.DataFrame, list_col: str, columns: list[str],
              min_list_size: int = 1) -> PaddedLists:
    """Group ``frame`` by ``list_col`` into padded arrays of ``columns`` (float).

    Lists with fewer than ``min_list_size`` rows are dropped. Within a list, rows
    keep their order in ``frame``. Raises :class:`MmscaleError` naming the column
    and a list id when a value is missing or not finite, since a NaN score would
    silently change every ranking metric.
    """
    missing = [c for c in [list_col, *columns] if c not in frame.columns]
    if missing:
        raise MmscaleError(f"metrics: frame has no column(s) {missing}; columns are {list(frame.columns)}")
    codes, uniques = pd.factorize(frame[list_col], sort=False)
    if (codes < 0).any():
        raise MmscaleError(f"metrics: column {list_col!r} has missing list ids")
    raw = {}
    for col in columns:
        try:
            vals = frame[col].to_numpy(dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise MmscaleError(f"metrics: column {col!r} is not numeric ({err})") from None
        bad = ~np.isfinite(vals)
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise MmscaleError(
                f"metrics: column {col!r} has {int(bad.sum())} missing/non-finite value(s), "
                f"first in list {list_col}={uniques[codes[first]]!r}")
        raw[col] = vals
    n_all = len(uniques)
    sizes_all = np.bincount(codes, minlength=n_all)
    keep_list = sizes_all >= max(int(min_list_size), 1)
    new_index = np.cumsum(keep_list) - 1  # old list code -> new row
    rows_kept = keep_list[codes]
    codes_kept = new_index[codes[rows_kept]]
    sizes = sizes_all[keep_list]
    n_lists = int(keep_list.sum())
    n_max = int(sizes.max()) if n_lists else 0
    order = np.argsort(codes_kept, kind="stable")
    sorted_codes = codes_kept[order]
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]) if n_lists else np.zeros(0, int)
    position = np.arange(len(sorted_codes)) - starts[sorted_codes]
    mask = np.zeros((n_lists, n_max), dtype=bool)
    mask[sorted_codes, position] = True
    values = {}
    for col, vals in raw.items():
        arr = np.full((n_lists, n_max), np.nan)
        arr[sorted_codes, position] = vals[rows_kept][order]
        values[col] = arr
    return PaddedLists(np.asarray(uniques)[keep_list], values, mask, sizes)


def as_padded(y_true: ArrayLike, y_score: ArrayLike, mask: ArrayLike | None):
    """Validate (lists, n_max) arrays; the mask defaults to ~isnan(y_true)."""
    y_true = np.asarray(y_true, dtype=np.float64)
    y_score = np.asarray(y_score, dtype=np.float64)
    if y_true.shape != y_score.shape or y_true.ndim != 2:
        raise ValueError(f"padded metrics need two (lists, n_max) arrays of one shape, "
                         f"got {y_true.shape} and {y_score.shape}")
    if mask is None:
        mask = ~np.isnan(y_true)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != y_true.shape:
        raise ValueError(f"mask shape {mask.shape} != {y_true.shape}")
    return y_true, y_score, mask


def as_single_row(y_true: ArrayLike, y_score: ArrayLike):
    """One list (or a flat set of scenarios) as a single padded row."""
    y_true = np.asarray(y_true, dtype=np.float64).ravel()
    y_score = np.asarray(y_score, dtype=np.float64).ravel()
    if y_true.shape != y_score.shape:
        raise ValueError(f"y_true has {y_true.size} items, y_score {y_score.size}")
    return y_true[None, :], y_score[None, :]
