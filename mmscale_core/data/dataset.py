"""A validated dataset, whatever layout it came from: one frame, its images, its warnings.

Frame columns: the fields of :mod:`mmscale_core.data.schema` (our names; null where a
release lacks one) plus the derived ``score`` (mean rating, unless stored), ``modality``
(majority label, ties -> "both", unless stored), ``n_ratings``, ``list_size`` (scenarios
sharing the image) and, when no record carries ``split``, a deterministic seeded 9:1
split by image.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd

from mmscale_core.data.problems import DataWarning, NotInRelease, has_field
from mmscale_core.data.records import is_null
from mmscale_core.data.schema import FIELDS, GIVEN_FIELDS, MEAN_TOLERANCE, majority_modality, split_by_image
from mmscale_core.errors import MmscaleError


@dataclass
class Dataset:
    """A validated dataset: the scenarios frame (fields + derived columns) and its images.

    ``warnings`` lists deviations that did not block loading (see ``problems.DataWarning``);
    ``given`` names the derived columns read as stored rather than recomputed;
    ``source_files`` are the files (relative to ``root``) the records came from.
    """

    root: Path
    scenarios: pd.DataFrame
    images: dict[str, Path] = field(repr=False)
    source_file: str = "scenarios.parquet"
    layout: str = "ours"
    source_files: tuple[str, ...] = ()
    given: tuple[str, ...] = ()
    warnings: list[DataWarning] = field(default_factory=list, repr=False)

    def image_path(self, image_id: str) -> Path:
        try:
            return self.images[image_id]
        except KeyError:
            raise MmscaleError(f"{self.root}: no image {image_id!r}") from None

    def load_image(self, image_id: str):
        from PIL import Image

        with Image.open(self.image_path(image_id)) as im:
            return im.convert("RGB")

    def lists(self, split: str | None = None) -> Iterator[tuple[str, pd.DataFrame]]:
        """(image_id, its scenarios) in order of first appearance: the listwise unit."""
        frame = self.scenarios if split is None else self.scenarios[self.scenarios["split"] == split]
        yield from frame.groupby("image_id", sort=False)

    def has(self, name: str) -> bool:
        """Whether any scenario carries ``name`` (the authors' release has no annotators, no NormBank labels)."""
        return has_field(self.scenarios, name)

    def require(self, what: str, name: str) -> None:
        if not self.has(name):
            raise NotInRelease(what, name)

    def summary(self) -> dict[str, Any]:
        s = self.scenarios
        all_ratings = np.concatenate(s["ratings"].map(np.asarray).to_numpy()) if len(s) else np.array([])
        annotators = ({a for lst in s["annotators"] if lst is not None for a in lst}
                      if self.has("annotators") else None)
        list_sizes = s.groupby("image_id").size()
        return {
            "root": str(self.root),
            "file": self.source_file,
            "layout": self.layout,
            "images": int(s["image_id"].nunique()),
            "scenarios": int(len(s)),
            "mean_list_size": float(list_sizes.mean()),
            "list_size_histogram": {int(k): int(v) for k, v in list_sizes.value_counts().sort_index().items()},
            "annotators": None if annotators is None else len(annotators),
            "ratings": int(all_ratings.size),
            "rating_histogram": {int(k): int(v) for k, v in zip(*np.unique(all_ratings, return_counts=True))},
            "modality_histogram": {k: int(v) for k, v in s["modality"].value_counts().sort_index().items()},
            "split": {k: int(v) for k, v in s.groupby("split")["image_id"].nunique().items()},
            "normbank_labels": int(s["normbank_label"].notna().sum()),
            "warnings": len(self.warnings),
        }


def build_frame(records: list[dict], split_seed: int, test_fraction: float, file_name: str,
                names: dict[str, str] | None = None) -> tuple[pd.DataFrame, tuple[str, ...], list[DataWarning]]:
    """Validated records (our field names) -> (frame with typed fields and derived columns,
    the derived columns taken as stored, warnings), in one pass.

    Warnings: a stored score more than 1e-6 from the mean of the ratings, a stored modality
    other than the majority of the votes, a votes list of another length than the ratings.
    ``names`` maps our field names to the file's, for the warnings.
    """
    names = names or {}
    columns: dict[str, list] = {name: [] for name in FIELDS}
    score, modality, n_ratings = [], [], []
    extra = sorted({k for rec in records for k in rec.keys()} - set(FIELDS) - set(GIVEN_FIELDS))
    for name in extra:
        columns[name] = []
    given = {name: False for name in GIVEN_FIELDS}
    warnings: list[DataWarning] = []

    def warn(fld: str, kind: str, sid: str, detail: str) -> None:
        warnings.append(DataWarning(file_name, names.get(fld, fld), kind, f"scenario_id={sid}", detail))

    for rec in records:
        for name, col in columns.items():
            col.append(rec.get(name))
        ratings = [int(r) for r in rec["ratings"]]
        votes = list(rec["modalities"])
        columns["ratings"][-1] = ratings
        columns["modalities"][-1] = votes
        annot = rec.get("annotators")
        columns["annotators"][-1] = None if annot is None else list(annot)
        lab = rec.get("normbank_label")
        columns["normbank_label"][-1] = None if is_null(lab) else int(lab)
        for name in ("rating_std", "dedupe_group_size"):
            if is_null(columns[name][-1]):
                columns[name][-1] = None
        slots = rec.get("source_slots")
        columns["source_slots"][-1] = None if slots is None else [int(s) for s in slots]
        n_ratings.append(len(ratings))
        mean = sum(ratings) / len(ratings)
        majority = majority_modality(votes) if votes else None
        sid = rec["scenario_id"]
        if len(votes) != len(ratings):
            warn("modalities", "the votes list and the ratings list differ in length", sid,
                 f"{len(votes)} votes, {len(ratings)} ratings")
        stored = rec.get("score")
        if is_null(stored):
            score.append(mean)
        else:
            given["score"] = True
            score.append(float(stored))
            if abs(float(stored) - mean) > MEAN_TOLERANCE:
                warn("score", "the stored mean differs from the mean of the ratings by more than 1e-6", sid,
                     f"stored {float(stored):.4g}, mean of ratings {mean:.4g}")
        stored = rec.get("modality")
        if stored is None:
            modality.append(majority if majority is not None else "both")
        else:
            given["modality"] = True
            modality.append(stored)
            if majority is not None and stored != majority:
                warn("modality", "the stored label differs from the majority of the votes", sid,
                     f"stored {stored}, majority {majority}")
    frame = pd.DataFrame(columns)
    frame["normbank_label"] = pd.array(columns["normbank_label"], dtype="Int8")
    frame["score"] = np.asarray(score, dtype="float64")
    frame["modality"] = modality
    frame["n_ratings"] = np.asarray(n_ratings, dtype="int16")
    frame["list_size"] = frame.groupby("image_id", sort=False)["scenario_id"].transform("size").astype("int16")
    if frame["split"].isna().all():
        assignment = split_by_image(frame["image_id"], split_seed, test_fraction)
        frame["split"] = frame["image_id"].map(assignment)
    return frame, tuple(name for name, on in given.items() if on), warnings


def dataset_fingerprint(dataset: Dataset) -> str:
    """sha256 over the record files' bytes (scenarios file, or the flat file and split files)
    and every image's name and size (cheap, catches edits)."""
    digest = hashlib.sha256()
    several = len(dataset.source_files) > 1
    for name in dataset.source_files or (dataset.source_file,):
        if several:  # which file a byte came from matters once there is more than one
            digest.update(f"{name}\n".encode())
        with open(dataset.root / name, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    for image_id in sorted(dataset.images):
        path = dataset.images[image_id]
        digest.update(f"{path.name}:{path.stat().st_size}\n".encode())
    return digest.hexdigest()
