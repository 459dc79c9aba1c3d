"""The model a run trains: backbone (+ LoRA, or frozen) + heads, its optimizer groups, its checkpoint record."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mmscale_core.models import load_backbone
from mmscale_core.models.heads import ScoringModel
from mmscale_core.training.config import TrainConfig


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


def make_optimizer(model: ScoringModel, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW over ``parameter_groups``; fused: one kernel per step for every tensor, not a Python loop over them."""
    return torch.optim.AdamW(parameter_groups(model, config), lr=config.lr, weight_decay=config.weight_decay,
                             fused=True)


def loaded_checkpoint(model: ScoringModel) -> dict[str, str]:
    """The checkpoint a VLM backbone loaded (directory, commit or fingerprint); empty for the embedded ones."""
    return dict(getattr(model.backbone, "checkpoint", None) or {})
