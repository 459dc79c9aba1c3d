"""What defines a training run (``TrainConfig``, saved as ``config.json``) and the names of a run's files."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmscale_core.errors import MmscaleError
from mmscale_core.losses import OBJECTIVES
from mmscale_core.models import BACKBONES, backbone_kwargs_for

CONFIG_FILE = "config.json"
CHECKPOINT_FILE = Path("checkpoint") / "last.pt"
ADAPTER_DIR = "adapter"
HEAD_FILE = "head.safetensors"
CALIBRATION_FILE = "calibration.json"
PREDICTIONS_FILE = "predictions.parquet"
LOG_FILE = "train_log.csv"
METRICS_FILE = "metrics.json"
PREDICTION_COLUMNS = ("scenario_id", "image_id", "split", "score", "calibrated_score", "modality_pred")
TUNING_MODES = ("lora", "frozen")


@dataclass
class TrainConfig:
    """Everything that defines a run; saved as ``config.json`` in the run directory."""

    data: str                                   # dataset directory (release format)
    out: str                                    # run directory
    backbone: str = "minilm-effnet"
    # e.g. image_size, max_length; shared keys plus per-backbone blocks ({qwen2-vl: {path: DIR}}),
    # resolved for ``backbone`` by ``train`` (``models.backbone_kwargs_for``)
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)
    objective: str = "lipo"                     # lipo, bpo, bce, lipo+mse, pairwise, mse
    aux_mse: float = 0.0                        # weight of the auxiliary MSE (lipo+mse defaults to 1)
    modality_weight: float = 0.0                # > 0 adds the modality head and its cross-entropy
    modality_head: bool = False                 # a modality head even with modality_weight 0 (then untrained)
    tuning: str = "lora"                        # "lora" (paper) or "frozen" (encoder frozen, heads trained)
    epochs: int = 5
    lr: float = 1e-4                            # the paper's, for the LoRA weights
    head_lr: float | None = None                # heads + fusion (randomly initialised); None: same as lr
    weight_decay: float = 0.01
    lists_per_batch: int = 1                    # the paper's batch size: one list
    grad_accum: int = 1
    max_list_size: int = 5                      # m (Fig. 8a)
    train_fraction: float = 1.0                 # f (Fig. 8b), a fraction of the training images
    head_hidden: int = 256
    head_dropout: float = 0.1
    max_grad_norm: float = 1.0                  # 0 disables clipping
    max_image_side: int = 336                   # the paper's resize cap (sec. 13), before the backbone's own resize
    predict_lists_per_batch: int = 8
    seed: int = 0
    mixed_precision: str = "no"                 # "no", "bf16", "fp16" (accelerate)
    torch_threads: int = 0                      # CPU threads for torch; 0 keeps torch's default
    feature_store: str = ""                     # frozen-tower features shared by runs (``mmscale features``)
    dataset_hash: str = ""                      # filled in by ``train``
    backbone_checkpoint: dict[str, str] = field(default_factory=dict)  # by ``train``: a VLM's directory + commit

    def validate(self) -> None:
        problems = []
        if self.backbone not in BACKBONES:
            problems.append(f"backbone {self.backbone!r} is not one of {', '.join(sorted(BACKBONES))}")
        if self.objective not in OBJECTIVES:
            problems.append(f"objective {self.objective!r} is not one of {', '.join(OBJECTIVES)}")
        if self.tuning not in TUNING_MODES:
            problems.append(f"tuning {self.tuning!r} is not one of {', '.join(TUNING_MODES)}")
        for name in ("epochs", "lists_per_batch", "grad_accum", "max_list_size", "head_hidden",
                     "max_image_side", "predict_lists_per_batch"):
            if int(getattr(self, name)) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 < self.train_fraction <= 1.0:
            problems.append(f"train_fraction must be in (0, 1], got {self.train_fraction}")
        if self.lr <= 0 or (self.head_lr is not None and self.head_lr <= 0):
            problems.append(f"lr and head_lr must be > 0, got {self.lr} and {self.head_lr}")
        if self.aux_mse < 0 or self.modality_weight < 0:
            problems.append("aux_mse and modality_weight must be >= 0")
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            problems.append(f"mixed_precision must be no, bf16 or fp16, got {self.mixed_precision!r}")
        image_size = backbone_kwargs_for(self.backbone, self.backbone_kwargs).get("image_size")
        if isinstance(image_size, int) and image_size > self.max_image_side:
            problems.append(f"backbone_kwargs.image_size {image_size} exceeds max_image_side {self.max_image_side}: "
                            f"images are capped at {self.max_image_side} px before the backbone sees them "
                            f"(raise --max-image-side)")
        if problems:
            raise MmscaleError("invalid training config: " + "; ".join(problems))

    @property
    def uses_modality_head(self) -> bool:
        return self.modality_head or self.modality_weight > 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise MmscaleError(f"unknown training config key(s): {', '.join(unknown)}")
        return cls(**values)

    @classmethod
    def load(cls, run_dir: str | os.PathLike) -> "TrainConfig":
        path = Path(run_dir) / CONFIG_FILE
        if not path.is_file():
            raise MmscaleError(f"{run_dir}: not a training run (no {CONFIG_FILE})")
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
