"""The vocabulary every layout shares: field names, allowed values, the derived columns' rules.

Both release layouts (ours, :mod:`mmscale_core.data.ours`; the authors',
:mod:`mmscale_core.data.upstream`) are read into the same frame, whose columns
are the fields below (in our names) plus the derived columns.
"""

from __future__ import annotations

import hashlib
from typing import Iterable

IMAGE_DIR = "images"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")

MODALITIES = ("text", "image", "both")
SPLITS = ("train", "val", "test")
IMAGE_SOURCES = ("sd15", "dalle3", "vg", "synthetic", "photo")
QC_FLAGS = ("ok", "minor", "lighting", "severe")
# sec 3.2 / Fig. 4: a scenario of the source pool, or one an annotator added for the same image
# after agreeing with the model (MORALE's discrepancy-guided expansion)
ORIGINS = ("source", "expansion")
NORMBANK_LABELS = (-1, 0, 1)
RATING_RANGE = (1, 5)

# In file order. ``annotators`` and ``normbank_label`` are optional (absent or null): the
# authors' release has neither. ``rating_std``, ``source_slots`` and ``dedupe_group_size``
# are the authors' fields, kept so that a release converted to our layout converts back.
# ``origin`` (source / expansion) is set on all records or none, in both layouts.
FIELDS = (
    "image_id", "scenario_id", "setting", "scenario", "normbank_label", "ratings", "modalities", "annotators",
    "split", "image_source", "qc", "rating_std", "source_slots", "dedupe_group_size", "origin",
)
REQUIRED_FIELDS = ("image_id", "scenario_id", "setting", "scenario", "ratings", "modalities")
OPTIONAL_FIELDS = tuple(f for f in FIELDS if f not in REQUIRED_FIELDS)
# Derived from the ratings unless a record stores them (the authors' release does: its
# near-duplicate merging means a stored mean need not be the mean of the stored ratings).
GIVEN_FIELDS = ("score", "modality")
DERIVED_COLUMNS = ("score", "modality", "n_ratings", "list_size")

DEFAULT_SPLIT_SEED = 0
DEFAULT_TEST_FRACTION = 0.1
MEAN_TOLERANCE = 1e-6


def majority_modality(labels: list[str]) -> str:
    """The most frequent label; a tie between labels counts as 'both' (the paper's convention)."""
    if len(labels) == 3:  # the paper's case, without building a dict
        a, b, c = labels
        return a if a == b or a == c else (b if b == c else "both")
    counts: dict[str, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    top = max(counts.values())
    winners = [label for label, c in counts.items() if c == top]
    return winners[0] if len(winners) == 1 else "both"


def split_by_image(image_ids: Iterable[str], seed: int = DEFAULT_SPLIT_SEED,
                   test_fraction: float = DEFAULT_TEST_FRACTION, val_fraction: float = 0.0) -> dict[str, str]:
    """Deterministic image-disjoint split: images sorted by a seeded hash, the first
    ``round(test_fraction * n)`` go to test, the next ``round(val_fraction * n)`` to val.
    Independent of record order and of the process (no Python ``hash``), so the same ids
    and seed always give the same split."""
    unique = sorted(set(image_ids))
    keyed = sorted(unique, key=lambda i: hashlib.sha256(f"{seed}\x00{i}".encode()).hexdigest())
    n_test = int(round(test_fraction * len(unique)))
    n_val = int(round(val_fraction * len(unique)))
    test, val = set(keyed[:n_test]), set(keyed[n_test:n_test + n_val])
    return {i: ("test" if i in test else "val" if i in val else "train") for i in unique}


def splits_phrase(splits) -> str:
    """'both train and test' / 'train and val and test', in the order of :data:`SPLITS`."""
    ordered = sorted(map(str, splits), key=lambda s: (SPLITS.index(s) if s in SPLITS else len(SPLITS), s))
    return ("both " if len(ordered) == 2 else "") + " and ".join(ordered)
