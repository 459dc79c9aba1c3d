"""Listwise fine-tuning of a backbone + scalar head (paper sec. 4 and Algorithm 13), top to bottom.

One run = one ``TrainConfig``. The steps, in the order the code runs them:

1. config and run directory: the directory is checked first, but nothing is written
   until the model has loaded (a missing checkpoint leaves no half-made run);
   ``config.json`` records everything, incl. the dataset hash and the VLM
   checkpoint loaded (``backbone_checkpoint``);
2. data: the training images (fraction ``train_fraction``), each image's scenarios
   shuffled and cut into lists of at most ``max_list_size`` (the paper's lists
   of 1-5 grouped by image), lists shuffled and grouped ``lists_per_batch`` at a
   time, padded with a mask (both re-drawn every epoch from ``(seed, epoch)``);
3. model: ``load_backbone`` -> LoRA with the paper's settings (or frozen) ->
   ``ScoringModel`` (scalar MLP head, optional modality head);
4. AdamW (lr 1e-4) on the trainable parameters; accelerate places the model,
   runs bf16 autocast and data parallelism (``accelerate launch``);
5. ``resume=True`` restores the last checkpoint (below) and continues after its
   epoch, ending bit-identical to an uninterrupted run on CPU;
6. the loop: forward, objective (``mmscale_core.losses``), backward,
   ``grad_accum`` micro-batches per optimizer step, tqdm with the running loss;
7. after every epoch an atomic checkpoint (trainable weights, optimizer, every
   RNG, the log) in ``checkpoint/last.pt``;
8. outputs: ``adapter/`` (peft ``save_pretrained``: LoRA + fully-trained
   backbone modules such as the fusion projection), ``head.safetensors``,
   ``predictions.parquet`` (scenario_id, image_id, split, score = raw head
   output, calibrated_score = isotonic map to 1-5 fitted on the val split, else train,
   modality_pred; the held-out scenarios and those of the images trained on), ``calibration.json``, ``train_log.csv``, ``metrics.json``
   (``evaluate_lists`` on the test split, with CIs, chance and oracle). The
   predictions are scored by every process, each its shard of the lists,
   gathered to all (``score_scenarios``); the main process writes.

The loop uses only the ``Backbone`` interface (plus two optional hooks:
``modules_to_save``, backbone parts trained in full, and ``warm_cache``,
precomputing a frozen image trunk), so the embedded CPU backbones and the
paper's 7B VLMs train through the same code.

Determinism: ``set_seed`` (python, numpy, torch), a seeded generator for
ListMLE's tie-breaking, epoch data order derived from (seed, epoch),
``torch.use_deterministic_algorithms`` and image features computed in a fixed
order, so the same seed gives identical predictions on CPU (for the same
``torch_threads``). Note that ``train`` sets these process-wide.

GPUs: ``accelerate launch -m mmscale_core.cli train ... --mixed-precision bf16``
runs data parallel over every GPU (each process takes an equal share of each
epoch's batches); a single process uses the one accelerator it finds.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import math
import os
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mmscale_core.errors import MmscaleError
from mmscale_core.io import atomic_path, write_json, write_parquet, write_text
from mmscale_core.models._torchvision_compat import ensure_torchvision_importable

ensure_torchvision_importable()  # peft and accelerate import transformers, which imports torchvision

import torch  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from mmscale_core.data import Dataset, dataset_fingerprint, load_dataset  # noqa: E402,F401 (fingerprint: re-exported)
from mmscale_core.losses import OBJECTIVES, make_objective  # noqa: E402
from mmscale_core.models import BACKBONES, backbone_kwargs_for, load_backbone  # noqa: E402
from mmscale_core.models.base import KeyedImage, ListBatch, resize_max_side  # noqa: E402
from mmscale_core.models.heads import MODALITY_LABELS, ScoringModel  # noqa: E402

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


# =========================================================================== 1. config

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


# =========================================================================== 2. data

@dataclass(frozen=True)
class ScenarioList:
    """One training list: an image and 1..m of its scenarios (row positions in the frame)."""

    image_id: str
    rows: tuple[int, ...]


def select_training_images(frame: pd.DataFrame, fraction: float, seed: int) -> list[str]:
    """The train split's images, or a seeded random ``fraction`` of them (at least one)."""
    images = sorted(frame.loc[frame["split"] == "train", "image_id"].unique())
    if not images:
        raise MmscaleError("the dataset has no training images (split == 'train')")
    if fraction >= 1.0:
        return images
    n = max(1, int(round(fraction * len(images))))
    chosen = np.random.default_rng([seed, 0x5EED]).choice(len(images), size=n, replace=False)
    return [images[i] for i in sorted(chosen)]


def make_lists(frame: pd.DataFrame, image_ids: list[str], max_list_size: int,
               rng: np.random.Generator | None = None) -> list[ScenarioList]:
    """Each image's scenarios (shuffled with ``rng``, else in frame order) cut into ceil(n/m) near-equal lists of <= m."""
    positions = frame.groupby("image_id", sort=True).indices
    lists = []
    for image_id in image_ids:
        rows = positions[image_id] if rng is None else rng.permutation(positions[image_id])
        for chunk in np.array_split(rows, math.ceil(len(rows) / max_list_size)):
            lists.append(ScenarioList(image_id, tuple(int(r) for r in chunk)))
    return lists


def epoch_batches(frame: pd.DataFrame, image_ids: list[str], config: TrainConfig,
                  epoch: int) -> list[list[ScenarioList]]:
    """This epoch's batches of lists; a pure function of (seed, epoch), which is what makes resume exact."""
    rng = np.random.default_rng([config.seed, epoch])
    lists = make_lists(frame, image_ids, config.max_list_size, rng)
    order = rng.permutation(len(lists))
    lists = [lists[i] for i in order]
    k = config.lists_per_batch
    return [lists[i:i + k] for i in range(0, len(lists), k)]


class ImageLoader:
    """Dataset images as RGB, downscaled to the paper's cap; the last ones kept (lists revisit images).

    ``lazy=True`` (backbones with an image cache) gives :class:`KeyedImage`
    handles instead, decoded by the backbone only when its cache misses.
    """

    def __init__(self, dataset: Dataset, max_side: int, keep: int = 256, lazy: bool = False):
        self.dataset, self.max_side, self.keep, self.lazy = dataset, max_side, keep, lazy
        self._recent: dict[str, Any] = {}
        self._keyed: dict[str, KeyedImage] = {}

    def __call__(self, image_id: str):
        if self.lazy:
            if image_id not in self._keyed:
                self._keyed[image_id] = KeyedImage(self.dataset.image_path(image_id), self.max_side)
            return self._keyed[image_id]
        image = self._recent.pop(image_id, None)
        if image is None:
            image = resize_max_side(self.dataset.load_image(image_id), self.max_side)
        self._recent[image_id] = image
        if len(self._recent) > self.keep:
            self._recent.pop(next(iter(self._recent)))
        return image


def has_image_cache(model: ScoringModel) -> bool:
    """Whether the backbone caches image features (then it takes :class:`KeyedImage` handles)."""
    return hasattr(model.backbone, "warm_cache")


def warm_caches(model: ScoringModel, frame: pd.DataFrame, images: ImageLoader, progress: bool = True) -> None:
    """Let a backbone with cached frozen towers (``warm_cache``, ``warm_text_cache``) see all inputs up front.

    Sorted inputs and fixed batches make the cached features the same in every
    process that uses the same data (a resumed run, ``mmscale predict``, the
    feature store). Backbones without the methods (the VLMs) are left alone.
    """
    warm_text = getattr(model.backbone, "warm_text_cache", None)
    if warm_text is not None:
        warm_text(frame["scenario"])
    warm = getattr(model.backbone, "warm_cache", None)
    if warm is None:
        return
    ids = sorted(set(frame["image_id"]))
    warm(images(i) for i in tqdm(ids, desc="image features", unit="img", disable=not progress, leave=False))


def collate(lists: list[ScenarioList], frame: pd.DataFrame,
            images: ImageLoader) -> tuple[ListBatch, torch.Tensor, torch.Tensor]:
    """Padded ``ListBatch`` + targets (B, n_max) human scores + modality class ids (-1 in padding)."""
    scenario = frame["scenario"].to_numpy()
    score = frame["score"].to_numpy(dtype=np.float32)
    labels = frame["modality"].to_numpy()
    label_index = {label: i for i, label in enumerate(MODALITY_LABELS)}
    batch = ListBatch.from_lists([images(item.image_id) for item in lists],
                                 [scenario[list(item.rows)].tolist() for item in lists])
    targets = torch.zeros(batch.mask.shape, dtype=torch.float32)
    modality = torch.full(batch.mask.shape, -1, dtype=torch.long)
    for b, item in enumerate(lists):
        rows = list(item.rows)
        targets[b, : len(rows)] = torch.from_numpy(score[rows])
        modality[b, : len(rows)] = torch.tensor([label_index.get(m, -1) for m in labels[rows]])
    return batch, targets, modality


# =========================================================================== 3. model

def build_model(config: TrainConfig) -> ScoringModel:
    """Backbone (+ LoRA with the paper's settings, or frozen) + heads. Seeds torch first."""
    torch.manual_seed(config.seed)
    backbone = load_backbone(config.backbone, **config.backbone_kwargs)
    attach_feature_store(backbone, config)
    extra = list(getattr(backbone, "modules_to_save", []) or [])  # backbone parts trained in full
    if uses_lora(config, backbone):
        from mmscale_core.models.lora import apply_lora

        backbone = apply_lora(backbone, backbone.lora_target_modules, modules_to_save=extra or None)
    else:
        freeze_backbone(backbone)
    return ScoringModel(backbone, head_hidden=config.head_hidden, dropout=config.head_dropout,
                        modality_head=config.uses_modality_head)


def freeze_backbone(backbone) -> None:
    """A frozen run's backbone: nothing trainable but its ``modules_to_save`` (e.g. the fusion).

    ``load_run`` sets the same flags as training did, because the frozen towers
    cache their features (computed outside autocast) only when frozen: a
    reloaded run computes exactly what the run computed.
    """
    backbone.requires_grad_(False)
    for name in getattr(backbone, "modules_to_save", []) or []:
        backbone.get_submodule(name).requires_grad_(True)


def attach_feature_store(backbone, config: TrainConfig) -> None:
    """Fill the backbone's frozen-tower caches from ``config.feature_store`` when there is one.

    The store is only a cache: a missing one is skipped (the towers compute
    their features themselves), one built with other settings is an error.
    """
    if not config.feature_store or not hasattr(backbone, "warm_cache"):
        return
    if not Path(config.feature_store).is_dir():
        print(f"feature store {config.feature_store} not found: computing features in this run")
        return
    from mmscale_core.models.feature_store import load_feature_store

    load_feature_store(config.feature_store, backbone, config.backbone_kwargs, config.max_image_side)


def uses_lora(config: TrainConfig, backbone) -> bool:
    """LoRA unless the run is frozen or the backbone has nothing to put it on (a fully frozen text tower)."""
    return config.tuning == "lora" and bool(backbone.lora_target_modules)


def parameter_groups(model: ScoringModel, config: TrainConfig) -> list[dict[str, Any]]:
    """AdamW groups: LoRA weights at ``lr``; new, fully trained weights (heads, fusion) at ``head_lr`` (default ``lr``).

    The paper uses one learning rate for everything; a separate one for the
    randomly initialised parts lets a small head learn in few steps while the
    pretrained encoder moves at the paper's pace.
    """
    lora, new = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (lora if "lora_" in name else new).append(p)
    head_lr = config.head_lr if config.head_lr is not None else config.lr
    return [group for group in ({"params": lora, "lr": config.lr}, {"params": new, "lr": head_lr})
            if group["params"]]


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().cpu().clone() for name, p in model.named_parameters() if p.requires_grad}


def load_trainable_state(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    params = dict(model.named_parameters())
    missing = sorted(set(state) - set(params))
    if missing:
        raise MmscaleError(f"{source}: {len(missing)} tensor(s) do not belong to this model, e.g. {missing[0]}")
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value.to(params[name].device, params[name].dtype))


# =========================================================================== 6. checkpoint

def rng_state(loss_generator: torch.Generator) -> dict[str, Any]:
    state = {
        "python": random.getstate(), "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(), "loss_generator": loss_generator.get_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any], loss_generator: torch.Generator) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    loss_generator.set_state(state["loss_generator"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """One file, written to a temporary name and renamed: a kill leaves the old or the new checkpoint."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # torch raises several types for a corrupt file
        raise MmscaleError(f"{path}: cannot read checkpoint: {err}") from None


# =========================================================================== 7. predictions

def make_accelerator(mixed_precision: str = "no", *, cpu: bool = False, **kwargs):
    """An ``Accelerator``; in a single process, one with other precision settings than the last is allowed.

    accelerate keeps one process-wide state and refuses a second precision in
    the same process (a notebook kernel or test session training a bf16 run
    after an fp32 one, or predicting with the run's precision). With one
    process nothing else holds that state, so it is reset; launched runs use
    one setting throughout.
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, PartialState

    state = AcceleratorState._shared_state
    if state and PartialState().num_processes == 1 and (
            state.get("_mixed_precision") != mixed_precision or (cpu and PartialState().device.type != "cpu")):
        AcceleratorState._reset_state(reset_partial_state=cpu)
    return Accelerator(mixed_precision=mixed_precision, cpu=cpu, **kwargs)


def shard(items: list, rank: int, world: int) -> list:
    """Process ``rank``'s share of ``items`` out of ``world``: every ``world``-th item from ``rank``, deterministic."""
    return items[rank::world]


def gather_list_scores(mine: list, accelerator=None) -> list:
    """Every process's per-list results, on every process (``accelerate.utils.gather_object``)."""
    if accelerator is None or accelerator.num_processes == 1:
        return mine
    from accelerate.utils import gather_object

    return gather_object(mine)


@torch.no_grad()
def score_scenarios(model: ScoringModel, dataset: Dataset, frame: pd.DataFrame, *, list_size: int = 5,
                    lists_per_batch: int = 8, max_image_side: int = 336, progress: bool = True,
                    autocast=contextlib.nullcontext, accelerator=None) -> pd.DataFrame:
    """Raw scores (and modality predictions) for every row of ``frame``, in ``frame``'s order.

    Each image's scenarios are scored in lists of at most ``list_size`` in a
    fixed order, so the result does not depend on anything random. With an
    ``accelerator`` its autocast is used and, launched on several processes,
    each scores its ``shard`` of the batches and all results are gathered
    (every process returns the whole frame). The model must already be on the
    accelerator's device.
    """
    was_training = model.training
    model.eval()
    if accelerator is not None:
        autocast, rank, world = accelerator.autocast, accelerator.process_index, accelerator.num_processes
    else:
        rank, world = 0, 1
    lists = make_lists(frame, sorted(frame["image_id"].unique()), list_size)
    images = ImageLoader(dataset, max_image_side, lazy=has_image_cache(model))
    warm_caches(model, frame, images, progress and rank == 0)
    batches = [lists[i:i + lists_per_batch] for i in range(0, len(lists), lists_per_batch)]
    mine = []  # (frame rows, raw scores, modality labels or None), one per list
    for group in tqdm(shard(batches, rank, world), desc="predict", unit="batch",
                      disable=not progress or rank != 0, leave=False):
        batch, _, _ = collate(group, frame, images)
        with autocast():
            out, logits = model(batch)
        out = out.float().cpu().numpy()
        for b, item in enumerate(group):
            n = len(item.rows)
            labels = None if logits is None else [MODALITY_LABELS[i] for i in logits[b, :n].argmax(-1).tolist()]
            mine.append((list(item.rows), out[b, :n].tolist(), labels))
    model.train(was_training)
    scores = np.full(len(frame), np.nan)
    modality = np.full(len(frame), None, dtype=object)
    for rows, values, labels in gather_list_scores(mine, accelerator):
        scores[rows] = values
        if labels is not None:
            modality[rows] = labels
    return pd.DataFrame({
        "scenario_id": frame["scenario_id"].to_numpy(), "image_id": frame["image_id"].to_numpy(),
        "split": frame["split"].to_numpy(), "score": scores, "modality_pred": modality,
    })


def fit_calibration(predictions: pd.DataFrame, frame: pd.DataFrame) -> dict[str, Any]:
    """Isotonic map raw score -> 1-5 (``metrics.fit_score_calibrator``), fitted on the val split
    when the dataset has one (scenarios the model was not trained on), else on the train split;
    ``fitted_on`` says which.

    Stored as its breakpoints; applying it is linear interpolation with
    clipping, exactly what scikit-learn's ``IsotonicRegression.predict`` does.
    """
    from mmscale_core.metrics import fit_score_calibrator

    split = predictions["split"].to_numpy()
    fitted_on = "val" if (split == "val").any() else "train"
    rows = split == fitted_on
    iso = fit_score_calibrator(predictions["score"].to_numpy()[rows], frame["score"].to_numpy()[rows])
    return {"x": iso.X_thresholds_.tolist(), "y": iso.y_thresholds_.tolist(), "fitted_on": fitted_on}


def apply_calibration(calibration: dict[str, list[float]], scores: np.ndarray) -> np.ndarray:
    return np.interp(np.asarray(scores, dtype=np.float64), calibration["x"], calibration["y"])


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


def replace_dir(tmp: Path, final: Path) -> None:
    """Move a fully written directory into place (old copy removed only after the new one is there)."""
    old = final.with_name(final.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    if old.exists():
        shutil.rmtree(old)


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


# =========================================================================== the run

def check_run_dir(config: TrainConfig, resume: bool, overwrite: bool) -> None:
    """Refuse a run directory that holds another run (unless ``overwrite``) or, to resume, other settings.

    Only reads: ``train`` calls it before the model loads and again (through
    ``prepare_run_dir``) before writing, then with the checkpoint record filled in.
    """
    run_dir = Path(config.out)
    if not (run_dir / CONFIG_FILE).exists():
        return
    if resume:
        saved = TrainConfig.load(run_dir).to_dict()
        new = config.to_dict()
        if not config.backbone_checkpoint:  # not known before the model has loaded
            new["backbone_checkpoint"] = saved.get("backbone_checkpoint")
        if saved != new:
            diff = sorted(k for k, v in new.items() if saved.get(k) != v)
            raise MmscaleError(f"{run_dir}: cannot resume, the config differs in: {', '.join(diff)} "
                               f"(the dataset hash differs if the data changed, backbone_checkpoint if the "
                               f"checkpoint's files did)")
    elif not overwrite:
        raise MmscaleError(f"{run_dir}: already holds a run; pass --resume to continue it or --overwrite")


def prepare_run_dir(config: TrainConfig, resume: bool, overwrite: bool) -> Path:
    """``check_run_dir``, then clear an overwritten run and create the directory: the run's first write."""
    run_dir = Path(config.out)
    check_run_dir(config, resume, overwrite)
    if (run_dir / CONFIG_FILE).exists() and not resume:
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def train(config: TrainConfig, *, resume: bool = False, overwrite: bool = False,
          progress: bool = True) -> Path:
    """Train one run (Algorithm 13) and write its outputs; returns the run directory."""
    from accelerate.utils import DistributedDataParallelKwargs, set_seed

    # ---- 1. config, data, run directory
    config.validate()
    config = dataclasses.replace(config, backbone_kwargs=backbone_kwargs_for(config.backbone, config.backbone_kwargs))
    if config.torch_threads > 0:
        torch.set_num_threads(config.torch_threads)
    # with a feature store every image was decoded (and so checked) when the store was built
    dataset = load_dataset(config.data, decode_images=not config.feature_store)
    config = dataclasses.replace(config, dataset_hash=dataset_fingerprint(dataset))
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
    accelerator = make_accelerator(
        config.mixed_precision, kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
    run_dir = Path(config.out)
    check_run_dir(config, resume, overwrite)  # refuse early, before the (slow) model load
    set_seed(config.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    frame = dataset.scenarios.reset_index(drop=True)
    train_images = select_training_images(frame, config.train_fraction, config.seed)

    # ---- 3. model; 4. optimizer and objective
    model = build_model(config)  # a missing checkpoint fails here, before anything is written
    config = dataclasses.replace(config, backbone_checkpoint=loaded_checkpoint(model))
    if accelerator.is_main_process:
        prepare_run_dir(config, resume, overwrite)
        write_json(run_dir / CONFIG_FILE, config.to_dict())
    accelerator.wait_for_everyone()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameter_groups(model, config), lr=config.lr, weight_decay=config.weight_decay)
    objective = make_objective(config.objective, aux_mse=config.aux_mse, modality_weight=config.modality_weight)
    loss_generator = torch.Generator().manual_seed(config.seed)  # ListMLE tie-breaking

    # ---- 5. resume: trainable weights, optimizer state, every RNG (the data order is a function of the epoch)
    start_epoch, global_step, log_rows, resumed_rng = 0, 0, [], None
    checkpoint_path = run_dir / CHECKPOINT_FILE
    if resume and checkpoint_path.exists():
        state = load_checkpoint(checkpoint_path)
        load_trainable_state(model, state["trainable"], str(checkpoint_path))
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, global_step, log_rows = state["epoch"], state["global_step"], state["log"]
        resumed_rng = state["rng"]
        accelerator.print(f"resuming {run_dir} after epoch {start_epoch}")

    model, optimizer = accelerator.prepare(model, optimizer)
    if resumed_rng is not None:
        restore_rng_state(resumed_rng, loss_generator)

    # ---- 6. the loop
    images = ImageLoader(dataset, config.max_image_side, lazy=has_image_cache(accelerator.unwrap_model(model)))
    # everything the run will predict, in one sorted pass: the cached features (computed in fixed chunks)
    # are then bit-identical to what ``mmscale predict`` computes on the same data, also under bf16
    # autocast, where a 1e-7 difference in a feature can flip the last bit of a score
    rows = prediction_rows(frame, train_images)
    warm_caches(accelerator.unwrap_model(model), rows, images, progress and accelerator.is_local_main_process)
    started = time.perf_counter() - (log_rows[-1]["seconds"] if log_rows else 0.0)  # resumed: continue the clock
    for epoch in range(start_epoch, config.epochs):
        batches = epoch_batches(frame, train_images, config, epoch)
        n_proc = accelerator.num_processes
        if n_proc > 1:  # equal shares so every process takes the same number of steps
            batches = batches[: len(batches) // n_proc * n_proc][accelerator.process_index::n_proc]
        model.train()
        bar = tqdm(batches, desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch",
                   disable=not (progress and accelerator.is_local_main_process))
        running, parts_sum, n_micro, n_lists = 0.0, {}, 0, 0
        for i, lists in enumerate(bar):
            batch, targets, modality = collate(lists, frame, images)
            device = accelerator.device
            targets, modality, mask = targets.to(device), modality.to(device), batch.mask.to(device)
            group_start = i - i % config.grad_accum
            group_size = min(config.grad_accum, len(batches) - group_start)
            boundary = i == group_start + group_size - 1
            sync = contextlib.nullcontext() if boundary else accelerator.no_sync(model)
            with sync:
                scores, logits = model(batch)
                loss, parts = objective(scores, targets, mask, modality_logits=logits,
                                        modality_targets=modality if logits is not None else None,
                                        generator=loss_generator)
                accelerator.backward(loss / group_size)
            n_micro += 1
            n_lists += len(lists)
            for key, value in parts.items():
                parts_sum[key] = parts_sum.get(key, 0.0) + float(value)
            if not boundary:
                continue
            if config.max_grad_norm > 0:
                accelerator.clip_grad_norm_(params, config.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            global_step += 1
            step_loss = parts_sum["total"] / n_micro
            running = step_loss if global_step == 1 else 0.98 * running + 0.02 * step_loss
            bar.set_postfix(loss=f"{running:.4f}")
            log_rows.append({"epoch": epoch + 1, "step": global_step, "lists": n_lists,
                             **{f"loss_{k}": v / n_micro for k, v in parts_sum.items()},
                             "lr": optimizer.param_groups[0]["lr"], "head_lr": optimizer.param_groups[-1]["lr"],
                             "seconds": round(time.perf_counter() - started, 3)})
            parts_sum, n_micro, n_lists = {}, 0, 0
        bar.close()

        # ---- 7. checkpoint after every epoch
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            save_checkpoint(checkpoint_path, {
                "epoch": epoch + 1, "global_step": global_step, "log": log_rows,
                "trainable": trainable_state(accelerator.unwrap_model(model)),
                "optimizer": optimizer.state_dict(), "rng": rng_state(loss_generator),
                "config": config.to_dict(),
            })
            write_log(run_dir / LOG_FILE, log_rows)
        accelerator.wait_for_everyone()

    # ---- 8. outputs: every process scores its shard of the lists (the unwrapped model needs no
    # collectives in its forward), the main process writes
    predictions = score_scenarios(accelerator.unwrap_model(model), dataset, rows, list_size=config.max_list_size,
                                  lists_per_batch=config.predict_lists_per_batch,
                                  max_image_side=config.max_image_side, progress=progress, accelerator=accelerator)
    if accelerator.is_main_process:
        write_run_outputs(accelerator.unwrap_model(model), config, dataset, rows, run_dir, log_rows,
                          progress=progress, predictions=predictions)
    accelerator.wait_for_everyone()
    return run_dir


def loaded_checkpoint(model: ScoringModel) -> dict[str, str]:
    """The checkpoint a VLM backbone loaded (directory, commit or fingerprint); empty for the embedded ones."""
    return dict(getattr(model.backbone, "checkpoint", None) or {})


def prediction_rows(frame: pd.DataFrame, train_images: list[str]) -> pd.DataFrame:
    """What a run predicts: every held-out scenario and those of the images it trained on.

    The calibration map is fitted on the latter; training images the run never
    saw (``train_fraction`` < 1) would cost prediction time and tell nothing.
    ``mmscale predict`` scores a whole dataset.
    """
    keep = (frame["split"] != "train").to_numpy() | frame["image_id"].isin(set(train_images)).to_numpy()
    return frame[keep].reset_index(drop=True)


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
