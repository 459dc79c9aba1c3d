"""The real VLM backbones (issue 10): Qwen2-VL, LLaVA-OneVision, InstructBLIP, Phi (-3-Vision's native stand-in).

Each factory loads a checkpoint strictly offline (a local directory, or the
Hugging Face cache) unless ``model`` and ``processor`` objects are given, as
the tests and the benchmark do with the random-init builders of
:mod:`mmscale_core.models.tiny`. All return a
:class:`~mmscale_core.models.vlm.backbone.VLMBackbone` whose ``encode`` is the
shared-prefix path and ``encode_naive`` the paper's one-pair-per-forward path.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from mmscale_core.models.base import MAX_IMAGE_SIDE
from mmscale_core.models.vlm.backbone import (DEFAULT_PROMPT, Prefix, PreparedLists, VLMBackbone,
                                              check_attention)
from mmscale_core.models.vlm.checkpoint import load_pretrained, resolve_checkpoint
from mmscale_core.models.vlm.instructblip import InstructBlipBackbone
from mmscale_core.models.vlm.llava_onevision import LlavaOnevisionBackbone
from mmscale_core.models.vlm.phi4_multimodal import Phi4MultimodalBackbone
from mmscale_core.models.vlm.qwen2_vl import Qwen2VLBackbone

__all__ = [
    "DEFAULT_PROMPT", "Prefix", "PreparedLists", "VLMBackbone", "Qwen2VLBackbone", "LlavaOnevisionBackbone",
    "InstructBlipBackbone", "Phi4MultimodalBackbone", "qwen2_vl", "llava_onevision", "instructblip",
    "phi3_vision", "load_pretrained", "resolve_checkpoint",
]


FACTORY_DOC = """{title}

    path: a local checkpoint directory, or a hub id looked up in the local HF cache only
        (default ``{hub_id}``). ``model``/``processor``: use these objects instead of loading.
    torch_dtype: e.g. torch.bfloat16 or "bf16" (default: the checkpoint's).
    attn_implementation: "sdpa" (default) or "eager"; flash attention is refused (the packed
        path needs a 4-D block mask).
    image_size: longer image side after resizing (default 336, the paper's; the run's
        ``max_image_side`` caps images first, also 336 by default).
    max_length: truncate each scenario to this many tokens (default: no truncation).
    """


def _factory(cls: type[VLMBackbone], name: str, title: str) -> Callable[..., VLMBackbone]:
    def build(path: str | Path | None = None, *, torch_dtype: str | torch.dtype | None = None,
              prompt: str = DEFAULT_PROMPT, model: Any = None, processor: Any = None,
              attn_implementation: str = "sdpa", image_size: int = MAX_IMAGE_SIDE,
              max_length: int | None = None) -> VLMBackbone:
        check_attention(cls.registry_name, attn_implementation)
        if model is None or processor is None:
            model, processor = load_pretrained(cls, path, dtype=torch_dtype, attn_implementation=attn_implementation)
        return cls(model, processor, prompt=prompt, max_image_side=image_size, max_scenario_tokens=max_length)

    build.__name__ = build.__qualname__ = name
    build.__doc__ = FACTORY_DOC.format(title=title, hub_id=cls.hub_id)
    return build


qwen2_vl = _factory(Qwen2VLBackbone, "qwen2_vl", "Qwen2-VL-7B-Instruct.")
llava_onevision = _factory(LlavaOnevisionBackbone, "llava_onevision", "LLaVA-OneVision-7B.")
instructblip = _factory(InstructBlipBackbone, "instructblip", "InstructBLIP-Vicuna-7B.")
phi3_vision = _factory(Phi4MultimodalBackbone, "phi3_vision",
                       "Phi-3-Vision's nearest native class, Phi-4-multimodal (see phi4_multimodal.py).")
