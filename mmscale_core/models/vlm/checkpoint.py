"""Strictly offline checkpoint resolution and loading for the real VLMs.

Nothing is downloaded: a backbone loads from a local directory, or from the
Hugging Face cache (``HF_HOME`` / ``HF_HUB_CACHE``) with ``local_files_only``.
A missing checkpoint is a user problem, reported as one ``MmscaleError`` that
names the backbone, every place looked in, and how to point at a checkpoint.
"""

from __future__ import annotations

import hashlib
import re
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


def _looks_like_hub_id(text: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", text))


def resolve_checkpoint(backbone: str, hub_id: str, path: str | Path | None = None) -> Path:
    """A local directory holding ``config.json`` for ``backbone``, or ``MmscaleError``.

    ``path`` is a directory or a hub id (looked up in the local cache only);
    without it, ``hub_id`` from the cache. A ``path`` given is never replaced
    by the default: a mistyped directory would otherwise train the stock model.
    """
    from huggingface_hub import constants

    hint = ("Nothing is downloaded at run time: put a copy of the checkpoint in a directory and point at it with "
            "--backbone-path DIR (mmscale bench prefix), --backbone-arg path=DIR (mmscale train) or the params.yaml "
            f"key training.backbone_kwargs.{backbone}.path; or set HF_HOME to a Hugging Face cache that holds it.")
    if path is not None:
        candidate = Path(path).expanduser()
        if (candidate / "config.json").is_file():
            return candidate.resolve()
        if candidate.exists() or not _looks_like_hub_id(str(path)):
            what = "has no config.json" if candidate.is_dir() else (
                "is not a directory" if candidate.exists() else "does not exist")
            raise MmscaleError(f"backbone {backbone!r}: the checkpoint path {candidate} {what}; "
                               f"a checkpoint directory holds config.json and the weights. {hint}")
        repo_id = str(path)
    else:
        repo_id = hub_id
    cached = _from_hf_cache(repo_id)
    if cached is not None and (cached / "config.json").is_file():
        return cached
    raise MmscaleError(
        f"backbone {backbone!r}: no local checkpoint of {repo_id} found; looked in: Hugging Face cache "
        f"{constants.HF_HUB_CACHE} (no snapshot of {repo_id}). {hint}"
    )


def checkpoint_record(directory: str | Path) -> dict[str, str]:
    """What identifies the weights loaded: the resolved directory and a commit or a content fingerprint.

    A Hugging Face cache snapshot is named by its commit. Any other directory
    gets a sha256 over ``config.json``, the weight index and each weight file's
    name, size and safetensors header (tensor names, shapes and offsets), so a
    different checkpoint under the same path is noticed without reading
    gigabytes of weights.
    """
    directory = Path(directory).resolve()
    record = {"path": str(directory)}
    if directory.parent.name == "snapshots" and re.fullmatch(r"[0-9a-f]{40}", directory.name):
        record["commit"] = directory.name
    digest = hashlib.sha256()
    for file in sorted(directory.iterdir()):
        if file.name == "config.json" or file.name.endswith(".index.json"):
            digest.update(file.name.encode() + b"\0" + file.read_bytes())
        elif file.suffix in (".safetensors", ".bin"):
            digest.update(f"{file.name}:{file.stat().st_size}\0".encode())
            if file.suffix == ".safetensors":
                with open(file, "rb") as fh:
                    size = int.from_bytes(fh.read(8), "little")
                    digest.update(fh.read(min(size, 100 << 20)))
    record["fingerprint"] = "sha256:" + digest.hexdigest()
    return record


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
    model = backbone_cls.after_load(model, directory).eval()
    model.mmscale_checkpoint = checkpoint_record(directory)  # what the run records as loaded
    return model, processor
