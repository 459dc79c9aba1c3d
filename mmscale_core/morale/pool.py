"""What gets annotated: the dataset's scenarios plus the model's predictions, synced into the DB.

The input is a dataset in the release format (see :mod:`mmscale_core.data`),
except that ``ratings`` / ``modalities`` / ``annotators`` may be empty or
absent: a group starting a new round has scenarios but no ratings yet. Every
other rule of the format applies and every problem is reported at once.

The predictions parquet (written by ``mmscale predict``) gives each scenario
the model's ``calibrated_score`` on the 1-5 scale, the s_model of the paper's
discrepancy rule. Scenarios without a prediction are annotated normally but
skip the discrepancy-guided step; ``check_coverage`` refuses a predictions file
that covers less than a threshold of the pool (another dataset's predictions would
switch the step off silently).

The database records the dataset it was created from: a fingerprint over the
scenario records and the image files' contents (``pool_manifest``). A start
against a different dataset is refused with what differs, unless the operator
accepts the change: then new scenarios are added and removed ones retired
(never assigned or exported again; their ratings stay).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from sqlalchemy import select

from mmscale_core.data import (
    DatasetError, Problem, check_image_files, index_images, read_records, split_by_image, validate_records,
)
from mmscale_core.errors import MmscaleError
from mmscale_core.morale.db import Database, Image, Meta, RetiredScenario, Scenario, ScenarioKey, text_key
from mmscale_core.text_checks import describe_forbidden_characters

TEXT_FIELDS = ("scenario_id", "image_id", "setting", "scenario")
SCORE_RANGE = (1.0, 5.0)
DEFAULT_MIN_COVERAGE = 0.95

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
        problems += control_character_problems(path.name, labelled)
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


def control_character_problems(file_name: str, labelled: list[tuple[str, dict]]) -> list[Problem]:
    """A problem per text field holding NUL, another control or a bidirectional override."""
    problems = []
    for label, rec in labelled:
        for name in TEXT_FIELDS:
            value = rec.get(name)
            message = describe_forbidden_characters(value) if isinstance(value, str) else None
            if message:
                problems.append(Problem(file_name, message, label, name))
    return problems


def check_scores(scores: dict[str, float], where: str) -> dict[str, float]:
    """Every score finite and on the 1-5 scale of the ratings (else the delta rule is meaningless)."""
    low, high = SCORE_RANGE
    for sid, score in scores.items():
        if not (isinstance(score, (int, float)) and math.isfinite(score) and low <= score <= high):
            raise MmscaleError(f"{where} [scenario_id={sid}] field 'calibrated_score': {score!r} is not a "
                               f"score from {low:g} to {high:g} (predict with a calibrated model)")
    return scores


def check_coverage(pool: Pool, scores: dict[str, float], min_coverage: float, where: str) -> dict[str, int]:
    """How many of the pool's scenarios have a prediction; MmscaleError below ``min_coverage``."""
    n = len(pool.records)
    covered = sum(1 for rec in pool.records if rec["scenario_id"] in scores)
    if covered < min_coverage * n:
        raise MmscaleError(
            f"{where}: the predictions cover {covered} of the {n} scenarios in {pool.root} "
            f"({covered / n:.0%}); --min-prediction-coverage is {min_coverage:g}. Scenarios without a "
            "prediction skip the discrepancy-guided step. Predict this dataset with `mmscale predict`, "
            "or pass a lower --min-prediction-coverage (0 serves without the step)")
    return {"scenarios": n, "with_prediction": covered}


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
    return check_scores(scores, str(path))


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def scenario_digest(image_id: str, setting: str, text: str) -> str:
    """What a rating was given for: the image, the setting and the scenario text."""
    return _digest([image_id, setting or "", text])[:32]


def pool_manifest(pool: Pool) -> dict:
    """The dataset's content: a digest per scenario record and per image file (its bytes)."""
    return {
        "scenarios": {r["scenario_id"]: scenario_digest(r["image_id"], r.get("setting") or "", r["scenario"])
                      for r in pool.records},
        "images": {image_id: _file_digest(pool.images[image_id])[:32] for image_id in pool.image_ids},
    }


def dataset_fingerprint(manifest: dict) -> str:
    return _digest(manifest)


def _examples(ids) -> str:
    ids = sorted(ids)
    return ", ".join(ids[:3]) + (f", ... ({len(ids)} in all)" if len(ids) > 3 else "")


def dataset_changes(db_scenarios: dict[str, str], recorded_images: dict[str, str] | None,
                    manifest: dict) -> dict[str, list[str]]:
    """Scenario ids added / removed / changed and image ids changed, recorded DB vs the served dataset."""
    now = manifest["scenarios"]
    images_then = recorded_images or {}
    return {
        "added": sorted(set(now) - set(db_scenarios)),
        "removed": sorted(set(db_scenarios) - set(now)),
        "changed": sorted(sid for sid in set(now) & set(db_scenarios) if now[sid] != db_scenarios[sid]),
        "images_changed": sorted(i for i, d in manifest["images"].items()
                                 if i in images_then and images_then[i] != d),
    }


def _change_message(pool: Pool, recorded_dir: str | None, changes: dict[str, list[str]], accept: bool) -> str:
    parts = []
    for name, what in (("added", "scenario(s) added"), ("removed", "scenario(s) removed"),
                       ("changed", "scenario(s) with another text, setting or image"),
                       ("images_changed", "image file(s) with other content")):
        if changes[name]:
            parts.append(f"{len(changes[name])} {what} ({_examples(changes[name])})")
    head = (f"--data {pool.root}: not the dataset this database was created from "
            f"({recorded_dir or 'directory not recorded'}): " + "; ".join(parts) + ". ")
    if changes["changed"] or changes["images_changed"]:
        return head + ("Ratings were given for the old text and images, so an edit cannot be accepted: "
                       "serve the original dataset, start a new round with a new --db, or give edited "
                       "scenarios and images new ids (the old ones are then retired with "
                       "--accept-dataset-change).")
    return head + ("Serve the original dataset, start a new round with a new --db, or pass "
                   "--accept-dataset-change to add the new scenarios and retire the removed ones "
                   "(collected ratings are kept).")


def sync_pool(db: Database, pool: Pool, predictions: dict[str, float] | None, *,
              accept_dataset_change: bool = False) -> dict[str, int]:
    """Insert the pool into the DB (first start) or check it is the recorded dataset; refresh model scores.

    Idempotent across restarts of the same dataset. Writes nothing when it refuses.
    """
    predictions = predictions or {}
    known_ids = {r["scenario_id"] for r in pool.records}
    manifest = pool_manifest(pool)
    fingerprint = dataset_fingerprint(manifest)
    with db.write() as session:
        meta = {m.key: m.value for m in session.scalars(select(Meta))}
        existing = {s.scenario_id: s for s in session.scalars(select(Scenario))}
        retired = set(session.scalars(select(RetiredScenario.scenario_id)))
        changes = {"added": [], "removed": [], "changed": [], "images_changed": []}
        if meta.get("dataset_fingerprint") != fingerprint:
            from_dataset = {sid: scenario_digest(row.image_id, row.setting, row.text)
                            for sid, row in existing.items() if row.created_by is None and sid not in retired}
            recorded = json.loads(meta["dataset_images"]) if "dataset_images" in meta else None
            changes = dataset_changes(from_dataset, recorded, manifest)
            fresh = not existing
            if not fresh and (changes["changed"] or changes["images_changed"]
                              or ((changes["added"] or changes["removed"]) and not accept_dataset_change)):
                raise MmscaleError(_change_message(pool, meta.get("data_dir"), changes, accept_dataset_change))
        have_images = set(session.scalars(select(Image.image_id)))
        for pos, image_id in enumerate(pool.image_ids):
            if image_id not in have_images:
                session.add(Image(image_id=image_id, position=pos))
        session.flush()
        added = 0
        base = max((row.position for row in existing.values()), default=-1) + 1 if existing else 0
        for pos, rec in enumerate(pool.records):
            row = existing.get(rec["scenario_id"])
            if row is None:
                row = Scenario(
                    scenario_id=rec["scenario_id"], image_id=rec["image_id"], setting=rec.get("setting") or "",
                    text=rec["scenario"], normbank_label=_label(rec.get("normbank_label")),
                    split=rec.get("split"), image_source=rec.get("image_source"), qc=rec.get("qc"),
                    source_ratings=None if _is_unrated(rec) else {k: list(rec[k]) for k in _RATING_FIELDS},
                    position=base + pos,
                )
                session.add(row)
                existing[row.scenario_id] = row
                added += 1
            elif rec["scenario_id"] in retired:  # back in the dataset, unchanged: serve it again
                session.delete(session.get(RetiredScenario, rec["scenario_id"]))
            row.model_score = predictions.get(rec["scenario_id"])
        served_images = set(pool.image_ids)
        orphans = {sid for sid, row in existing.items()  # scenarios annotators wrote for a removed image
                   if row.created_by is not None and row.image_id not in served_images and sid not in retired}
        for sid in sorted(set(changes["removed"]) | orphans):
            session.add(RetiredScenario(scenario_id=sid))
        for sid, row in existing.items():  # annotator-added scenarios may have been scored since
            if sid not in known_ids and row.created_by is not None and sid in predictions:
                row.model_score = predictions[sid]
        session.flush()
        _add_text_keys(session, existing)
        for key, value in (("dataset_fingerprint", fingerprint), ("data_dir", str(Path(pool.root).resolve())),
                           ("dataset_images", json.dumps(manifest["images"], sort_keys=True))):
            session.merge(Meta(key=key, value=value))
    covered = sum(1 for sid in known_ids if sid in predictions)
    return {"scenarios": len(known_ids), "added": added, "with_prediction": covered,
            "retired": len(set(changes["removed"]) | orphans),
            "unknown_predictions": len(set(predictions) - set(existing))}


def _add_text_keys(session, scenarios: dict[str, Scenario]) -> None:
    """A duplicate-check key for every scenario without one (new ones, and databases of older rounds)."""
    keyed = set(session.scalars(select(ScenarioKey.scenario_id)))
    taken = set(session.execute(select(ScenarioKey.image_id, ScenarioKey.text_key)
                                .where(ScenarioKey.text_key.is_not(None))).all())
    for sid in sorted(set(scenarios) - keyed, key=lambda s: (scenarios[s].position, s)):
        row = scenarios[sid]
        key = (row.image_id, text_key(row.text))
        session.add(ScenarioKey(scenario_id=sid, image_id=row.image_id, text_key=None if key in taken else key[1]))
        taken.add(key)


def _label(value) -> int | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return int(value)
