"""Image files of a release: finding them, checking that each referenced one exists and decodes.

Our layout names an image by its file stem (``images/<image_id>.png``); the authors' layout
by its full file name (``image_id`` is ``03485.png``, the file ``images/03485.png``).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable

from mmscale_core.data.problems import Problem
from mmscale_core.data.schema import IMAGE_DIR, IMAGE_SUFFIXES


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
