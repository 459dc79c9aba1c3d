"""Which layout a directory is in, and ``load_dataset`` for either."""

from __future__ import annotations

import os
from pathlib import Path

from mmscale_core.data.dataset import Dataset
from mmscale_core.data.ours import SCENARIO_FILES, load_ours
from mmscale_core.data.problems import DatasetError, Problem
from mmscale_core.data.schema import DEFAULT_SPLIT_SEED, DEFAULT_TEST_FRACTION
from mmscale_core.data.upstream import FLAT_FILE, is_upstream, load_upstream

LAYOUTS = ("ours", "upstream")


def detect_layout(root: str | os.PathLike) -> str:
    """'upstream' for a directory holding the authors' flat file, else 'ours'."""
    return "upstream" if is_upstream(root) else "ours"


def load_dataset(root: str | os.PathLike, *, check_images: bool = True, decode_images: bool = True,
                 split_seed: int = DEFAULT_SPLIT_SEED,
                 test_fraction: float = DEFAULT_TEST_FRACTION) -> Dataset:
    """Read and validate a dataset directory in either layout; raise :class:`DatasetError`
    listing every problem.

    ``check_images`` checks that each referenced image file exists and (with
    ``decode_images``) decodes; turn it off for fast metadata-only loads. Deviations that
    do not block loading are in ``Dataset.warnings``.
    """
    root = Path(root)
    kwargs = dict(check_images=check_images, decode_images=decode_images, split_seed=split_seed,
                  test_fraction=test_fraction)
    if is_upstream(root):
        ours = [name for name in SCENARIO_FILES if (root / name).is_file()]
        if ours:
            raise DatasetError(root, [Problem(str(root), f"holds both {FLAT_FILE} (the authors' layout) and "
                                                         f"{ours[0]} (ours); keep one layout per directory")])
        return load_upstream(root, **kwargs)
    return load_ours(root, **kwargs)
