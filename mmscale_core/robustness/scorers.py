"""What the suite scores with: any object with ``score(frame, images)`` returning 1-5 scores.

The protocol is deliberately small so that a trained run (:class:`RunScorer`), a
test-time-augmented run (:class:`AugmentedScorer`) and a prompted VLM judge (a later
issue) plug in unchanged:

* ``frame``: one row per scenario, with at least ``image_id`` and ``scenario`` (the
  text to judge, perturbed or not);
* ``images``: ``image_id`` -> a PIL image or a :class:`~mmscale_core.models.base.KeyedImage`
  (an unperturbed dataset image, not decoded yet, or a perturbed copy with its pixel hash;
  ``as_pil`` gives the PIL image);
* returns one float per row on the 1-5 scale, in ``frame``'s order (for objectives
  without a scale: the run's isotonic map fitted on its training split).

A scorer may set ``max_image_side`` (the resize cap it reads images at); the runner
then perturbs images at that size, which is what the model would see anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Protocol

import numpy as np
import pandas as pd

from mmscale_core.robustness.perturbations import BY_NAME, apply_image, perturb_texts


class Scorer(Protocol):
    name: str

    def score(self, frame: pd.DataFrame, images: Mapping[str, object]) -> np.ndarray:
        """1-5 scores for every row of ``frame``, in its order."""


class RunScorer:
    """A trained run (``mmscale_core.predict.load_run``) as a :class:`Scorer`.

    Scores each image's scenarios in lists of the run's ``max_list_size`` in frame
    order, like ``training.score_scenarios``, but with the texts and images given
    (perturbed copies are not in the dataset). Originals passed as ``KeyedImage``
    hit the feature store's cached features; perturbed images and texts are new
    inputs, whose features the frozen towers compute on the fly (and cache).
    """

    def __init__(self, run, name: str | None = None, lists_per_batch: int | None = None):
        from mmscale_core.losses import make_objective

        self.run = run
        # inference only: with no parameter trainable, every frozen tower's output is a fixed
        # function of its input, which the towers then cache (texts, image trunks, pooled images)
        run.model.requires_grad_(False)
        self.name = name or run.run_dir.name
        config = run.config
        self.max_image_side = int(config.max_image_side)
        self.list_size = int(config.max_list_size)
        self.lists_per_batch = int(lists_per_batch or config.predict_lists_per_batch)
        self.on_scale = make_objective(config.objective, config.aux_mse, config.modality_weight).on_score_scale

    @classmethod
    def from_run_dir(cls, run_dir, name: str | None = None) -> "RunScorer":
        from mmscale_core.predict import load_run

        return cls(load_run(run_dir), name=name)

    def tower_names(self) -> list[str]:
        """The embedded towers this run has ("text", "image"); none for other backbones."""
        base = _embedded(self.run.model.backbone)
        return [t for t in ("text", "image") if base is not None and getattr(base, t, None) is not None]

    def share_features_with(self, other: "RunScorer") -> list[str]:
        """Use ``other``'s frozen-tower caches (same texts and images, same features) instead of recomputing.

        The suite's runs share one pretrained MiniLM and one EfficientNet trunk (and, with
        ``tuning: frozen``, its tail): what they compute for a perturbed input is the same in
        every run, so computing it once saves most of the stage's time. Shared only where
        both runs' towers hold the pretrained weights untouched (no LoRA on them) and were
        built with the same settings, the condition under which the feature store may fill
        them (``models.feature_store``); returns what was shared.
        """
        mine, theirs = _embedded(self.run.model.backbone), _embedded(other.run.model.backbone)
        a, b = self.run.config, other.run.config
        if mine is None or theirs is None or a.backbone_kwargs != b.backbone_kwargs \
                or self.max_image_side != other.max_image_side:
            return []
        untuned_text = all(c.tuning == "frozen" or c.backbone_kwargs.get("text_tuned_layers", 6) == 0 for c in (a, b))
        untuned_tail = a.tuning == b.tuning == "frozen"
        shared = []
        if getattr(mine, "text", None) is not None and getattr(theirs, "text", None) is not None and untuned_text:
            mine.text._cache = theirs.text._cache
            shared.append("text")
        if getattr(mine, "image", None) is not None and getattr(theirs, "image", None) is not None:
            mine.image._cache = theirs.image._cache  # the trunk is never tuned
            shared.append("image trunk")
            if untuned_tail:
                mine.image._pooled = theirs.image._pooled
                shared.append("image pooled")
        return shared

    def raw_scores(self, frame: pd.DataFrame, images: Mapping[str, object]) -> np.ndarray:
        import torch

        from mmscale_core.models.base import ListBatch
        from mmscale_core.training import make_lists

        model = self.run.model
        frame = frame.reset_index(drop=True)
        backbone = model.backbone
        warm_text = getattr(backbone, "warm_text_cache", None)
        if warm_text is not None:  # batched embedding of every new text (one call, chunks packed by length)
            warm_text(frame["scenario"], pack_by_length=True)
        warm = getattr(backbone, "warm_cache", None)
        if warm is not None:
            warm(images[i] for i in sorted(set(frame["image_id"])))
        lists = make_lists(frame, sorted(frame["image_id"].unique()), self.list_size)
        texts = frame["scenario"].to_numpy()
        out = np.full(len(frame), np.nan)
        model.eval()
        with torch.no_grad():
            for start in range(0, len(lists), self.lists_per_batch):
                group = lists[start:start + self.lists_per_batch]
                batch = ListBatch.from_lists([images[item.image_id] for item in group],
                                             [texts[list(item.rows)].tolist() for item in group])
                scores, _ = model(batch)
                scores = scores.float().cpu().numpy()
                for b, item in enumerate(group):
                    out[list(item.rows)] = scores[b, : len(item.rows)]
        return out

    def score(self, frame: pd.DataFrame, images: Mapping[str, object]) -> np.ndarray:
        from mmscale_core.training import apply_calibration

        raw = self.raw_scores(frame, images)
        return raw if self.on_scale else apply_calibration(self.run.calibration, raw)


def _embedded(backbone):
    """The embedded backbone under a peft wrapper (or itself); None for other backbones."""
    from mmscale_core.models.embedded import EmbeddedBackbone

    base = backbone.get_base_model() if hasattr(backbone, "get_base_model") else backbone
    return base if isinstance(base, EmbeddedBackbone) else None


@dataclass
class AugmentedScorer:
    """Test-time augmentation: the mean score of ``base`` over ``k`` noise-only views of each input.

    A view disturbs the text's surface (``surface_noise``) and adds pixel noise to the
    image (``gaussian_noise``), the suite's controls, each seeded per view; persuasion or
    an overlaid claim stays in every view, so averaging can only remove what a scorer
    reads from the input's surface. The intervention asked for by issue 20.
    """

    base: Scorer
    k: int = 4
    seed: int = 0
    text_view: str = "surface_noise"
    image_view: str = "gaussian_noise"

    @property
    def name(self) -> str:
        return f"{self.base.name}+tta{self.k}"

    @property
    def max_image_side(self) -> int | None:
        return getattr(self.base, "max_image_side", None)

    def score(self, frame: pd.DataFrame, images: Mapping[str, object]) -> np.ndarray:
        from mmscale_core.models.base import KeyedImage, as_pil

        frame = frame.reset_index(drop=True)
        text_p, image_p = BY_NAME[self.text_view], BY_NAME[self.image_view]
        ids = sorted(set(frame["image_id"]))
        total = np.zeros(len(frame))
        for view in range(self.k):
            seed = (self.seed, view)
            views = {i: KeyedImage.holding(apply_image(image_p, as_pil(images[i]), hash_seed(seed), i)) for i in ids}
            total += self.base.score(frame.assign(scenario=perturb_texts(text_p, frame, hash_seed(seed))), views)
        return total / self.k


def hash_seed(parts: tuple[int, ...]) -> int:
    """One integer seed from a tuple of them (``SeedSequence`` mixing: distinct tuples, distinct seeds)."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])
