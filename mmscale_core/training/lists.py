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
        for chunk in np.array_split(rows, math.ceil(len(rows) / max_list_size)):
            lists.append(ScenarioList(image_id, tuple(int(r) for r in chunk)))
    return lists


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
