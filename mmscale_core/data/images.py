"""Image files of a release: finding them, checking that each referenced one exists and decodes,
and loading them the way every model sees them (downscaled to the paper's cap, or as content-keyed
handles for backbones that cache per-image features).

Our layout names an image by its file stem (``images/<image_id>.png``); the authors' layout
by its full file name (``image_id`` is ``03485.png``, the file ``images/03485.png``).
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from mmscale_core.data.problems import Problem
from mmscale_core.data.schema import IMAGE_DIR, IMAGE_SUFFIXES

if TYPE_CHECKING:
    from PIL import Image

    from mmscale_core.data.dataset import Dataset

MAX_IMAGE_SIDE = 336  # the paper resizes inputs to at most 336x336 (sec 13)


def index_images(root: Path, by_name: bool = False) -> tuple[dict[str, Path], list[Problem]]:
    """Map image_id -> file under ``images/``: by stem (ours; an id with two files is ambiguous)
    or, with ``by_name``, by the whole file name (the authors' layout)."""
    image_dir = Path(root) / IMAGE_DIR
    if not image_dir.is_dir():
        return {}, [Problem(f"{IMAGE_DIR}/", "missing images directory")]
    found: dict[str, Path] = {}
    problems: list[Problem] = []
    with os.scandir(image_dir) as it:
        for entry in it:
            if by_name:
                if entry.is_file():
                    found[entry.name] = Path(entry.path)
                continue
            stem, suffix = os.path.splitext(entry.name)
            if suffix.lower() not in IMAGE_SUFFIXES or not entry.is_file():
                continue
            if stem in found:
                problems.append(Problem(
                    f"{IMAGE_DIR}/{entry.name}", f"image {stem} has more than one file ({found[stem].name})",
                    f"image_id={stem}",
                ))
            else:
                found[stem] = Path(entry.path)
    return found, problems


def _decode_problem(path: Path) -> str | None:
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()  # full decode: verify() misses truncated pixel data
            if im.width < 1 or im.height < 1:
                return "image has no pixels"
    except Exception as err:  # PIL raises many types for bad files
        return f"cannot decode image: {type(err).__name__}: {err}"
    return None


def check_image_files(image_ids: Iterable[str], images: dict[str, Path], decode: bool = True,
                      workers: int | None = None, by_name: bool = False) -> list[Problem]:
    """Every referenced image exists (and, with ``decode``, decodes fully)."""
    problems: list[Problem] = []
    needed = sorted(set(image_ids))
    present = []
    for image_id in needed:
        if image_id in images:
            present.append(image_id)
        else:
            expected = f"{IMAGE_DIR}/{image_id}" if by_name else f"{image_id}.(png|jpg|jpeg|webp)"
            problems.append(Problem(f"{IMAGE_DIR}/", f"no image file {expected}", f"image_id={image_id}", "image_id"))
    if decode and present:
        with ThreadPoolExecutor(max_workers=workers or min(8, (os.cpu_count() or 1) * 2)) as pool:
            results = pool.map(lambda i: _decode_problem(images[i]), present)
            for image_id, msg in zip(present, results):
                if msg:
                    problems.append(Problem(f"{IMAGE_DIR}/{images[image_id].name}", msg, f"image_id={image_id}"))
    return problems


# --------------------------------------------------------------------------- loading for models

def resize_max_side(image: "Image.Image", max_side: int = MAX_IMAGE_SIDE) -> "Image.Image":
    """Downscale (never upscale) so the longer side is at most ``max_side``; RGB."""
    from PIL import Image

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
    :meth:`holding` wraps an image already in memory (a perturbed copy) the same way.
    """

    __slots__ = ("path", "max_side", "cache_key", "_pixels")

    def __init__(self, path: str | Path, max_side: int = MAX_IMAGE_SIDE):
        self.path, self.max_side, self._pixels = Path(path), int(max_side), None
        digest = hashlib.blake2b(self.path.read_bytes(), digest_size=16)
        digest.update(f"file:max_side={self.max_side}".encode())
        self.cache_key = digest.digest()

    @classmethod
    def holding(cls, image: "Image.Image") -> "KeyedImage":
        """An in-memory image keyed by :func:`pixel_key`, hashed once here instead of at every cache lookup.

        Why: the robustness suite scores each perturbed copy in many lists, and the
        image tower hashed its pixels again for each of them (63,000 hashes, 8 s of
        the default suite). ``load()`` returns ``image`` itself, unresized, as passing
        the image would have; the caller must not change it in place afterwards.
        """
        handle = cls.__new__(cls)
        handle.path, handle.max_side, handle._pixels = None, None, image
        handle.cache_key = pixel_key(image)
        return handle

    def load(self) -> "Image.Image":
        if self._pixels is not None:
            return self._pixels
        from PIL import Image

        with Image.open(self.path) as image:
            return resize_max_side(image, self.max_side)


def pixel_key(image: "Image.Image") -> bytes:
    """A 16-byte hash of a PIL image's pixels, mode and size: the cache key of an image with no file."""
    digest = hashlib.blake2b(image.tobytes(), digest_size=16)
    digest.update(f"{image.mode}{image.size}".encode())
    return digest.digest()


def as_pil(image) -> "Image.Image":
    """A PIL image from a PIL image or a :class:`KeyedImage`."""
    return image.load() if isinstance(image, KeyedImage) else image


class ImageLoader:
    """Dataset images as RGB, downscaled to the paper's cap; the last ones kept (lists revisit images).

    ``lazy=True`` (backbones with an image cache) gives :class:`KeyedImage`
    handles instead, decoded by the backbone only when its cache misses.
    """

    def __init__(self, dataset: "Dataset", max_side: int, keep: int = 256, lazy: bool = False):
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
