"""Prediction files: the upstream release's inference JSONL (written and read) and any table of
``scenario_id`` + prediction that ``mmscale evaluate`` scores.

The release's ``src/run_model.py`` writes one JSON object per scenario with the
fields :data:`UPSTREAM_FIELDS`; ``prediction`` is the parsed 1-5 rating, or null
when the answer could not be parsed. ``mmscale predict --format upstream``
writes the same rows for a run of ours (``provider: mmscale``, ``prompt_type:
trained``, ``prediction`` = the run's calibrated 1-5 score), so the authors'
own evaluators score it unchanged, and :func:`read_predictions` reads theirs
(and parquet / CSV / JSONL files of any model) for ``mmscale evaluate``.

Reading collects every problem (file, line or row, scenario_id, field) before
failing, as dataset validation does: non-numeric predictions, rows without a
scenario_id, duplicated scenario ids. A null / empty prediction is not a
problem: it means "no prediction" and the scenario is left out of the metrics.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from mmscale_core.errors import MmscaleError
from mmscale_core.io import atomic_open
from mmscale_core.jsonl import jsonl_objects

UPSTREAM_FIELDS = ("image_id", "scenario_id", "text", "gold_rating", "modality", "model_id", "provider",
                   "prompt_type", "raw_output", "error", "prediction")
PREDICTION_COLUMNS = ("prediction", "pred")  # looked up in this order unless --pred-col names one
FORMATS = {".parquet": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
MAX_LISTED = 20


class PredictionFileError(MmscaleError):
    """Every problem of one prediction file, one per line."""

    def __init__(self, path: str | os.PathLike, problems: list[str]):
        self.problems = problems
        shown = "\n  ".join(problems[:MAX_LISTED])
        more = f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
        super().__init__(f"{path}: {len(problems)} problem(s):\n  {shown}{more}")


@dataclass(frozen=True)
class Predictions:
    """A read prediction file: one row per scenario_id (``prediction`` NaN = none), where each came from."""

    path: Path
    column: str  # the prediction column used
    frame: pd.DataFrame  # scenario_id, prediction (float, NaN = no prediction), where, gold_rating if present


def model_id_of(config: Any) -> str:
    """``model_id`` of a run in the upstream rows: backbone, objective and seed of its TrainConfig."""
    return f"mmscale/{config.backbone}+{config.objective}/seed{config.seed}"


def upstream_rows(predictions: pd.DataFrame, scenarios: pd.DataFrame, model_id: str) -> pd.DataFrame:
    """The release's inference rows for predictions of ours (scenario_id, score, calibrated_score)
    on the dataset ``scenarios`` (image_id, scenario, score, modality): gold_rating is the dataset's
    score, prediction the calibrated 1-5 score, raw_output the raw score as text."""
    data = scenarios.set_index("scenario_id")
    ids = predictions["scenario_id"]
    missing = ~ids.isin(data.index)
    if missing.any():
        raise MmscaleError(f"{int(missing.sum())} prediction(s) for scenarios not in the dataset, "
                           f"e.g. {ids[missing].iloc[0]!r}")
    rows = data.loc[ids]
    return pd.DataFrame({
        "image_id": rows["image_id"].to_numpy(), "scenario_id": ids.to_numpy(), "text": rows["scenario"].to_numpy(),
        "gold_rating": rows["score"].astype(float).to_numpy(), "modality": rows["modality"].to_numpy(),
        "model_id": model_id, "provider": "mmscale", "prompt_type": "trained",
        "raw_output": [repr(float(s)) for s in predictions["score"]], "error": None,
        "prediction": predictions["calibrated_score"].astype(float).to_numpy(),
    }, columns=list(UPSTREAM_FIELDS))


def write_upstream_predictions(path: str | os.PathLike, rows: pd.DataFrame) -> None:
    """Write :func:`upstream_rows` as JSONL (one object per line, the fields in the release's order)."""
    with atomic_open(path, "w", encoding="utf-8") as fh:
        for record in rows[list(UPSTREAM_FIELDS)].to_dict(orient="records"):
            fh.write(json.dumps({k: _plain(v) for k, v in record.items()}, ensure_ascii=False) + "\n")


def _plain(value: Any) -> Any:
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return None if math.isnan(value) else float(value)
    return value


def _read_jsonl(path: Path, problems: list[str]) -> tuple[list[dict], list[str]]:
    records, where = [], []
    with open(path, "rb") as fh:
        for number, record, wrong in jsonl_objects(fh):
            if wrong:
                problems.append(f"line {number}: {wrong}")
            else:
                records.append(record)
                where.append(f"line {number}")
    return records, where


def _load(path: Path, problems: list[str]) -> tuple[pd.DataFrame, list[str]]:
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise MmscaleError(f"{path}: unknown prediction file type {path.suffix!r}; "
                           f"use {', '.join(sorted(FORMATS))}")
    try:
        if kind == "jsonl":
            records, where = _read_jsonl(path, problems)
            return pd.DataFrame.from_records(records), where
        if kind == "csv":
            frame = pd.read_csv(path, dtype={"scenario_id": str}, keep_default_na=True)
            return frame, [f"line {i + 2}" for i in range(len(frame))]
        frame = pd.read_parquet(path)
        return frame, [f"row {i + 1}" for i in range(len(frame))]
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise MmscaleError(f"{path}: cannot read as {kind}: {err}") from None


def _number(value: Any, from_text: bool) -> tuple[float | None, str | None]:
    """(prediction or None for 'no prediction', problem or None)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None, None
    if isinstance(value, bool):
        return None, f"not a number ({value!r})"
    if isinstance(value, numbers.Real):
        value = float(value)
    elif from_text and isinstance(value, str):
        if not value.strip():
            return None, None
        try:
            value = float(value)
        except ValueError:
            return None, f"not a number ({value!r})"
    else:
        return None, f"not a number ({value!r})"
    if not math.isfinite(value):
        return None, f"not a finite number ({value!r})"
    return value, None


def read_predictions(path: str | os.PathLike, pred_col: str | None = None) -> Predictions:
    """Read a parquet / CSV / JSONL prediction file (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise MmscaleError(f"{path}: no such prediction file")
    problems: list[str] = []
    frame, where = _load(path, problems)
    if "scenario_id" not in frame.columns:
        problems.insert(0, f"no 'scenario_id' field (fields: {', '.join(map(str, frame.columns)) or 'none'})")
        raise PredictionFileError(path, problems)
    candidates = [pred_col] if pred_col else list(PREDICTION_COLUMNS)
    column = next((c for c in candidates if c in frame.columns), None)
    if column is None:
        wanted = f"--pred-col {pred_col!r}" if pred_col else "'prediction' or 'pred' (or name one with --pred-col)"
        problems.insert(0, f"no prediction field {wanted} (fields: {', '.join(map(str, frame.columns))})")
        raise PredictionFileError(path, problems)
    from_text = path.suffix.lower() == ".csv"
    ids, values, first_seen = [], [], {}
    for place, sid, raw in zip(where, frame["scenario_id"].tolist(), frame[column].tolist()):
        if not isinstance(sid, str) or not sid:
            problems.append(f"{place}: field 'scenario_id': missing or not a string ({sid!r})")
            ids.append(None)
            values.append(None)
            continue
        if sid in first_seen:
            problems.append(f"{place}: scenario_id {sid!r}: duplicate (first at {first_seen[sid]})")
        else:
            first_seen[sid] = place
        value, problem = _number(raw, from_text)
        if problem:
            problems.append(f"{place}: scenario_id {sid!r}: field {column!r}: {problem}")
        ids.append(sid)
        values.append(value)
    if problems:
        raise PredictionFileError(path, problems)
    out = pd.DataFrame({"scenario_id": ids, "prediction": pd.array(values, dtype="Float64").to_numpy(
        dtype=float, na_value=float("nan")), "where": where})
    if "gold_rating" in frame.columns:
        out["gold_rating"] = pd.to_numeric(frame["gold_rating"], errors="coerce").to_numpy()
    return Predictions(path, column, out)
