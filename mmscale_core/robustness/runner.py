"""Run the suite: score the originals and every perturbed copy, then write the two files.

``run_suite`` takes any :class:`~mmscale_core.robustness.scorers.Scorer`, so a trained
run, its test-time-augmented version and (later) a prompted judge are measured the
same way. ``robustness_to_dir`` is ``mmscale robustness``: ``robustness.parquet``
(one row per scenario x perturbation) and ``summary.csv`` (every measure with its CI).
The same seed gives identical files.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from mmscale_core.errors import MmscaleError
from mmscale_core.io import atomic_path, write_parquet
from mmscale_core.robustness.measures import RESULT_COLUMNS, summarize
from mmscale_core.robustness.perturbations import Perturbation, apply_image, get_perturbations, perturb_texts

RESULTS_FILE = "robustness.parquet"
SUMMARY_FILE = "summary.csv"


def select_scenarios(dataset, split: str = "test", max_images: int | None = None, seed: int = 0) -> pd.DataFrame:
    """The split's scenarios, of at most ``max_images`` images (None or 0: all), sorted.

    The images are the first ``max_images`` of one seeded permutation, so a smaller
    subsample is part of a larger one (the intervention is scored on a subset of the suite's images).
    """
    frame = dataset.scenarios
    frame = frame[frame["split"] == split]
    if frame.empty:
        splits = ", ".join(sorted(set(dataset.scenarios["split"])))
        raise MmscaleError(f"{dataset.root}: no scenarios in split {split!r} (field 'split' has: {splits})")
    images = np.array(sorted(frame["image_id"].unique()), dtype=object)
    if max_images and len(images) > max_images:
        chosen = np.random.default_rng([int(seed), 0xB0B]).permutation(len(images))[: int(max_images)]
        frame = frame[frame["image_id"].isin(set(images[np.sort(chosen)]))]
    return frame.sort_values(["image_id", "scenario_id"]).reset_index(drop=True)


class PerturbedImages:
    """Perturbed copies of the suite's images, made once for every scorer that reads them.

    Why: ``run_all`` measures six runs on the same images, and each run made every
    perturbed copy again (1,900 distinct copies made 11,400 times: ~11 s of the default
    suite). A copy is a fixed function of (perturbation, image, seed, resize cap), so a
    kept one is the same pixels. Copies are kept until ``budget_mb`` of pixels is held;
    past it they are made again for each scorer, as without the store. The decoded
    originals they are made from are always kept (as ``run_suite`` always kept them).
    """

    def __init__(self, dataset, seed: int = 0, budget_mb: float = 1024.0):
        self.dataset, self.seed, self.budget = dataset, int(seed), budget_mb * 2**20
        self._copies: dict[tuple, object] = {}
        self._originals: dict[tuple, object] = {}
        self.held = 0  # bytes of pixels in the kept copies

    def get(self, perturbation: Perturbation, image_id: str, side: int):
        """The ``KeyedImage`` of ``image_id`` (read at ``side``) under ``perturbation``."""
        from mmscale_core.models.base import KeyedImage

        key = (perturbation.name, image_id, side)
        if key in self._copies:
            return self._copies[key]
        original = self._originals.get((image_id, side))
        if original is None:
            original = self._originals[(image_id, side)] = KeyedImage(self.dataset.image_path(image_id), side).load()
        copy = KeyedImage.holding(apply_image(perturbation, original, self.seed, image_id))
        pixels = copy.load()
        size = pixels.width * pixels.height * len(pixels.getbands())
        if self.held + size <= self.budget:
            self._copies[key] = copy
            self.held += size
        return copy


def run_suite(scorer, dataset, perturbations: list[Perturbation] | None = None, *, split: str = "test",
              seed: int = 0, max_images: int | None = None, progress: bool = True,
              perturbed_images: PerturbedImages | None = None) -> pd.DataFrame:
    """Scores of the originals and of every perturbed copy: the long frame of ``robustness.parquet``.

    ``perturbed_images`` (made with the same ``dataset`` and ``seed``) shares the perturbed
    copies between calls; without it each call makes its own.
    """
    from mmscale_core.models.base import MAX_IMAGE_SIDE, KeyedImage

    perturbations = perturbations if perturbations is not None else get_perturbations(None)
    frame = select_scenarios(dataset, split, max_images, seed)
    side = getattr(scorer, "max_image_side", None) or MAX_IMAGE_SIDE
    ids = sorted(frame["image_id"].unique())
    originals = {i: KeyedImage(dataset.image_path(i), side) for i in ids}
    bar = tqdm(total=1 + len(perturbations), desc=f"robustness {scorer.name}", unit="set", disable=not progress)
    original = np.asarray(scorer.score(frame, originals), dtype=float)
    bar.update()
    if perturbed_images is None:
        perturbed_images = PerturbedImages(dataset, seed, budget_mb=0)  # nothing kept: made per call, as before
    parts = []
    for p in perturbations:
        if p.kind == "text":
            perturbed = scorer.score(frame.assign(scenario=perturb_texts(p, frame, seed)), originals)
        else:
            perturbed = scorer.score(frame, {i: perturbed_images.get(p, i, side) for i in ids})
        parts.append(pd.DataFrame({
            "scenario_id": frame["scenario_id"].to_numpy(), "image_id": frame["image_id"].to_numpy(),
            "modality": frame["modality"].to_numpy(), "perturbation": p.name,
            "original": original, "perturbed": np.asarray(perturbed, dtype=float),
        }))
        bar.update()
    bar.close()
    if not parts:
        return pd.DataFrame({c: [] for c in RESULT_COLUMNS})
    results = pd.concat(parts, ignore_index=True)[list(RESULT_COLUMNS)]
    if not np.isfinite(results[["original", "perturbed"]].to_numpy()).all():
        raise MmscaleError(f"robustness: scorer {scorer.name} returned missing or non-finite scores")
    return results


def write_outputs(out_dir: str | os.PathLike, results: pd.DataFrame, summary: pd.DataFrame) -> Path:
    out_dir = Path(out_dir)
    write_parquet(out_dir / RESULTS_FILE, results)
    with atomic_path(out_dir / SUMMARY_FILE) as tmp:
        summary.to_csv(tmp, index=False)
    return out_dir


def robustness_to_dir(run_dir: str | os.PathLike, data_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
                      split: str = "test", perturbations: str | list[str] | None = None, seed: int = 0,
                      max_images: int | None = None, n_boot: int = 1000, tta: int = 0,
                      progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``mmscale robustness``: validate the data, load the run, run the suite, write both files.

    ``tta`` > 0 scores with the test-time-augmented run (mean over that many noise-only views).
    """
    from mmscale_core.data import load_dataset
    from mmscale_core.robustness.scorers import AugmentedScorer, RunScorer

    chosen = get_perturbations(perturbations)
    dataset = load_dataset(data_dir, decode_images=False)
    scorer = RunScorer.from_run_dir(run_dir)
    if tta:
        scorer = AugmentedScorer(scorer, k=int(tta), seed=seed)
    results = run_suite(scorer, dataset, chosen, split=split, seed=seed, max_images=max_images, progress=progress)
    summary = summarize(results, dataset.scenarios, chosen, n_boot=n_boot, seed=seed)
    write_outputs(out_dir, results, summary)
    return results, summary
