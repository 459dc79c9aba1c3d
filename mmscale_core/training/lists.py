"""Lists and batches: which images a run trains on, each epoch's lists of <= m scenarios, collation.

A list is one image and 1..m of its scenarios (the paper's unit of listwise
supervision); a batch is ``lists_per_batch`` lists padded to the longest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from mmscale_core.data import ImageLoader
from mmscale_core.errors import MmscaleError
from mmscale_core.models.base import ListBatch
from mmscale_core.models.heads import MODALITY_LABELS, ScoringModel
from mmscale_core.training.config import TrainConfig


@dataclass(frozen=True)
class ScenarioList:
    """One training list: an image and 1..m of its scenarios (row positions in the frame)."""

    image_id: str
    rows: tuple[int, ...]


def select_training_images(frame: pd.DataFrame, fraction: float, seed: int) -> list[str]:
    """The train split's images, or a seeded random ``fraction`` of them (at least one)."""
    images = sorted(frame.loc[frame["split"] == "train", "image_id"].unique())
    if not images:
        raise MmscaleError("the dataset has no training images (split == 'train')")
    if fraction >= 1.0:
        return images
    n = max(1, int(round(fraction * len(images))))
    chosen = np.random.default_rng([seed, 0x5EED]).choice(len(images), size=n, replace=False)
    return [images[i] for i in sorted(chosen)]


def make_lists(frame: pd.DataFrame, image_ids: list[str], max_list_size: int,
               rng: np.random.Generator | None = None) -> list[ScenarioList]:
    """Each image's scenarios (shuffled with ``rng``, else in frame order) cut into ceil(n/m) near-equal lists of <= m."""
    positions = frame.groupby("image_id", sort=True).indices
    lists = []
    for image_id in image_ids:
        rows = positions[image_id] if rng is None else rng.permutation(positions[image_id])
        rows = rows.tolist()
        for start, end in _near_equal_cuts(len(rows), math.ceil(len(rows) / max_list_size)):
            lists.append(ScenarioList(image_id, tuple(rows[start:end])))
    return lists


def _near_equal_cuts(n: int, parts: int) -> list[tuple[int, int]]:
    """``np.array_split``'s cut points of n items into ``parts``: the first n % parts one longer (without its cost)."""
    size, longer = divmod(n, parts)
    cuts, start = [], 0
    for i in range(parts):
        end = start + size + (1 if i < longer else 0)
        cuts.append((start, end))
        start = end
    return cuts


def epoch_batches(frame: pd.DataFrame, image_ids: list[str], config: TrainConfig,
                  epoch: int) -> list[list[ScenarioList]]:
    """This epoch's batches of lists; a pure function of (seed, epoch), which is what makes resume exact."""
    rng = np.random.default_rng([config.seed, epoch])
    lists = make_lists(frame, image_ids, config.max_list_size, rng)
    order = rng.permutation(len(lists))
    lists = [lists[i] for i in order]
    k = config.lists_per_batch
    return [lists[i:i + k] for i in range(0, len(lists), k)]


def prediction_rows(frame: pd.DataFrame, train_images: list[str]) -> pd.DataFrame:
    """What a run predicts: every held-out scenario and those of the images it trained on.

    The calibration map is fitted on the latter; training images the run never
    saw (``train_fraction`` < 1) would cost prediction time and tell nothing.
    ``mmscale predict`` scores a whole dataset.
    """
    keep = (frame["split"] != "train").to_numpy() | frame["image_id"].isin(set(train_images)).to_numpy()
    return frame[keep].reset_index(drop=True)


def has_image_cache(model: ScoringModel) -> bool:
    """Whether the backbone caches image features (then it takes :class:`KeyedImage` handles)."""
    return hasattr(model.backbone, "warm_cache")


def warm_caches(model: ScoringModel, frame: pd.DataFrame, images: ImageLoader, progress: bool = True) -> None:
    """Let a backbone with cached frozen towers (``warm_cache``, ``warm_text_cache``) see all inputs up front.

    Sorted inputs and fixed batches make the cached features the same in every
    process that uses the same data (a resumed run, ``mmscale predict``, the
    feature store). Backbones without the methods (the VLMs) are left alone.
    """
    warm_text = getattr(model.backbone, "warm_text_cache", None)
    if warm_text is not None:
        warm_text(frame["scenario"])
    warm = getattr(model.backbone, "warm_cache", None)
    if warm is None:
        return
    ids = sorted(set(frame["image_id"]))
    warm(images(i) for i in tqdm(ids, desc="image features", unit="img", disable=not progress, leave=False))


def collate(lists: list[ScenarioList], frame: pd.DataFrame,
            images: ImageLoader) -> tuple[ListBatch, torch.Tensor, torch.Tensor]:
    """Padded ``ListBatch`` + targets (B, n_max) human scores + modality class ids (-1 in padding)."""
    scenario = frame["scenario"].to_numpy()
    score = frame["score"].to_numpy(dtype=np.float32)
    labels = frame["modality"].to_numpy()
    label_index = {label: i for i, label in enumerate(MODALITY_LABELS)}
    batch = ListBatch.from_lists([images(item.image_id) for item in lists],
                                 [scenario[list(item.rows)].tolist() for item in lists])
    targets = torch.zeros(batch.mask.shape, dtype=torch.float32)
    modality = torch.full(batch.mask.shape, -1, dtype=torch.long)
    for b, item in enumerate(lists):
        rows = list(item.rows)
        targets[b, : len(rows)] = torch.from_numpy(score[rows])
        modality[b, : len(rows)] = torch.tensor([label_index.get(m, -1) for m in labels[rows]])
    return batch, targets, modality


# --------------------------------------------------------------------------- collation by index (frozen towers)

@dataclass
class FrameTensors:
    """A frame's rows as tensors, built once per run, so a batch is index arithmetic, not per-list Python.

    Row ``pad`` (= the frame's length) is padding: score 0, modality -1 and, in
    ``text_table``, a zero vector, exactly what ``collate`` puts in padded slots.
    ``text_table`` / ``image_table`` hold the frozen towers' outputs (None for a
    backbone without that tower); ``image_of_row`` maps a row to its image's
    row of ``image_table``.
    """

    pad: int
    score: torch.Tensor            # (pad + 1,) float32
    modality: torch.Tensor         # (pad + 1,) long
    image_of_row: torch.Tensor     # (pad + 1,) long
    text_table: torch.Tensor | None   # (pad + 1, D_text)
    image_table: torch.Tensor | None  # (n_images, D_image)


def frame_tensors(model: ScoringModel, frame: pd.DataFrame, images: ImageLoader) -> FrameTensors | None:
    """``FrameTensors`` for ``frame`` when the backbone's towers are all frozen (``frozen_features``), else None.

    Call after ``warm_caches``: the tables are read from the towers' caches.
    """
    frozen = getattr(model.backbone, "frozen_features", None)
    if frozen is None:
        return None
    image_ids = sorted(set(frame["image_id"]))
    tables = frozen(frame["scenario"].tolist(), [images(i) for i in image_ids])
    if tables is None:
        return None
    text, image = tables
    pad = len(frame)
    label_index = {label: i for i, label in enumerate(MODALITY_LABELS)}
    position = {image_id: i for i, image_id in enumerate(image_ids)}
    score = torch.zeros(pad + 1, dtype=torch.float32)
    score[:pad] = torch.tensor(frame["score"].to_numpy(dtype=np.float32))  # a copy: pandas may hand out read-only arrays
    modality = torch.full((pad + 1,), -1, dtype=torch.long)
    modality[:pad] = torch.tensor([label_index.get(m, -1) for m in frame["modality"]], dtype=torch.long)
    image_of_row = torch.zeros(pad + 1, dtype=torch.long)
    image_of_row[:pad] = torch.tensor([position[i] for i in frame["image_id"]], dtype=torch.long)
    if text is not None:
        text = torch.cat([text, text.new_zeros(1, text.shape[-1])])
    return FrameTensors(pad, score, modality, image_of_row, text, image)


def padded_rows(lists: list[ScenarioList], pad: int) -> torch.Tensor:
    """(len(lists), longest list) frame rows of ``lists``, ``pad`` after each list's end: built once per epoch."""
    width = max(len(item.rows) for item in lists)
    out = np.full((len(lists), width), pad, dtype=np.int64)
    lengths = np.fromiter((len(item.rows) for item in lists), dtype=np.int64, count=len(lists))
    flat = np.fromiter((r for item in lists for r in item.rows), dtype=np.int64, count=int(lengths.sum()))
    cols = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    out[np.repeat(np.arange(len(lists)), lengths), cols] = flat
    return torch.from_numpy(out)


def collate_indexed(rows: torch.Tensor, tensors: FrameTensors) -> tuple[ListBatch, torch.Tensor, torch.Tensor]:
    """``collate``'s output for a (B, w) block of ``padded_rows``: the same mask, targets, modality and features.

    The block is cut to its longest list, as ``collate`` pads to it (the
    shape matters: ListMLE's tie-breaking draws one number per slot).
    """
    mask = rows != tensors.pad
    rows = rows[:, : int(mask.sum(1).max())]
    mask = mask[:, : rows.shape[1]]
    text = tensors.text_table[rows] if tensors.text_table is not None else None
    image = tensors.image_table[tensors.image_of_row[rows[:, 0]]] if tensors.image_table is not None else None
    batch = ListBatch([], [], mask, text_features=text, image_features=image)
    return batch, tensors.score[rows], tensors.modality[rows]
