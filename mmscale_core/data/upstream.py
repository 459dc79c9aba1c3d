"""The authors' release layout (``dbsltm/mmscale-submission``, ``dataset_card.md``), read as is.

A directory is in this layout when it holds ``mmscale_clean_flat.jsonl``::

    mmscale_clean_flat.jsonl       one row per scenario (the fields below)
    mmscale_clean_contexts.jsonl   optional: one row per image, scenarios nested (not read)
    images/<image_id>              image_id is the file name, extension included (03485.png)
    splits/{train,val,test}.jsonl  optional: one row per image, ``scenarios`` nested; a
                                   scenario's split is the file its scenario_id appears in.
                                   Other files there (binary, pairwise, listwise) are ignored.

Flat fields and what they become in the frame (our names): ``image_id``, ``scenario_id``,
``target_setting`` -> setting, ``text`` -> scenario, ``mean_rating`` -> score (used as
given), ``ratings`` (ints 1-5, any length >= 1), ``modality`` (used as given),
``modality_votes`` -> modalities, and kept as they are ``rating_std``, ``source_slots``,
``dedupe_group_size``. There are no annotators and no NormBank labels. One field of ours
is read and written here too, though the authors' release has none: ``origin`` (``source`` /
``expansion``, sec 3.2's annotator-added scenarios), at the end of a flat row when a
release carries it, so that an expanded dataset converts between layouts and back.

Errors (nothing loads): every rule of our layout on the mapped fields, a scenario in two
split files, a split scenario missing from the flat file, a flat scenario in no split
file, an image whose scenarios are in two splits, a missing or undecodable image.
Warnings (listed, never blocking): a ``mean_rating`` more than 1e-6 from the mean of
``ratings``, a ``modality`` other than the majority of ``modality_votes``, a votes list of
another length than the ratings (the release merged near-duplicates).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from mmscale_core.data.dataset import Dataset, build_frame
from mmscale_core.data.images import check_image_files, index_images
from mmscale_core.data.problems import DatasetError, Problem
from mmscale_core.data.records import read_jsonl_records, validate_records
from mmscale_core.data.schema import DEFAULT_SPLIT_SEED, DEFAULT_TEST_FRACTION, IMAGE_DIR, SPLITS, splits_phrase
from mmscale_core.io import atomic_open

FLAT_FILE = "mmscale_clean_flat.jsonl"
CONTEXTS_FILE = "mmscale_clean_contexts.jsonl"
SPLITS_DIR = "splits"

# the flat file's fields in the card's order, and their names in our frame
UPSTREAM_FIELDS = ("image_id", "target_setting", "scenario_id", "text", "mean_rating", "ratings", "rating_std",
                   "modality", "modality_votes", "source_slots", "dedupe_group_size")
TO_OURS = {"target_setting": "setting", "text": "scenario", "mean_rating": "score", "modality_votes": "modalities"}
TO_UPSTREAM = {ours: up for up, ours in TO_OURS.items()}
REQUIRED = ("image_id", "scenario_id", "target_setting", "text", "mean_rating", "ratings", "modality",
            "modality_votes")


def is_upstream(root: str | os.PathLike) -> bool:
    """Whether ``root`` is in the authors' layout (it holds the flat file)."""
    return (Path(root) / FLAT_FILE).is_file()


def _to_ours(rec: dict) -> dict:
    """The record in our field names; a 'split' field is dropped (the split files say it)."""
    out = dict(rec)
    for up, ours in TO_OURS.items():
        if up in out:
            out[ours] = out.pop(up)
    out.pop("split", None)
    return out


def read_split_files(root: Path, problems: list[Problem]) -> tuple[dict[str, str], list[str]] | None:
    """scenario_id -> split from ``splits/{train,val,test}.jsonl``, and the files read;
    None when there are none (the split is then derived, as in our layout)."""
    found = [s for s in SPLITS if (root / SPLITS_DIR / f"{s}.jsonl").is_file()]
    if not found:
        return None
    split_of: dict[str, str] = {}
    files = []
    for split in found:
        name = f"{SPLITS_DIR}/{split}.jsonl"
        files.append(name)
        for label, row in read_jsonl_records(root / name, problems, name):
            scenarios = row.get("scenarios")
            if not isinstance(scenarios, list):
                problems.append(Problem(name, "must be a list of scenario records", label, "scenarios"))
                continue
            for i, scen in enumerate(scenarios):
                sid = scen.get("scenario_id") if isinstance(scen, dict) else None
                if not isinstance(sid, str) or not sid:
                    problems.append(Problem(name, f"scenario #{i + 1} has no scenario_id", label, "scenarios"))
                elif sid in split_of and split_of[sid] != split:
                    problems.append(Problem(name, f"also in {SPLITS_DIR}/{split_of[sid]}.jsonl (a scenario "
                                                  "belongs to one split)", f"scenario_id={sid}", "scenario_id"))
                else:
                    split_of[sid] = split
    return split_of, files


def _split_problems(split_of: dict[str, str], labelled: list[tuple[str, dict]]) -> list[Problem]:
    """Split files against the flat file: nothing missing on either side, images disjoint."""
    problems = []
    in_flat = {r["scenario_id"] for _, r in labelled if isinstance(r.get("scenario_id"), str)}
    for sid, split in split_of.items():
        if sid not in in_flat:
            problems.append(Problem(f"{SPLITS_DIR}/{split}.jsonl", f"scenario is not in {FLAT_FILE}",
                                    f"scenario_id={sid}", "scenario_id"))
    splits_by_image: dict[str, set] = {}
    for label, rec in labelled:
        sid = rec.get("scenario_id")
        if not isinstance(sid, str):
            continue
        if sid not in split_of:
            problems.append(Problem(FLAT_FILE, f"scenario is in none of the split files ({SPLITS_DIR}/)",
                                    f"scenario_id={sid}", "scenario_id"))
        elif isinstance(rec.get("image_id"), str):
            splits_by_image.setdefault(rec["image_id"], set()).add(split_of[sid])
    for image_id, splits in splits_by_image.items():
        if len(splits) > 1:
            problems.append(Problem(f"{SPLITS_DIR}/", f"image {image_id} has scenarios in "
                                    f"{splits_phrase(splits)} (splits must be image-disjoint)",
                                    f"image_id={image_id}", "scenarios"))
    return problems


def load_upstream(root: str | os.PathLike, *, check_images: bool = True, decode_images: bool = True,
                  split_seed: int = DEFAULT_SPLIT_SEED, test_fraction: float = DEFAULT_TEST_FRACTION) -> Dataset:
    """Read and validate a release in the authors' layout; raise :class:`DatasetError` listing every problem."""
    root = Path(root)
    problems: list[Problem] = []
    raw = read_jsonl_records(root / FLAT_FILE, problems)
    labelled = [(label, _to_ours(rec)) for label, rec in raw]
    problems += validate_records(FLAT_FILE, labelled,
                                 required=[TO_OURS.get(f, f) for f in REQUIRED], votes_per_rating=False,
                                 names=TO_UPSTREAM)
    splits = read_split_files(root, problems)
    files = [FLAT_FILE]
    if splits is not None:
        split_of, split_files = splits
        files += split_files
        problems += _split_problems(split_of, labelled)
        for _, rec in labelled:
            rec["split"] = split_of.get(rec.get("scenario_id"))
    images, image_problems = index_images(root, by_name=True)
    if check_images:
        problems += image_problems
        if (root / IMAGE_DIR).is_dir():
            ids = [r["image_id"] for _, r in labelled if isinstance(r.get("image_id"), str)]
            problems += check_image_files(ids, images, decode=decode_images, by_name=True)
    if problems:
        raise DatasetError(root, problems)
    frame, given, warnings = build_frame([r for _, r in labelled], split_seed, test_fraction, FLAT_FILE,
                                         names=TO_UPSTREAM)
    return Dataset(root=root, scenarios=frame, images=images, source_file=FLAT_FILE, layout="upstream",
                   source_files=tuple(files), given=given, warnings=warnings)


# --------------------------------------------------------------------------- writing

def upstream_records(frame: pd.DataFrame, file_names: dict[str, str]) -> list[dict]:
    """Frame rows (our names) as flat-file rows; ``file_names`` maps each image_id to its
    image's file name (the authors' image_id). Where the frame carries no ``rating_std`` it is
    the ratings' sample SD (ddof=1, the project's ``rating_sd``; null for a single rating)."""
    compute_std = "rating_std" not in frame.columns or frame["rating_std"].isna().all()
    with_origin = "origin" in frame.columns and frame["origin"].notna().any()
    out = []
    for row in frame.itertuples(index=False):
        get = row._asdict().get
        ratings = [int(r) for r in row.ratings]
        slots, size, std = get("source_slots"), get("dedupe_group_size"), get("rating_std")
        out.append({
            "image_id": file_names[row.image_id],
            "target_setting": row.setting,
            "scenario_id": row.scenario_id,
            "text": row.scenario,
            "mean_rating": float(row.score),
            "ratings": ratings,
            "rating_std": (_sample_sd(ratings) if compute_std else None if pd.isna(std) else float(std)),
            "modality": row.modality,
            "modality_votes": list(row.modalities),
            "source_slots": None if slots is None else [int(s) for s in slots],
            "dedupe_group_size": None if size is None or pd.isna(size) else int(size),
            **({"origin": get("origin")} if with_origin else {}),
        })
    return out


def _sample_sd(ratings: list[int]) -> float | None:
    return float(np.std(ratings, ddof=1)) if len(ratings) > 1 else None


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    with atomic_open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def _contexts(records: list[dict]) -> list[dict]:
    """One row per image, its scenarios nested (the contexts and split files' shape)."""
    by_image: dict[str, dict] = {}
    for rec in records:
        row = by_image.setdefault(rec["image_id"], {"image_id": rec["image_id"],
                                                    "target_setting": rec["target_setting"], "scenarios": []})
        row["scenarios"].append(rec)
    return list(by_image.values())


def write_upstream(frame: pd.DataFrame, root: str | os.PathLike, file_names: dict[str, str],
                   contexts: bool = True) -> Path:
    """Write the frame's records in the authors' layout: flat file, split files (each split
    the frame has), and, with ``contexts``, the contexts file. Images are the caller's to
    put under ``root/images/<file name>``. The flat file is written last: an interrupted
    write never leaves a directory that looks complete."""
    root = Path(root)
    records = upstream_records(frame, file_names)
    splits = frame["split"].to_numpy()
    for split in SPLITS:
        part = [rec for rec, s in zip(records, splits) if s == split]
        path = root / SPLITS_DIR / f"{split}.jsonl"
        if part:
            _write_jsonl(path, _contexts(part))
        elif path.exists():
            path.unlink()
    if contexts:
        _write_jsonl(root / CONTEXTS_FILE, _contexts(records))
    _write_jsonl(root / FLAT_FILE, records)
    return root / FLAT_FILE
