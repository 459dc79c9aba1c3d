"""What gets annotated: the dataset's scenarios plus the model's predictions, synced into the DB.

The input is a dataset in the release format (see :mod:`mmscale_core.data`),
except that ``ratings`` / ``modalities`` / ``annotators`` may be empty or
absent: a group starting a new round has scenarios but no ratings yet. Every
other rule of the format applies and every problem is reported at once.

The predictions parquet (written by ``mmscale predict``) gives each scenario
the model's ``calibrated_score`` on the 1-5 scale, the s_model of the paper's
discrepancy rule. Scenarios without a prediction are annotated normally but
skip the discrepancy-guided step.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from sqlalchemy import select

from mmscale_core.data import (
    DatasetError, check_image_files, index_images, read_records, split_by_image, validate_records,
)
from mmscale_core.errors import MmscaleError
from mmscale_core.morale.db import Database, Image, Scenario

PREDICTION_COLUMNS = ("scenario_id", "calibrated_score")
_UNRATED = {"ratings": [3], "modalities": ["both"], "annotators": ["(unrated)"]}
_RATING_FIELDS = tuple(_UNRATED)


@dataclass
class Pool:
    """The validated input: one dict per scenario (fields of the release format) and the image files."""

    root: Path
    records: list[dict]
    images: dict[str, Path]

    @property
    def image_ids(self) -> list[str]:
        return list(dict.fromkeys(r["image_id"] for r in self.records))


def _is_unrated(rec: dict) -> bool:
    return all(not rec.get(name) for name in _RATING_FIELDS)


def load_pool(root: str | os.PathLike, decode_images: bool = False) -> Pool:
    """Read and validate the scenarios to annotate; unrated records are allowed.

    Image files must exist; decoding each one (``decode_images``) is ``mmscale validate``'s
    job and would make every server start read the whole image set.
    """
    root = Path(root)
    path, labelled, problems = read_records(root)
    if path is not None:
        as_rated = [(label, {**rec, **_UNRATED} if _is_unrated(rec) else rec) for label, rec in labelled]
        problems += validate_records(path.name, as_rated)
    images: dict[str, Path] = {}
    if path is not None:
        images, image_problems = index_images(root)
        problems += image_problems
        ids = [r["image_id"] for _, r in labelled if isinstance(r.get("image_id"), str)]
        if not image_problems:
            problems += check_image_files(ids, images, decode=decode_images)
    if problems:
        raise DatasetError(root, problems)
    records = [dict(rec) for _, rec in labelled]
    if all(rec.get("split") is None for rec in records):
        # Pin the split the loader would derive for the *source*, so an export that drops
        # images (too few ratings) keeps every remaining image in its original split.
        split = split_by_image(rec["image_id"] for rec in records)
        for rec in records:
            rec["split"] = split[rec["image_id"]]
    return Pool(root=root, records=records, images=images)


def read_predictions(path: str | os.PathLike) -> dict[str, float]:
    """scenario_id -> calibrated score (1-5) from a ``mmscale predict`` parquet, checked field by field."""
    path = Path(path)
    if not path.is_file():
        raise MmscaleError(f"{path}: no such predictions file (write one with `mmscale predict`)")
    try:
        frame = pd.read_parquet(path)
    except Exception as err:  # pyarrow raises several types for corrupt files
        raise MmscaleError(f"{path}: cannot read predictions parquet: {err}") from None
    missing = [c for c in PREDICTION_COLUMNS if c not in frame.columns]
    if missing:
        raise MmscaleError(f"{path}: predictions lack column(s) {', '.join(missing)} "
                           f"(has {', '.join(map(str, frame.columns))})")
    scores: dict[str, float] = {}
    for sid, value in zip(frame["scenario_id"], frame["calibrated_score"]):
        if not isinstance(sid, str) or not sid:
            raise MmscaleError(f"{path}: a row has scenario_id {sid!r}; expected a non-empty string")
        try:
            score = float(value)
        except (TypeError, ValueError):
            score = math.nan
        if not math.isfinite(score):
            raise MmscaleError(f"{path} [scenario_id={sid}] field 'calibrated_score': {value!r} is not a number")
        if sid in scores:
            raise MmscaleError(f"{path} [scenario_id={sid}] field 'scenario_id': duplicate prediction")
        scores[sid] = score
    return scores


def sync_pool(db: Database, pool: Pool, predictions: dict[str, float] | None) -> dict[str, int]:
    """Insert scenarios not yet in the DB and refresh model scores; idempotent across restarts."""
    predictions = predictions or {}
    known_ids = {r["scenario_id"] for r in pool.records}
    with db.write() as session:
        have_images = set(session.scalars(select(Image.image_id)))
        for pos, image_id in enumerate(pool.image_ids):
            if image_id not in have_images:
                session.add(Image(image_id=image_id, position=pos))
        session.flush()
        existing = {s.scenario_id: s for s in session.scalars(select(Scenario))}
        added = 0
        for pos, rec in enumerate(pool.records):
            row = existing.get(rec["scenario_id"])
            if row is None:
                row = Scenario(
                    scenario_id=rec["scenario_id"], image_id=rec["image_id"], setting=rec.get("setting") or "",
                    text=rec["scenario"], normbank_label=_label(rec.get("normbank_label")),
                    split=rec.get("split"), image_source=rec.get("image_source"), qc=rec.get("qc"),
                    source_ratings=None if _is_unrated(rec) else {k: list(rec[k]) for k in _RATING_FIELDS},
                    position=pos,
                )
                session.add(row)
                added += 1
            row.model_score = predictions.get(rec["scenario_id"])
        for sid, row in existing.items():  # annotator-added scenarios may have been scored since
            if sid not in known_ids and sid in predictions:
                row.model_score = predictions[sid]
    covered = sum(1 for sid in known_ids if sid in predictions)
    return {"scenarios": len(known_ids), "added": added, "with_prediction": covered,
            "unknown_predictions": len(set(predictions) - known_ids - set(existing))}


def _label(value) -> int | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return int(value)
