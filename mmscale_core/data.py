"""The MM-SCALE dataset release format: the contract every notebook reads.

A dataset is a directory holding ``scenarios.parquet`` *or* ``scenarios.jsonl``
(one record per image-scenario pair) and ``images/<image_id>.(png|jpg|jpeg|webp)``.
Record fields (see :data:`FIELDS`)::

    image_id        non-empty str (also the image's file stem)
    scenario_id     non-empty str, unique
    setting         str, the target setting text
    scenario        non-empty str
    normbank_label  -1 / 0 / 1, or null (the text-only NormBank judgment)
    ratings         list of ints 1..5, length >= 1 (3 in the paper)
    modalities      list of "text" / "image" / "both", one per rating
    annotators      list of distinct non-empty str, one per rating
    split           optional "train" / "test"
    image_source    optional "sd15" / "dalle3" / "vg" / "synthetic" / "photo"
    qc              optional "ok" / "minor" / "lighting" / "severe"

Derived, never stored: ``score`` (mean rating), ``modality`` (majority label,
ties -> "both"), ``n_ratings``, ``list_size`` (scenarios sharing the image) and,
when no record carries ``split``, a deterministic seeded 9:1 split by image.

Integers may arrive as integral floats (3.0): pandas writes int columns that
contain nulls that way, so they are accepted; 2.5, NaN and booleans are not.

Validation collects *every* problem (file, record, field, what is wrong) before
failing, so a user fixes a bad export in one pass instead of one error at a time.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import numbers
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import pandas as pd

from mmscale_core.errors import MmscaleError
from mmscale_core.io import atomic_path

SCENARIO_FILES = ("scenarios.parquet", "scenarios.jsonl")
IMAGE_DIR = "images"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")

MODALITIES = ("text", "image", "both")
SPLITS = ("train", "test")
IMAGE_SOURCES = ("sd15", "dalle3", "vg", "synthetic", "photo")
QC_FLAGS = ("ok", "minor", "lighting", "severe")
NORMBANK_LABELS = (-1, 0, 1)
RATING_RANGE = (1, 5)

REQUIRED_FIELDS = (
    "image_id", "scenario_id", "setting", "scenario",
    "normbank_label", "ratings", "modalities", "annotators",
)
_REQUIRED_SET = frozenset(REQUIRED_FIELDS)
OPTIONAL_FIELDS = ("split", "image_source", "qc")
FIELDS = REQUIRED_FIELDS + OPTIONAL_FIELDS
DERIVED_COLUMNS = ("score", "modality", "n_ratings", "list_size")

DEFAULT_SPLIT_SEED = 0
DEFAULT_TEST_FRACTION = 0.1


# --------------------------------------------------------------------------- problems

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


# --------------------------------------------------------------------------- reading

def _find_scenarios_file(root: Path, problems: list[Problem]) -> Path | None:
    present = [root / name for name in SCENARIO_FILES if (root / name).is_file()]
    if not root.is_dir():
        problems.append(Problem(str(root), "no such dataset directory"))
        return None
    if not present:
        problems.append(Problem(str(root), f"no {' or '.join(SCENARIO_FILES)} in the dataset directory"))
        return None
    if len(present) > 1:
        problems.append(Problem(str(root), "both scenarios.parquet and scenarios.jsonl exist; keep exactly one"))
        return None
    return present[0]


def _read_jsonl(path: Path, problems: list[Problem]) -> list[tuple[str, dict]]:
    """Records with their line labels; unparsable lines become problems."""
    records: list[tuple[str, dict]] = []
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            label = f"line {lineno}"
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                problems.append(Problem(path.name, f"not valid UTF-8 (byte {err.start})", label))
                continue
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as err:
                problems.append(Problem(path.name, f"not valid JSON: {err.msg} at column {err.colno}", label))
                continue
            if not isinstance(obj, dict):
                problems.append(Problem(path.name, f"expected a JSON object, got {type(obj).__name__}", label))
                continue
            records.append((label, obj))
    return records


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
    reader = _read_parquet if path.suffix == ".parquet" else _read_jsonl
    return path, reader(path, problems), problems


# --------------------------------------------------------------------------- record rules

def _is_int(x: Any) -> bool:
    """Integers, and floats holding an integer (pandas turns int columns with nulls into floats)."""
    t = type(x)
    if t is int:  # the common case, checked without the slow ABC machinery
        return True
    if t is bool:
        return False
    return isinstance(x, numbers.Integral) or (isinstance(x, float) and x.is_integer())


def _describe(x: Any) -> str:
    text = repr(x)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_record(rec: dict, report) -> None:
    """Apply every field rule to one record; ``report(field, message)`` collects problems."""
    if not _REQUIRED_SET <= rec.keys():
        for name in REQUIRED_FIELDS:
            if name not in rec:
                report(name, "missing field")

    for name in ("image_id", "scenario_id", "scenario"):
        if name in rec:
            v = rec[name]
            if type(v) is not str:
                report(name, f"must be a string, got {_describe(v)}")
            elif not v or v.isspace():
                report(name, "must be a non-empty string")
    image_id = rec.get("image_id")
    if isinstance(image_id, str) and image_id.strip() and (
        "/" in image_id or "\\" in image_id or image_id.startswith(".")
    ):
        report("image_id", f"{_describe(image_id)} is not usable as a file name")
    if "setting" in rec and not isinstance(rec["setting"], str):
        report("setting", f"must be a string, got {_describe(rec['setting'])}")

    if "normbank_label" in rec:
        lab = rec["normbank_label"]
        if lab is not None and not (isinstance(lab, float) and math.isnan(lab)):
            if not _is_int(lab) or lab not in NORMBANK_LABELS:
                report("normbank_label", f"must be -1, 0, 1 or null, got {_describe(lab)}")

    lengths: dict[str, int] = {}
    ratings = rec.get("ratings")
    if "ratings" in rec:
        if not isinstance(ratings, (list, tuple)):
            report("ratings", f"must be a list of integers 1..5, got {_describe(ratings)}")
        elif len(ratings) == 0:
            report("ratings", "must have at least one rating")
        else:
            lengths["ratings"] = len(ratings)
            for i, r in enumerate(ratings):
                if type(r) is int and 1 <= r <= 5:
                    continue
                if r is None or (isinstance(r, float) and math.isnan(r)):
                    report("ratings", f"rating #{i + 1} is missing (null or NaN)")
                elif not _is_int(r):
                    report("ratings", f"rating #{i + 1} is {_describe(r)}, not an integer")
                elif not RATING_RANGE[0] <= r <= RATING_RANGE[1]:
                    report("ratings", f"rating #{i + 1} is {r}, outside 1..5")

    for name, allowed in (("modalities", MODALITIES), ("annotators", None)):
        if name not in rec:
            continue
        values = rec[name]
        if not isinstance(values, (list, tuple)):
            report(name, f"must be a list, got {_describe(values)}")
            continue
        lengths[name] = len(values)
        for i, v in enumerate(values):
            if allowed is not None and v not in allowed:
                report(name, f"entry #{i + 1} is {_describe(v)}; expected one of {', '.join(allowed)}")
            elif allowed is None and not (type(v) is str and v and not v.isspace()):
                report(name, f"entry #{i + 1} is {_describe(v)}; expected a non-empty annotator id")
        if allowed is None and len(set(map(str, values))) != len(values):
            dupes = sorted(k for k, c in Counter(v for v in values if isinstance(v, str)).items() if c > 1)
            if dupes:
                report(name, f"annotator(s) {', '.join(dupes)} rated this scenario more than once")

    if "ratings" in lengths:
        for name in ("modalities", "annotators"):
            if name in lengths and lengths[name] != lengths["ratings"]:
                report(name, f"has {lengths[name]} entries but ratings has {lengths['ratings']}")

    for name, allowed in (("split", SPLITS), ("image_source", IMAGE_SOURCES), ("qc", QC_FLAGS)):
        v = rec.get(name)
        if v is not None and v not in allowed:
            report(name, f"{_describe(v)} is not one of {', '.join(allowed)}")


def validate_records(file_name: str, records: list[tuple[str, dict]]) -> list[Problem]:
    """Every field rule on every record, plus the cross-record rules (unique ids, splits)."""
    problems: list[Problem] = []
    if not records:
        problems.append(Problem(file_name, "the dataset has no records"))
        return problems

    seen_ids: dict[str, str] = {}
    splits_by_image: dict[str, set] = {}
    n_with_split = 0
    for label, rec in records:
        sid = rec.get("scenario_id")
        where = f"scenario_id={sid}" if isinstance(sid, str) and sid.strip() else label

        def report(fld: str, msg: str, _where=where) -> None:
            problems.append(Problem(file_name, msg, _where, fld))

        _check_record(rec, report)
        if isinstance(sid, str) and sid.strip():
            if sid in seen_ids:
                report("scenario_id", f"duplicate id (first at {seen_ids[sid]})")
            else:
                seen_ids[sid] = label
        split = rec.get("split")
        if split is not None:
            n_with_split += 1
            if isinstance(rec.get("image_id"), str):
                splits_by_image.setdefault(rec["image_id"], set()).add(split)

    if 0 < n_with_split < len(records):
        problems.append(Problem(
            file_name,
            f"'split' is set on {n_with_split} of {len(records)} records; set it on all or none",
            field="split",
        ))
    for image_id, splits in splits_by_image.items():
        if len(splits) > 1:
            problems.append(Problem(
                file_name,
                f"image {image_id} has scenarios in both train and test (splits must be image-disjoint)",
                f"image_id={image_id}", "split",
            ))
    return problems


# --------------------------------------------------------------------------- images

def index_images(root: Path) -> tuple[dict[str, Path], list[Problem]]:
    """Map image_id -> file under ``images/``; an id with two files is ambiguous."""
    image_dir = root / IMAGE_DIR
    if not image_dir.is_dir():
        return {}, [Problem(f"{IMAGE_DIR}/", "missing images directory")]
    found: dict[str, Path] = {}
    problems: list[Problem] = []
    with os.scandir(image_dir) as it:
        for entry in it:
            stem, suffix = os.path.splitext(entry.name)
            if suffix.lower() not in IMAGE_SUFFIXES or not entry.is_file():
                continue
            if stem in found:
                problems.append(Problem(
                    f"{IMAGE_DIR}/{entry.name}", f"image {stem} has more than one file ({found[stem].name})",
                    f"image_id={stem}",
                ))
            else:
                found[stem] = Path(entry.path)
    return found, problems


def _decode_problem(path: Path) -> str | None:
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()  # full decode: verify() misses truncated pixel data
            if im.width < 1 or im.height < 1:
                return "image has no pixels"
    except Exception as err:  # PIL raises many types for bad files
        return f"cannot decode image: {type(err).__name__}: {err}"
    return None


def check_image_files(image_ids: Iterable[str], images: dict[str, Path], decode: bool = True,
                 workers: int | None = None) -> list[Problem]:
    """Every referenced image exists (and, with ``decode``, decodes fully)."""
    problems: list[Problem] = []
    needed = sorted(set(image_ids))
    present = []
    for image_id in needed:
        if image_id in images:
            present.append(image_id)
        else:
            problems.append(Problem(
                f"{IMAGE_DIR}/", f"no image file {image_id}.(png|jpg|jpeg|webp)", f"image_id={image_id}", "image_id",
            ))
    if decode and present:
        with ThreadPoolExecutor(max_workers=workers or min(8, (os.cpu_count() or 1) * 2)) as pool:
            results = pool.map(lambda i: _decode_problem(images[i]), present)
            for image_id, msg in zip(present, results):
                if msg:
                    problems.append(Problem(f"{IMAGE_DIR}/{images[image_id].name}", msg, f"image_id={image_id}"))
    return problems


# --------------------------------------------------------------------------- derived columns

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
                   test_fraction: float = DEFAULT_TEST_FRACTION) -> dict[str, str]:
    """Deterministic image-disjoint split: images sorted by a seeded hash, the first
    ``round(test_fraction * n)`` go to test. Independent of record order and of
    the process (no Python ``hash``), so the same ids and seed always give the same split."""
    unique = sorted(set(image_ids))
    keyed = sorted(unique, key=lambda i: hashlib.sha256(f"{seed}\x00{i}".encode()).hexdigest())
    n_test = int(round(test_fraction * len(unique)))
    test = set(keyed[:n_test])
    return {i: ("test" if i in test else "train") for i in unique}


def _frame_from_records(records: list[dict], split_seed: int, test_fraction: float) -> pd.DataFrame:
    """Validated records -> frame with typed fields and the derived columns, in one pass."""
    columns: dict[str, list] = {name: [] for name in FIELDS}
    score, modality, n_ratings = [], [], []
    extra = sorted({k for rec in records for k in rec.keys()} - set(FIELDS))
    for name in extra:
        columns[name] = []
    for rec in records:
        for name, col in columns.items():
            col.append(rec.get(name))
        ratings = [int(r) for r in rec["ratings"]]
        columns["ratings"][-1] = ratings
        columns["modalities"][-1] = list(rec["modalities"])
        columns["annotators"][-1] = list(rec["annotators"])
        lab = rec["normbank_label"]
        columns["normbank_label"][-1] = None if lab is None or lab != lab else int(lab)  # lab != lab: NaN
        n_ratings.append(len(ratings))
        score.append(sum(ratings) / len(ratings))
        modality.append(majority_modality(rec["modalities"]))
    frame = pd.DataFrame(columns)
    frame["normbank_label"] = pd.array(columns["normbank_label"], dtype="Int8")
    frame["score"] = np.asarray(score, dtype="float64")
    frame["modality"] = modality
    frame["n_ratings"] = np.asarray(n_ratings, dtype="int16")
    frame["list_size"] = frame.groupby("image_id", sort=False)["scenario_id"].transform("size").astype("int16")
    if frame["split"].isna().all():
        assignment = split_by_image(frame["image_id"], split_seed, test_fraction)
        frame["split"] = frame["image_id"].map(assignment)
    return frame


# --------------------------------------------------------------------------- public API

@dataclass
class Dataset:
    """A validated dataset: the scenarios frame (fields + derived columns) and its images."""

    root: Path
    scenarios: pd.DataFrame
    images: dict[str, Path] = field(repr=False)
    source_file: str = "scenarios.parquet"

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

    def summary(self) -> dict[str, Any]:
        s = self.scenarios
        all_ratings = np.concatenate(s["ratings"].map(np.asarray).to_numpy()) if len(s) else np.array([])
        annotators = {a for lst in s["annotators"] for a in lst}
        list_sizes = s.groupby("image_id").size()
        return {
            "root": str(self.root),
            "file": self.source_file,
            "images": int(s["image_id"].nunique()),
            "scenarios": int(len(s)),
            "mean_list_size": float(list_sizes.mean()),
            "list_size_histogram": {int(k): int(v) for k, v in list_sizes.value_counts().sort_index().items()},
            "annotators": len(annotators),
            "ratings": int(all_ratings.size),
            "rating_histogram": {int(k): int(v) for k, v in zip(*np.unique(all_ratings, return_counts=True))},
            "modality_histogram": {k: int(v) for k, v in s["modality"].value_counts().sort_index().items()},
            "split": {k: int(v) for k, v in s.groupby("split")["image_id"].nunique().items()},
        }


def load_dataset(root: str | os.PathLike, *, check_images: bool = True, decode_images: bool = True,
                 split_seed: int = DEFAULT_SPLIT_SEED,
                 test_fraction: float = DEFAULT_TEST_FRACTION) -> Dataset:
    """Read and validate a dataset directory; raise :class:`DatasetError` listing every problem.

    ``check_images`` checks that each referenced image file exists and (with
    ``decode_images``) decodes; turn it off for fast metadata-only loads.
    """
    root = Path(root)
    path, labelled, problems = read_records(root)
    if path is not None:
        problems += validate_records(path.name, labelled)
    images: dict[str, Path] = {}
    if root.is_dir():
        images, image_problems = index_images(root)
        if check_images and path is not None:
            problems += image_problems
            if (root / IMAGE_DIR).is_dir():
                ids = [r["image_id"] for _, r in labelled if isinstance(r.get("image_id"), str)]
                problems += check_image_files(ids, images, decode=decode_images)
    if problems:
        raise DatasetError(root, problems)
    frame = _frame_from_records([r for _, r in labelled], split_seed, test_fraction)
    return Dataset(root=root, scenarios=frame, images=images, source_file=path.name)



def write_dataset(frame: pd.DataFrame, root: str | os.PathLike, fmt: str = "parquet") -> Path:
    """Write the release-format fields of ``frame`` as ``root/scenarios.<fmt>``, atomically.

    Derived columns are dropped (they are recomputed on load); images are the
    caller's to write under ``root/images/``. Writing one format removes the other
    so the directory never holds two scenario files.
    """
    if fmt not in ("parquet", "jsonl"):
        raise ValueError(f"fmt must be 'parquet' or 'jsonl', not {fmt!r}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    cols = [c for c in FIELDS if c in frame.columns]
    missing = [c for c in REQUIRED_FIELDS if c not in frame.columns]
    if missing:
        raise ValueError(f"frame lacks required fields: {', '.join(missing)}")
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
        elif v is pd.NA or (isinstance(v, float) and math.isnan(v)):
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
    }
    schema = pa.schema([(c, types[c]) for c in cols])
    table = pa.Table.from_pylist(records, schema=schema)
    pq.write_table(table, path, compression="zstd")


# --------------------------------------------------------------------------- CLI

def format_summary(summary: dict[str, Any]) -> str:
    hist = lambda d: ", ".join(f"{k}: {v}" for k, v in d.items())  # noqa: E731
    return "\n".join([
        f"dataset {summary['root']} ({summary['file']}) is valid",
        f"  images:      {summary['images']}",
        f"  scenarios:   {summary['scenarios']} (mean list size {summary['mean_list_size']:.2f})",
        f"  list sizes:  {hist(summary['list_size_histogram'])}",
        f"  annotators:  {summary['annotators']} ({summary['ratings']} ratings)",
        f"  ratings:     {hist(summary['rating_histogram'])}",
        f"  modality:    {hist(summary['modality_histogram'])} (majority label per scenario)",
        f"  split:       {hist(summary['split'])} (images)",
    ])


def _cmd_validate(args: argparse.Namespace) -> int:
    dataset = load_dataset(args.dir, decode_images=not args.no_decode)
    print(format_summary(dataset.summary()))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "validate", help="check a dataset directory against the release format",
        description="Check every record and image of a dataset; list every problem found. Writes nothing.",
    )
    p.add_argument("dir", help="dataset directory (scenarios.parquet or scenarios.jsonl + images/)")
    p.add_argument("--no-decode", action="store_true", help="check that images exist, but skip decoding them")
    p.set_defaults(func=_cmd_validate)
