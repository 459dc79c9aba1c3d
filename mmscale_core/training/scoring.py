"""Scoring scenarios with a model: fixed lists, optionally sharded over processes and gathered."""

from __future__ import annotations

import contextlib

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from mmscale_core.data import Dataset, ImageLoader
from mmscale_core.models.heads import MODALITY_LABELS, ScoringModel
from mmscale_core.training.lists import (
    FrameTensors, collate, collate_indexed, frame_tensors, has_image_cache, make_lists, padded_rows, warm_caches,
)


def make_accelerator(mixed_precision: str = "no", *, cpu: bool = False, **kwargs):
    """An ``Accelerator``; in a single process, one with other precision settings than the last is allowed.

    accelerate keeps one process-wide state and refuses a second precision in
    the same process (a notebook kernel or test session training a bf16 run
    after an fp32 one, or predicting with the run's precision). With one
    process nothing else holds that state, so it is reset; launched runs use
    one setting throughout.
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, PartialState

    state = AcceleratorState._shared_state
    if state and PartialState().num_processes == 1 and (
            state.get("_mixed_precision") != mixed_precision or (cpu and PartialState().device.type != "cpu")):
        AcceleratorState._reset_state(reset_partial_state=cpu)
    return Accelerator(mixed_precision=mixed_precision, cpu=cpu, **kwargs)


def shard(items: list, rank: int, world: int) -> list:
    """Process ``rank``'s share of ``items`` out of ``world``: every ``world``-th item from ``rank``, deterministic."""
    return items[rank::world]


def gather_list_scores(mine: list, accelerator=None) -> list:
    """Every process's per-list results, on every process (``accelerate.utils.gather_object``)."""
    if accelerator is None or accelerator.num_processes == 1:
        return mine
    from accelerate.utils import gather_object

    return gather_object(mine)


@torch.no_grad()
def score_scenarios(model: ScoringModel, dataset: Dataset, frame: pd.DataFrame, *, list_size: int = 5,
                    lists_per_batch: int = 8, max_image_side: int = 336, progress: bool = True,
                    autocast=contextlib.nullcontext, accelerator=None,
                    tensors: FrameTensors | None = None) -> pd.DataFrame:
    """Raw scores (and modality predictions) for every row of ``frame``, in ``frame``'s order.

    Each image's scenarios are scored in lists of at most ``list_size`` in a
    fixed order, so the result does not depend on anything random. With an
    ``accelerator`` its autocast is used and, launched on several processes,
    each scores its ``shard`` of the batches and all results are gathered
    (every process returns the whole frame). The model must already be on the
    accelerator's device. ``tensors`` (``frame_tensors`` of this ``frame``) saves
    building the lookup tables again when the caller has them.
    """
    was_training = model.training
    model.eval()
    if accelerator is not None:
        autocast, rank, world = accelerator.autocast, accelerator.process_index, accelerator.num_processes
    else:
        rank, world = 0, 1
    lists = make_lists(frame, sorted(frame["image_id"].unique()), list_size)
    images = None
    if tensors is None:  # given tables already hold every row's features: no image is read or hashed again
        images = ImageLoader(dataset, max_image_side, lazy=has_image_cache(model))
        warm_caches(model, frame, images, progress and rank == 0)
        tensors = frame_tensors(model, frame, images)  # None: LoRA or a VLM, collated per list
    pad = len(frame)
    index = padded_rows(lists, pad)  # (n_lists, m) frame rows; batch j = lists j*k .. j*k+k-1
    batches = range(0, len(lists), lists_per_batch)
    mine = []  # (frame rows, raw scores, modality labels or None), one per batch
    for start in tqdm(shard(list(batches), rank, world), desc="predict", unit="batch",
                      disable=not progress or rank != 0, leave=False):
        block = index[start:start + lists_per_batch]
        if tensors is None:
            batch, _, _ = collate(lists[start:start + lists_per_batch], frame, images)
        else:
            batch, _, _ = collate_indexed(block, tensors)
        with autocast():
            out, logits = model(batch)
        block = block[:, : batch.mask.shape[1]]
        valid = block != pad
        labels = None if logits is None else [MODALITY_LABELS[i] for i in logits.float().cpu()[valid].argmax(-1).tolist()]
        mine.append((block[valid].tolist(), out.float().cpu()[valid].tolist(), labels))
    model.train(was_training)
    scores = np.full(len(frame), np.nan)
    modality = np.full(len(frame), None, dtype=object)
    for rows, values, labels in gather_list_scores(mine, accelerator):
        scores[rows] = values
        if labels is not None:
            modality[rows] = labels
    return pd.DataFrame({
        "scenario_id": frame["scenario_id"].to_numpy(), "image_id": frame["image_id"].to_numpy(),
        "split": frame["split"].to_numpy(), "score": scores, "modality_pred": modality,
    })
