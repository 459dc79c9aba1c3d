"""The contract between backbones, heads and the training loop.

A *list* is one image with its 1..n scenarios (the paper's unit of listwise
supervision). A backbone turns a padded batch of lists into one pooled vector
per (image, scenario) pair. ``encode`` is the shared-prefix path (the image and
prompt are encoded once per list); ``encode_naive`` is the paper's one-pair-
at-a-time path, kept as the reference that tests and ``mmscale bench prefix``
compare against.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch import nn

MAX_IMAGE_SIDE = 336  # the paper resizes inputs to at most 336x336 (sec 13)


@dataclass
class ListBatch:
    """B lists padded to ``n_max`` scenarios.

    images: B PIL images (one per list), or :class:`KeyedImage` for backbones with an image cache.
    texts:  B lists of scenario strings, list b has ``mask[b].sum()`` entries.
    mask:   (B, n_max) bool, True where a scenario exists.
    """

    images: list[Image.Image]
    texts: list[list[str]]
    mask: torch.Tensor

    @classmethod
    def from_lists(cls, images: list[Image.Image], texts: list[list[str]]) -> "ListBatch":
        if len(images) != len(texts):
            raise ValueError(f"{len(images)} images but {len(texts)} scenario lists")
        n_max = max(len(t) for t in texts)
        mask = torch.zeros(len(texts), n_max, dtype=torch.bool)
        for b, t in enumerate(texts):
            mask[b, : len(t)] = True
        return cls(list(images), [list(t) for t in texts], mask)

    def __len__(self) -> int:
        return len(self.texts)


def resize_max_side(image: Image.Image, max_side: int = MAX_IMAGE_SIDE) -> Image.Image:
    """Downscale (never upscale) so the longer side is at most ``max_side``; RGB."""
    image = image.convert("RGB")
    w, h = image.size
    scale = max_side / max(w, h)
    if scale < 1:
        image = image.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BICUBIC)
    return image


class KeyedImage:
    """A dataset image not decoded yet, with a content key: a hash of its file's bytes and the resize cap.

    Backbones that cache per-image features (the embedded image tower) look
    features up by ``cache_key`` and decode only on a miss, which is what
    makes a run over a feature store cheap; everything else calls ``load()``.
    """

    __slots__ = ("path", "max_side", "cache_key")

    def __init__(self, path: str | Path, max_side: int = MAX_IMAGE_SIDE):
        self.path, self.max_side = Path(path), int(max_side)
        digest = hashlib.blake2b(self.path.read_bytes(), digest_size=16)
        digest.update(f"file:max_side={self.max_side}".encode())
        self.cache_key = digest.digest()

    def load(self) -> Image.Image:
        with Image.open(self.path) as image:
            return resize_max_side(image, self.max_side)


def as_pil(image) -> Image.Image:
    """A PIL image from a PIL image or a :class:`KeyedImage`."""
    return image.load() if isinstance(image, KeyedImage) else image


class Backbone(nn.Module, ABC):
    """An encoder of (image, scenario) pairs, pooled to ``hidden_size``.

    Subclasses set ``hidden_size`` and ``lora_target_modules`` (module-name
    suffixes that peft's LoRA adapts) and implement both encode paths, which
    must agree within 1e-4 (relative) in values and gradients.
    """

    hidden_size: int
    lora_target_modules: list[str]

    @abstractmethod
    def encode(self, batch: ListBatch) -> torch.Tensor:
        """(B, n_max, hidden_size) pair representations, shared-prefix path; padded slots are ignored."""

    @abstractmethod
    def encode_naive(self, batch: ListBatch) -> torch.Tensor:
        """Same output as ``encode``, one (image, scenario) pair per forward pass."""

    def forward(self, batch: ListBatch) -> torch.Tensor:
        """``encode``: wrappers (peft, accelerate) call the module itself."""
        return self.encode(batch)
