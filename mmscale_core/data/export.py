"""Converting a release between layouts (``mmscale export``).

Ours -> the authors': ``image_id`` becomes the image's file name, the split becomes the
split files; fields the authors' layout has no place for (``normbank_label``,
``annotators``, ``image_source``, ``qc``) are left out and reported; ``origin`` is kept
(the authors' layout, as read here, accepts it). The authors' -> ours:
``image_id`` becomes the file stem and the stored ``mean_rating`` and ``modality`` are kept
as ``score`` and ``modality``, so converting back gives every field of the flat file again.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from mmscale_core.data.dataset import Dataset
from mmscale_core.data.layouts import LAYOUTS, load_dataset
from mmscale_core.data.ours import write_dataset
from mmscale_core.data.problems import DatasetError, Problem, has_field
from mmscale_core.data.schema import IMAGE_DIR, IMAGE_SUFFIXES
from mmscale_core.data.upstream import write_upstream
from mmscale_core.errors import MmscaleError

DROPPED_IN_UPSTREAM = ("normbank_label", "annotators", "image_source", "qc")


def _copy(src: Path, dst: Path) -> None:
    """Hard link when possible (same filesystem, no bytes copied), else copy."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _stems(dataset: Dataset) -> dict[str, str]:
    """The authors' image_id (a file name) -> our image_id (its stem), checked to be usable."""
    out: dict[str, str] = {}
    problems = []
    seen: dict[str, str] = {}
    for image_id in dict.fromkeys(dataset.scenarios["image_id"]):
        stem, suffix = os.path.splitext(image_id)
        if suffix.lower() not in IMAGE_SUFFIXES or not stem:
            problems.append(Problem(f"{IMAGE_DIR}/{image_id}", f"our layout needs images named "
                                    f"<image_id>.(png|jpg|jpeg|webp)", f"image_id={image_id}", "image_id"))
        elif stem in seen:
            problems.append(Problem(f"{IMAGE_DIR}/{image_id}", f"has the same stem as {seen[stem]}",
                                    f"image_id={image_id}", "image_id"))
        else:
            seen[stem] = image_id
            out[image_id] = stem
    if problems:
        raise DatasetError(dataset.root, problems)
    return out


def export_dataset(src: str | os.PathLike, out: str | os.PathLike, layout: str, fmt: str = "parquet",
                   contexts: bool = True) -> tuple[Dataset, list[str]]:
    """Write the dataset at ``src`` (either layout) to the new directory ``out`` in ``layout``.

    Returns the source dataset and the fields left out. ``out`` must not exist or be empty;
    it is written in a temporary sibling and renamed into place, so a failed export leaves nothing.
    """
    if layout not in LAYOUTS:
        raise MmscaleError(f"--layout must be one of {', '.join(LAYOUTS)}, not {layout!r}")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise MmscaleError(f"{out}: exists and is not an empty directory; export writes a new one")
    dataset = load_dataset(src, decode_images=False)
    frame = dataset.scenarios
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (tmp / IMAGE_DIR).mkdir()
        if layout == "upstream":
            names = {image_id: dataset.images[image_id].name for image_id in dict.fromkeys(frame["image_id"])}
            for image_id, name in names.items():
                _copy(dataset.images[image_id], tmp / IMAGE_DIR / name)
            write_upstream(frame, tmp, names, contexts=contexts)
            dropped = [name for name in DROPPED_IN_UPSTREAM if has_field(frame, name)]
        else:
            stems = ({i: i for i in dict.fromkeys(frame["image_id"])} if dataset.layout == "ours"
                     else _stems(dataset))
            for image_id, stem in stems.items():
                _copy(dataset.images[image_id], tmp / IMAGE_DIR / (stem + dataset.images[image_id].suffix))
            write_dataset(frame.assign(image_id=frame["image_id"].map(stems)), tmp, fmt=fmt, given=dataset.given)
            dropped = []
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return dataset, dropped
