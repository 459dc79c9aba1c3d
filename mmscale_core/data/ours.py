"""Our release layout: the contract every notebook reads.

A dataset is a directory holding ``scenarios.parquet`` *or* ``scenarios.jsonl``
(one record per image-scenario pair) and ``images/<image_id>.(png|jpg|jpeg|webp)``.
Record fields (see :data:`mmscale_core.data.schema.FIELDS`)::

    image_id        non-empty str (also the image's file stem)
    scenario_id     non-empty str, unique
    setting         str, the target setting text
    scenario        non-empty str
    ratings         list of ints 1..5, length >= 1 (3 in the paper)
    modalities      list of "text" / "image" / "both", one per rating (another length is
                    allowed, with a warning, when the record stores its ``modality``)
    normbank_label  optional -1 / 0 / 1, or null (the text-only NormBank judgment)
    annotators      optional list of distinct non-empty str, one per rating, or null
    split           optional "train" / "val" / "test"
    image_source    optional "sd15" / "dalle3" / "vg" / "synthetic" / "photo"
    qc              optional "ok" / "minor" / "lighting" / "severe"
    origin          optional "source" / "expansion" (an annotator-added scenario, MORALE's
                    discrepancy-guided step, sec 3.2); on all records or none
    score           optional stored mean rating 1..5 (else derived)
    modality        optional stored label (else the majority of ``modalities``)
    rating_std, source_slots, dedupe_group_size   optional, the authors' fields, kept as given

Derived columns and the default split: :mod:`mmscale_core.data.dataset`.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from mmscale_core.data import frame_cache
from mmscale_core.data.dataset import Dataset, build_frame
from mmscale_core.data.images import check_image_files, index_images
from mmscale_core.data.problems import DatasetError, Problem
from mmscale_core.data.records import read_jsonl_records, validate_records
from mmscale_core.data.schema import (
    DEFAULT_SPLIT_SEED, DEFAULT_TEST_FRACTION, FIELDS, GIVEN_FIELDS, IMAGE_DIR, OPTIONAL_FIELDS, REQUIRED_FIELDS,
)
from mmscale_core.io import atomic_path

SCENARIO_FILES = ("scenarios.parquet", "scenarios.jsonl")


# --------------------------------------------------------------------------- reading

def _find_scenarios_file(root: Path, problems: list[Problem]) -> Path | None:
    present = [root / name for name in SCENARIO_FILES if (root / name).is_file()]
    if not root.is_dir():
        problems.append(Problem(str(root), "no such dataset directory"))
        return None
    if not present:
        problems.append(Problem(str(root), f"no {' or '.join(SCENARIO_FILES)} (our layout) and no "
                                           "mmscale_clean_flat.jsonl (the authors' layout) in the dataset directory"))
        return None
    if len(present) > 1:
        problems.append(Problem(str(root), "both scenarios.parquet and scenarios.jsonl exist; keep exactly one"))
        return None
    return present[0]


def _read_parquet(path: Path, problems: list[Problem]) -> list[tuple[str, dict]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as err:  # pyarrow raises several types for corrupt files
        problems.append(Problem(path.name, f"cannot read parquet: {err}"))
        return []
    return [(f"row {i}", rec) for i, rec in enumerate(table.to_pylist())]


def read_records(root: str | os.PathLike) -> tuple[Path | None, list[tuple[str, dict]], list[Problem]]:
    """Raw records of a dataset directory (no validation beyond parsing)."""
    root = Path(root)
    problems: list[Problem] = []
    path = _find_scenarios_file(root, problems)
    if path is None:
        return None, [], problems
    return path, _read_scenarios_file(path, problems), problems


def _read_scenarios_file(path: Path, problems: list[Problem]) -> list[tuple[str, dict]]:
    return _read_parquet(path, problems) if path.suffix == ".parquet" else read_jsonl_records(path, problems)


def load_ours(root: str | os.PathLike, *, check_images: bool = True, decode_images: bool = True,
              split_seed: int = DEFAULT_SPLIT_SEED, test_fraction: float = DEFAULT_TEST_FRACTION) -> Dataset:
    """Read and validate a dataset in our layout; raise :class:`DatasetError` listing every problem.

    The validated frame of a scenarios file is kept between processes (:mod:`.frame_cache`,
    keyed by the file's bytes and the code); the images are indexed and checked every time.
    """
    root = Path(root)
    problems: list[Problem] = []
    path = _find_scenarios_file(root, problems)
    key = frame_cache.entry_key(path, split_seed, test_fraction) if path is not None else None
    cached = frame_cache.load(key)
    if cached is not None:
        image_ids, (frame, given, warnings) = cached
    elif path is not None:
        labelled = _read_scenarios_file(path, problems)
        problems += validate_records(path.name, labelled)
        image_ids = [r["image_id"] for _, r in labelled if isinstance(r.get("image_id"), str)]
    images: dict[str, Path] = {}
    if root.is_dir():
        images, image_problems = index_images(root)
        if check_images and path is not None:
            problems += image_problems
            if (root / IMAGE_DIR).is_dir():
                problems += check_image_files(image_ids, images, decode=decode_images)
    if problems:
        raise DatasetError(root, problems)
    if cached is None:
        frame, given, warnings = build_frame([r for _, r in labelled], split_seed, test_fraction, path.name)
        frame_cache.store(key, (image_ids, (frame, given, warnings)))
    return Dataset(root=root, scenarios=frame, images=images, source_file=path.name, layout="ours",
                   source_files=(path.name,), given=given, warnings=warnings)


# --------------------------------------------------------------------------- writing

def write_dataset(frame: pd.DataFrame, root: str | os.PathLike, fmt: str = "parquet",
                  given: tuple[str, ...] = ()) -> Path:
    """Write the release-format fields of ``frame`` as ``root/scenarios.<fmt>``, atomically.

    Derived columns are dropped (they are recomputed on load) except those named in
    ``given`` (``score``, ``modality``: stored values to keep, e.g. the authors' means);
    optional fields null on every record are left out. Images are the caller's to write
    under ``root/images/``. Writing one format removes the other so the directory never
    holds two scenario files.
    """
    if fmt not in ("parquet", "jsonl"):
        raise ValueError(f"fmt must be 'parquet' or 'jsonl', not {fmt!r}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    missing = [c for c in REQUIRED_FIELDS if c not in frame.columns]
    if missing:
        raise ValueError(f"frame lacks required fields: {', '.join(missing)}")
    cols = [c for c in FIELDS + tuple(g for g in GIVEN_FIELDS if g in given) if c in frame.columns
            and not (c in OPTIONAL_FIELDS and frame[c].isna().all())]
    records = [_plain(rec) for rec in frame[cols].to_dict(orient="records")]
    target = root / f"scenarios.{fmt}"
    with atomic_path(target) as tmp:
        if fmt == "jsonl":
            with open(tmp, "w", encoding="utf-8") as fh:
                for rec in records:
                    fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
        else:
            _records_to_parquet(records, cols, tmp)
    other = root / f"scenarios.{'jsonl' if fmt == 'parquet' else 'parquet'}"
    if other.exists():
        other.unlink()
    return target


def _plain(rec: dict) -> dict:
    """numpy/pandas scalars and arrays -> plain Python, NaN/NA -> None."""
    out = {}
    for k, v in rec.items():
        if isinstance(v, np.ndarray):
            v = v.tolist()
        elif isinstance(v, (list, tuple)):
            v = [x.item() if isinstance(x, np.generic) else x for x in v]
        elif v is pd.NA or v is None or (isinstance(v, float) and math.isnan(v)):
            v = None
        elif isinstance(v, np.generic):
            v = v.item()
        out[k] = v
    return out


def _records_to_parquet(records: list[dict], cols: list[str], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    types = {
        "image_id": pa.string(), "scenario_id": pa.string(), "setting": pa.string(), "scenario": pa.string(),
        "normbank_label": pa.int8(), "ratings": pa.list_(pa.int8()), "modalities": pa.list_(pa.string()),
        "annotators": pa.list_(pa.string()), "split": pa.string(), "image_source": pa.string(), "qc": pa.string(),
        "rating_std": pa.float64(), "source_slots": pa.list_(pa.int32()), "dedupe_group_size": pa.int32(),
        "origin": pa.string(), "score": pa.float64(), "modality": pa.string(),
    }
    schema = pa.schema([(c, types[c]) for c in cols])
    table = pa.Table.from_pylist(records, schema=schema)
    pq.write_table(table, path, compression="zstd")
