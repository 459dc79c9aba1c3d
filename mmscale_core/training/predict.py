"""Score any dataset in the release format with a trained run (``mmscale predict``).

A run directory (written by ``mmscale_core.training.train``; also importable as ``mmscale_core.predict``) is rebuilt
exactly: the backbone from its registry name and kwargs, the LoRA adapter with
``PeftModel.from_pretrained`` (standard peft format), the heads from
``head.safetensors`` and the isotonic calibration from ``calibration.json``.
The output has the columns of the run's own ``predictions.parquet``
(scenario_id, image_id, split, score, calibrated_score, modality_pred), so the
annotation app can compare annotators with a model on any data.

Prediction runs like training: through accelerate, on the accelerator it finds
(or ``device``), with the run's mixed precision by default (the isotonic map
was fitted on scores under that autocast), and launched with ``accelerate
launch`` each process scores its shard of the lists and the main process
writes the whole.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mmscale_core.data import Dataset, load_dataset
from mmscale_core.errors import MmscaleError
from mmscale_core.io import write_parquet
from mmscale_core.training.calibration import apply_calibration
from mmscale_core.training.checkpoint import load_trainable_state
from mmscale_core.training.config import ADAPTER_DIR, CALIBRATION_FILE, HEAD_FILE, PREDICTION_COLUMNS, TrainConfig
from mmscale_core.training.model import attach_feature_store, freeze_backbone, uses_lora
from mmscale_core.training.scoring import make_accelerator, score_scenarios


@dataclass
class TrainedRun:
    """A run loaded for inference: model (eval mode), its config and its calibration map."""

    model: "torch.nn.Module"  # noqa: F821  (ScoringModel)
    config: TrainConfig
    calibration: dict[str, list[float]]
    run_dir: Path


def load_run(run_dir: str | os.PathLike) -> TrainedRun:
    """Rebuild a finished run; a missing or unfinished run is a clear :class:`MmscaleError`."""
    import torch
    from safetensors.torch import load_file

    from mmscale_core.models import backbone_kwargs_for, load_backbone
    from mmscale_core.models.heads import ScoringModel

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise MmscaleError(f"{run_dir}: no such run directory")
    config = TrainConfig.load(run_dir)
    torch.manual_seed(config.seed)
    backbone = load_backbone(config.backbone, **backbone_kwargs_for(config.backbone, config.backbone_kwargs))
    check_same_checkpoint(config, getattr(backbone, "checkpoint", None), run_dir)
    attach_feature_store(backbone, config)
    lora = uses_lora(config, backbone)
    needed = [HEAD_FILE, CALIBRATION_FILE] + ([ADAPTER_DIR] if lora else [])
    absent = [name for name in needed if not (run_dir / name).exists()]
    if absent:
        raise MmscaleError(f"{run_dir}: the run has no {', '.join(absent)} (training did not finish; "
                           f"continue it with: mmscale train --out {run_dir} --resume ...)")
    if lora:
        from peft import PeftModel

        # trainable flags as in training (see ``freeze_backbone``); no gradients are taken here
        backbone = PeftModel.from_pretrained(backbone, str(run_dir / ADAPTER_DIR), is_trainable=True)
    else:
        freeze_backbone(backbone)
    model = ScoringModel(backbone, head_hidden=config.head_hidden, dropout=config.head_dropout,
                         modality_head=config.uses_modality_head)
    head = load_file(str(run_dir / HEAD_FILE))
    head_names = {n for n, _ in model.named_parameters() if not n.startswith("backbone.")}
    missing = sorted(head_names - set(head))
    if missing:
        raise MmscaleError(f"{run_dir / HEAD_FILE}: lacks {len(missing)} head tensor(s), e.g. {missing[0]}")
    load_trainable_state(model, head, str(run_dir / HEAD_FILE))
    calibration = json.loads((run_dir / CALIBRATION_FILE).read_text(encoding="utf-8"))
    return TrainedRun(model.eval(), config, calibration, run_dir)


def check_same_checkpoint(config: TrainConfig, loaded: dict[str, str] | None, run_dir: Path) -> None:
    """A run trained on one checkpoint is not silently applied to another (the adapter would not fit it)."""
    recorded = config.backbone_checkpoint.get("fingerprint")
    if recorded and loaded and loaded.get("fingerprint") != recorded:
        raise MmscaleError(
            f"{run_dir / 'config.json'}: backbone_checkpoint: the run was trained on "
            f"{config.backbone_checkpoint.get('path')} ({recorded}), but {loaded.get('path')} holds other files "
            f"({loaded.get('fingerprint')}); point backbone_kwargs.path at the checkpoint the run was trained on")


def predict_dataset(run: TrainedRun, dataset: Dataset, *, lists_per_batch: int | None = None,
                    progress: bool = True, device: str | None = None, mixed_precision: str | None = None,
                    accelerator=None) -> pd.DataFrame:
    """Predictions for every scenario of ``dataset`` (its given or derived split is kept).

    ``mixed_precision`` defaults to the run's; ``device`` to accelerate's
    choice (this process's GPU, else the CPU); "cpu" forces the CPU. Every
    process returns the whole frame.
    """
    import torch

    frame = dataset.scenarios.reset_index(drop=True)
    cfg = run.config
    if accelerator is None:
        accelerator = make_accelerator(mixed_precision or cfg.mixed_precision, cpu=device == "cpu")
    run.model.to(accelerator.device if device in (None, "auto", "cpu") else torch.device(device))
    predictions = score_scenarios(run.model, dataset, frame, list_size=cfg.max_list_size,
                                  lists_per_batch=lists_per_batch or cfg.predict_lists_per_batch,
                                  max_image_side=cfg.max_image_side, progress=progress, accelerator=accelerator)
    predictions["calibrated_score"] = apply_calibration(run.calibration, predictions["score"])
    return predictions[list(PREDICTION_COLUMNS)]


def predict_to_file(run_dir: str | os.PathLike, data_dir: str | os.PathLike, out: str | os.PathLike,
                    *, progress: bool = True, fmt: str = "parquet", device: str | None = None,
                    mixed_precision: str | None = None) -> pd.DataFrame:
    """``mmscale predict``: validate the data first (cheap), then load the run and score; the main process writes.

    ``fmt="upstream"`` writes the release's inference JSONL instead (``mmscale_core.upstream_predictions``)."""
    dataset = load_dataset(data_dir)
    run = load_run(run_dir)
    accelerator = make_accelerator(mixed_precision or run.config.mixed_precision, cpu=device == "cpu")
    predictions = predict_dataset(run, dataset, progress=progress, device=device, accelerator=accelerator)
    if accelerator.is_main_process:
        if fmt == "upstream":
            from mmscale_core.upstream_predictions import model_id_of, upstream_rows, write_upstream_predictions

            write_upstream_predictions(out, upstream_rows(predictions, dataset.scenarios, model_id_of(run.config)))
        else:
            write_parquet(out, predictions)
    accelerator.wait_for_everyone()
    return predictions
