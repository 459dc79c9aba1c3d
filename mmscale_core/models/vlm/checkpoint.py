"""Strictly offline checkpoint resolution and loading for the real VLMs.

Nothing is downloaded: a backbone loads from a local directory, or from the
Hugging Face cache (``HF_HOME`` / ``HF_HUB_CACHE``) with ``local_files_only``.
A missing checkpoint is a user problem, reported as one ``MmscaleError`` that
names the backbone, every place looked in, and how to point at a checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mmscale_core.errors import MmscaleError
from mmscale_core.models._torchvision_compat import ensure_torchvision_importable

DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
          "fp16": torch.float16, "float16": torch.float16}


def parse_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    try:
        return DTYPES[dtype.lower()]
    except KeyError:
        raise MmscaleError(f"unknown dtype {dtype!r}; choose one of: {', '.join(DTYPES)}") from None


def _from_hf_cache(repo_id: str) -> Path | None:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except (LocalEntryNotFoundError, HFValidationError, FileNotFoundError):
        return None


def resolve_checkpoint(backbone: str, hub_id: str, path: str | Path | None = None) -> Path:
    """A local directory holding ``config.json`` for ``backbone``, or ``MmscaleError``.

    ``path`` is a directory or a hub id; default ``hub_id``. Hub ids are only
    looked up in the local cache.
    """
    from huggingface_hub import constants

    looked: list[str] = []
    candidate = Path(path).expanduser() if path is not None else None
    if candidate is not None and (candidate / "config.json").is_file():
        return candidate
    if candidate is not None:
        looked.append(f"directory {candidate} ({'no config.json' if candidate.is_dir() else 'does not exist'})")
    repo_id = str(path) if path is not None and str(path).count("/") == 1 and not candidate.exists() else hub_id
    cached = _from_hf_cache(repo_id)
    if cached is not None and (cached / "config.json").is_file():
        return cached
    looked.append(f"Hugging Face cache {constants.HF_HUB_CACHE} (no snapshot of {repo_id})")
    raise MmscaleError(
        f"backbone {backbone!r}: no local checkpoint of {repo_id} found; looked in: " + "; ".join(looked)
        + f". Nothing is downloaded at run time: put a copy of {repo_id} in a directory and point at it with "
        "--backbone-path DIR (mmscale bench prefix), --backbone-arg path=DIR (mmscale train) or the params.yaml "
        "key training.backbone_kwargs.path; or set HF_HOME to a Hugging Face cache that holds it."
    )


def load_pretrained(backbone_cls: Any, path: str | Path | None = None, *, dtype: str | torch.dtype | None = None,
                    attn_implementation: str = "sdpa") -> tuple[Any, Any]:
    """``(model, processor)`` for a ``VLMBackbone`` subclass, from a local checkpoint only."""
    directory = resolve_checkpoint(backbone_cls.registry_name, backbone_cls.hub_id, path)
    ensure_torchvision_importable()
    import transformers

    model_cls = getattr(transformers, backbone_cls.model_class)
    try:
        model = model_cls.from_pretrained(directory, dtype=parse_dtype(dtype) or "auto", local_files_only=True,
                                          attn_implementation=attn_implementation)
        processor = transformers.AutoProcessor.from_pretrained(directory, local_files_only=True)
    except OSError as err:
        raise MmscaleError(f"backbone {backbone_cls.registry_name!r}: checkpoint at {directory} "
                           f"is incomplete or unreadable: {err}") from None
    return backbone_cls.after_load(model, directory).eval(), processor
