"""What a finished run writes: adapter, head, predictions, calibration, metrics and the train log."""

from __future__ import annotations

import contextlib
import csv
import io
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from mmscale_core.data import Dataset
from mmscale_core.errors import MmscaleError
from mmscale_core.io import atomic_path, replace_dir, write_json, write_parquet, write_text
from mmscale_core.losses import make_objective
from mmscale_core.models.heads import ScoringModel
from mmscale_core.training.calibration import apply_calibration, fit_calibration
from mmscale_core.training.checkpoint import trainable_state
from mmscale_core.training.config import (
    ADAPTER_DIR, CALIBRATION_FILE, HEAD_FILE, LOG_FILE, METRICS_FILE, PREDICTION_COLUMNS, PREDICTIONS_FILE,
    TrainConfig,
)
from mmscale_core.training.scoring import score_scenarios


def evaluate_predictions(predictions: pd.DataFrame, frame: pd.DataFrame, scale_col: str,
                         split: str = "test") -> dict[str, Any]:
    """``evaluate_lists`` on one split (lists of >= 2 and of >= 1), plus modality accuracy if predicted."""
    from mmscale_core.metrics import evaluate_lists, modality_scores, to_metrics_dict

    joined = predictions.assign(true=frame["score"].to_numpy(), true_modality=frame["modality"].to_numpy())
    part = joined[joined["split"] == split].rename(columns={"score": "pred", "true": "score"})
    result: dict[str, Any] = {"split": split, "ranking_col": "score", "scale_col": scale_col,
                              "n_scenarios": int(len(part))}
    scale = "pred" if scale_col == "score" else scale_col
    for min_size in (2, 1):
        key = f"min_list_size_{min_size}"
        try:
            table = evaluate_lists(part, pred_col="pred", scale_col=scale, min_list_size=min_size)
            result[key] = to_metrics_dict(table)
        except MmscaleError as err:
            result[key] = {"error": str(err)}
    if part["modality_pred"].notna().all() and len(part):
        result["modality"] = modality_scores(part["true_modality"].tolist(), part["modality_pred"].tolist())
    return result


def save_model_outputs(model: ScoringModel, config: TrainConfig, run_dir: Path) -> None:
    """``adapter/`` (peft format) and ``head.safetensors`` (every other trained tensor)."""
    from safetensors.torch import save_file

    adapter_names: set[str] = set()
    if hasattr(model.backbone, "peft_config"):
        tmp = run_dir / (ADAPTER_DIR + ".tmp")
        if tmp.exists():
            shutil.rmtree(tmp)
        model.backbone.save_pretrained(str(tmp))
        replace_dir(tmp, run_dir / ADAPTER_DIR)
        adapter_names = {f"backbone.{n}" for n, p in model.backbone.named_parameters() if p.requires_grad}
    head = {n: t.contiguous() for n, t in trainable_state(model).items() if n not in adapter_names}
    with atomic_path(run_dir / HEAD_FILE) as tmp_file:
        save_file(head, str(tmp_file))


def write_log(path: Path, rows: list[dict[str, Any]]) -> None:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


def write_run_outputs(model: ScoringModel, config: TrainConfig, dataset: Dataset, frame: pd.DataFrame,
                      run_dir: Path, log_rows: list[dict[str, Any]], autocast=contextlib.nullcontext,
                      progress: bool = True, predictions: pd.DataFrame | None = None) -> None:
    """Adapter, head, predictions (scored here unless given), calibration, metrics and log."""
    save_model_outputs(model, config, run_dir)
    if predictions is None:
        predictions = score_scenarios(model, dataset, frame, list_size=config.max_list_size,
                                      lists_per_batch=config.predict_lists_per_batch,
                                      max_image_side=config.max_image_side, progress=progress, autocast=autocast)
    calibration = fit_calibration(predictions, frame)
    write_json(run_dir / CALIBRATION_FILE, calibration)
    predictions["calibrated_score"] = apply_calibration(calibration, predictions["score"])
    predictions = predictions[list(PREDICTION_COLUMNS)]
    write_parquet(run_dir / PREDICTIONS_FILE, predictions)
    on_scale = make_objective(config.objective, config.aux_mse, config.modality_weight).on_score_scale
    metrics = evaluate_predictions(predictions, frame, "score" if on_scale else "calibrated_score")
    write_json(run_dir / METRICS_FILE, {"config": config.to_dict(), "calibration_split": calibration["fitted_on"],
                                        **metrics})
    if log_rows:
        write_log(run_dir / LOG_FILE, log_rows)
