"""``simulate``: the embedded default dataset, in the release format, with its latent truth.

Pipeline (every random stream derived from the single seed with
``SeedSequence(seed, spawn_key=(stream, ...))``, so each stage, and each image,
has its own reproducible stream):

1. candidate images: setting, cues, QC flag, list size (``scenarios.draw_scenes``);
2. scenarios written about them, with their latent acceptability (``scenarios.write_scenarios``);
3. three annotators per scenario rate it and label its modality; everyone answers canaries;
4. quality control: screened annotators' judgments are re-collected from others,
   then scenarios whose rating SD exceeds 1.2 are removed (``quality``);
5. the first ``n_images`` candidates that keep at least one scenario are released,
   rendered (synthetic style, PNG) and a ``photo/`` variant (photo style, JPEG) of up to
   ``photo_images`` of them, test split first.

Outputs in ``out``: ``scenarios.parquet`` + ``images/`` (the release format), and the
sidecars ``latent.parquet``, ``annotators.parquet``, ``judgments_raw.parquet``,
``canaries.parquet``, ``qc_report.json``, ``simulation.json``; ``photo/`` is a dataset too.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mmscale_core.data import majority_modality, split_by_image, write_dataset, write_upstream
from mmscale_core.data.ours import SCENARIO_FILES
from mmscale_core.data.upstream import CONTEXTS_FILE, FLAT_FILE, SPLITS_DIR
from mmscale_core.errors import MmscaleError
from mmscale_core.io import write_json, write_parquet
from mmscale_core.simulator import annotators as crowd
from mmscale_core.simulator import quality
from mmscale_core.simulator.expansion import expand, expanded_release
from mmscale_core.simulator.lexicon import CUES, KINDS
from mmscale_core.simulator.params import DEFAULT_PARAMS, SimulationParams
from mmscale_core.simulator.release import release_frames
from mmscale_core.simulator.scenarios import draw_scenes, write_scenarios
from mmscale_core.simulator.scenes import MAX_IMAGE_SIZE, SceneSpec, image_suffix, render_all

DEFAULT_IMAGES = 9260
DEFAULT_PHOTO_IMAGES = 1000
UPSTREAM_SPLIT = {"test_fraction": 0.2, "val_fraction": 0.1}  # the authors' 70/10/20 by image
RATERS_PER_ITEM = 3
# independent random streams
STREAM_SCENES, STREAM_SCENARIOS, STREAM_CROWD, STREAM_JUDGE, STREAM_RECOLLECT, STREAM_IMAGE, STREAM_PHOTO = range(7)
STREAM_EXPANSION, STREAM_EXPANSION_JUDGE = 7, 8  # after the source's: adding them moved nothing
EXPANSION_DIR = "expansion"


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream,)))


@dataclass
class Simulation:
    """Everything ``simulate`` writes, as frames (``release`` is the scenarios file)."""

    release: pd.DataFrame
    latent: pd.DataFrame
    annotators: pd.DataFrame
    judgments: pd.DataFrame
    canaries: pd.DataFrame
    scenes: pd.DataFrame
    qc_report: dict
    seed: int
    expansion: pd.DataFrame | None = None         # annotator-added scenarios (``origin: expansion``)
    expansion_latent: pd.DataFrame | None = None  # and their latent truth


def _image_ids(n: int) -> np.ndarray:
    width = max(5, len(str(n - 1)))
    return np.array([f"sim{i:0{width}d}" for i in range(n)], dtype=object)


@dataclass
class _Annotation:
    """Three judgments per scenario: who, ratings, modality codes (n_items x 3 arrays)."""

    who: np.ndarray
    ratings: np.ndarray
    modalities: np.ndarray

    def long(self, items: pd.DataFrame, names: np.ndarray, rows=None, cols=None) -> pd.DataFrame:
        """Long form (one row per judgment), all of them or only the (rows, cols) cells."""
        if rows is None:
            rows, cols = np.divmod(np.arange(self.who.size), RATERS_PER_ITEM)
        return pd.DataFrame({
            "scenario_id": items["scenario_id"].to_numpy()[rows],
            "annotator": names[self.who[rows, cols]],
            "rating": self.ratings[rows, cols],
            "modality": np.array(KINDS, dtype=object)[self.modalities[rows, cols]],
        })


def _write_about_scenes(n_candidates: int, seed: int, params: SimulationParams) -> tuple[pd.DataFrame, pd.DataFrame]:
    scenes = draw_scenes(n_candidates, _rng(seed, STREAM_SCENES), params.scenario)
    scenes.insert(0, "image_id", _image_ids(n_candidates))
    items = write_scenarios(scenes, _rng(seed, STREAM_SCENARIOS), params.scenario)
    image_ids = scenes["image_id"].to_numpy()[items["image_index"].to_numpy()]
    items.insert(0, "scenario_id", [f"{i}-{p}" for i, p in zip(image_ids, items["position"].tolist())])
    items.insert(1, "image_id", image_ids)
    return scenes, items


def _recollect(first: _Annotation, flagged: np.ndarray, truth: np.ndarray, grounding: np.ndarray,
               clear: np.ndarray, pool: pd.DataFrame, seed: int, params: SimulationParams):
    """Replace every judgment of a screened annotator by a fresh one from someone else."""
    rows, cols = np.nonzero(flagged[first.who])
    final = _Annotation(first.who.copy(), first.ratings.copy(), first.modalities.copy())
    if not len(rows):
        return final, rows, cols
    rng = _rng(seed, STREAM_RECOLLECT)
    workload = pool["workload"].to_numpy()
    for col in range(RATERS_PER_ITEM):  # one column at a time: a row may need several replacements
        r = rows[cols == col]
        if len(r):
            final.who[r, col] = crowd.replacement(final.who[r], workload, ~flagged, rng)
    new_who = final.who[rows, cols][:, None]
    final.ratings[rows, cols] = crowd.rate(truth[rows], new_who, pool, rng, params.annotators)[:, 0]
    final.modalities[rows, cols] = crowd.label_modality(grounding[rows], clear[rows], new_who, pool, rng,
                                                        params.annotators)[:, 0]
    return final, rows, cols


def simulate_tables(n_images: int = DEFAULT_IMAGES, seed: int = 0,
                    params: SimulationParams = DEFAULT_PARAMS) -> Simulation:
    """The simulated dataset without images: fast, used by ``simulate`` and calibration."""
    if n_images < 1:
        raise MmscaleError(f"--images must be at least 1, got {n_images}")
    n_candidates = n_images + max(5, int(np.ceil(0.02 * n_images)))
    scenes, items = _write_about_scenes(n_candidates, seed, params)

    # ---- annotation: three annotators per scenario, canaries for everyone
    ap = params.annotators
    rng = _rng(seed, STREAM_CROWD)
    pool = crowd.make_pool(len(items) * RATERS_PER_ITEM, rng, ap)
    names = pool["annotator"].to_numpy()
    who = crowd.assign(len(items), RATERS_PER_ITEM, pool["workload"].to_numpy(), rng)
    jrng = _rng(seed, STREAM_JUDGE)
    truth = items["true_acceptability"].to_numpy()
    grounding = pd.Index(KINDS).get_indexer(items["grounding"])
    clear = crowd.modality_clarity(grounding, jrng, ap)
    items["modality_clear"] = clear
    first = _Annotation(who, crowd.rate(truth, who, pool, jrng, ap),
                        crowd.label_modality(grounding, clear, who, pool, jrng, ap))
    canaries = crowd.answer_canaries(pool, jrng, ap, np.bincount(who.ravel(), minlength=len(pool)))

    # ---- quality control 1: screen annotators, re-collect their judgments
    screening = quality.screen_annotators(first.long(items, names), canaries, params.quality)
    flagged = np.isin(names, screening.index[screening["screened"]])
    final, rows, cols = _recollect(first, flagged, truth, grounding, clear, pool, seed, params)

    # ---- quality control 2: remove high-variance items
    removed = final.ratings.std(axis=1, ddof=1) > params.quality.max_rating_sd
    items["removed"] = removed

    # ---- release: the first n_images candidates that keep a scenario (later ones were never collected)
    alive = np.nonzero(np.bincount(items["image_index"][~removed], minlength=n_candidates) > 0)[0]
    if len(alive) < n_images:
        raise MmscaleError(f"internal: only {len(alive)} of {n_images} images survived quality control")
    last = alive[n_images - 1]
    in_scope = (items["image_index"] <= last).to_numpy()
    keep = in_scope & ~removed

    judgments = pd.concat([
        first.long(items, names).assign(round=0, screened=flagged[first.who].ravel()),
        final.long(items, names, rows, cols).assign(round=1, screened=False),
    ], ignore_index=True)
    judgments["item_removed"] = judgments["scenario_id"].map(dict(zip(items["scenario_id"], removed)))
    judgments = judgments[judgments["scenario_id"].isin(set(items["scenario_id"][in_scope]))]
    judgments = judgments.reset_index(drop=True)

    scenes_out = scenes.iloc[alive[:n_images]].reset_index(drop=True)
    split = split_by_image(scenes_out["image_id"])
    scenes_out["split"] = scenes_out["image_id"].map(split)
    release, latent = release_frames(items[keep].reset_index(drop=True), scenes, final.ratings[keep],
                                     final.modalities[keep], final.who[keep], names, split)
    annotators = _annotator_table(pool, screening)
    report = _qc_report(canaries, screening, judgments, removed, in_scope, release, n_images, int(last), params)
    added, added_latent = expand(release, latent, scenes, pool, flagged, _rng(seed, STREAM_EXPANSION),
                                 _rng(seed, STREAM_EXPANSION_JUDGE), params)
    return Simulation(release, latent, annotators, judgments, canaries, scenes_out, report, seed,
                      added, added_latent)


def _annotator_table(pool: pd.DataFrame, screening: pd.DataFrame) -> pd.DataFrame:
    """Each annotator's latent traits and what screening found."""
    cols = ["n", "residual_msq", "robust_z", "canary_pass", "canary_failures", "screened", "reason"]
    out = pool.join(screening[cols], on="annotator").rename(columns={"n": "n_judgments"})
    out["n_judgments"] = out["n_judgments"].fillna(0).astype(int)
    out["canary_failures"] = out["canary_failures"].fillna(0).astype(int)
    out["screened"] = out["screened"].fillna(False).astype(bool)
    out["reason"] = out["reason"].fillna("")
    return out


def _qc_report(canaries, screening, judgments, removed, in_scope, release, n_images, last, params) -> dict:
    """The counts of every quality-control step (the data-stats notebook shows these)."""
    n_screened = int(screening["screened"].sum())
    n_pool = len(screening)
    first = judgments[judgments["round"] == 0]
    n_items = int(in_scope.sum())
    n_removed = int((removed & in_scope).sum())
    return {
        "canary_pass_rate": quality.canary_pass_rate(canaries),
        "canary_answers": int(len(canaries)),
        "annotators": int(n_pool),
        "annotators_screened": n_screened,
        "share_annotators_screened": n_screened / max(1, n_pool),
        "screened_by_reason": {k: int(v) for k, v in screening.loc[screening["screened"], "reason"]
                               .value_counts().sort_index().items()},
        "judgments_first_round": int(len(first)),
        "judgments_recollected": int((judgments["round"] == 1).sum()),
        "share_judgments_recollected": float(first["screened"].mean()) if len(first) else 0.0,
        "items_collected": n_items,
        "items_removed_sd": n_removed,
        "share_items_removed_sd": n_removed / max(1, n_items),
        "max_rating_sd": params.quality.max_rating_sd,
        "images_collected": last + 1,
        "images_dropped_empty": last + 1 - n_images,
        "images_released": int(n_images),
        "scenarios_released": int(len(release)),
        "image_qc_shares": quality.image_qc_shares(release),
        "scenarios_severe_text_grounded": int((release["qc"] == "severe").sum()),
    }


def _jsonable(obj):
    """Parameters as JSON: tuple keys such as ('image', -1) become 'image/-1'."""
    if isinstance(obj, dict):
        return {("/".join(map(str, k)) if isinstance(k, tuple) else str(k)): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


def _specs(scenes: pd.DataFrame, seed: int, stream: int, index: np.ndarray) -> list[SceneSpec]:
    """Render specs of the given scene rows, each seeded by (stream, its candidate number)."""
    cue_cols = [f"cue_{c}" for c in CUES]
    cue_matrix = scenes[cue_cols].to_numpy()
    return [SceneSpec(image_id=scenes["image_id"].iat[i], place=scenes["place"].iat[i],
                      cues=tuple(c for c, on in zip(CUES, cue_matrix[i]) if on), qc=scenes["qc"].iat[i],
                      seed=seed, stream=(stream, int(scenes["image_id"].iat[i][3:])))
            for i in index]


def photo_selection(scenes: pd.DataFrame, n_photo: int) -> np.ndarray:
    """Row indices of the photo variant: test-split images first, then train, in id order."""
    order = np.lexsort((scenes["image_id"].to_numpy(), (scenes["split"] != "test").to_numpy()))
    return np.sort(order[: min(n_photo, len(scenes))])


def simulate(out: str | Path, n_images: int = DEFAULT_IMAGES, seed: int = 0, image_size: int = 224,
             photo_images: int = DEFAULT_PHOTO_IMAGES, workers: int | None = None, progress: bool = False,
             params: SimulationParams = DEFAULT_PARAMS, layout: str = "ours", expansion: bool = True) -> dict:
    """Write the simulated dataset to ``out``; returns timings and counts.

    ``expansion`` also writes ``expansion/``: the release plus the annotator-added scenarios
    (sec 3.2; test-split images only, see ``ExpansionParams``), every record with its
    ``origin``, in our layout, images linked from ``images/``. The release itself stays
    source-only, so that every number computed on it is the same with or without expansion.

    ``layout="upstream"`` writes the release in the authors' layout (flat file, split files,
    contexts file, images named with their extension) split 70/10/20 train/val/test by
    image; the sidecars and the ``photo/`` variant (our layout) are the same either way.
    """
    if layout not in ("ours", "upstream"):
        raise MmscaleError(f"--layout must be 'ours' or 'upstream', not {layout!r}")
    if not 16 <= image_size <= MAX_IMAGE_SIZE:
        raise MmscaleError(f"--image-size must be between 16 and {MAX_IMAGE_SIZE} (the paper's maximum), "
                           f"got {image_size}")
    out = Path(out)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    sim = simulate_tables(n_images, seed, params)
    timings["tables_s"] = time.perf_counter() - t0
    if layout == "upstream":
        split = split_by_image(sim.scenes["image_id"], **UPSTREAM_SPLIT)
        sim.scenes["split"] = sim.scenes["image_id"].map(split)
        sim.release["split"] = sim.release["image_id"].map(split)

    t = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("images", "photo", SPLITS_DIR, EXPANSION_DIR):
        if (out / stale).exists():
            shutil.rmtree(out / stale)
    for stale in (*SCENARIO_FILES, FLAT_FILE, CONTEXTS_FILE):  # the other layout's files of an earlier run
        (out / stale).unlink(missing_ok=True)
    write_parquet(out / "latent.parquet", sim.latent)
    write_parquet(out / "annotators.parquet", sim.annotators)
    write_parquet(out / "judgments_raw.parquet", sim.judgments)
    write_parquet(out / "canaries.parquet", sim.canaries)
    write_json(out / "qc_report.json", sim.qc_report)
    timings["write_s"] = time.perf_counter() - t

    t = time.perf_counter()
    specs = _specs(sim.scenes, seed, STREAM_IMAGE, np.arange(len(sim.scenes)))
    render_all(specs, out / "images", image_size, "synthetic", workers, progress)
    timings["render_s"] = time.perf_counter() - t

    t = time.perf_counter()
    chosen = photo_selection(sim.scenes, photo_images) if photo_images > 0 else np.array([], dtype=int)
    if len(chosen):
        photo_ids = set(sim.scenes["image_id"].iloc[chosen])
        photo = sim.release[sim.release["image_id"].isin(photo_ids)].copy()
        photo["image_source"] = "photo"
        render_all(_specs(sim.scenes, seed, STREAM_PHOTO, chosen), out / "photo" / "images", image_size, "photo",
                   workers, progress)
        write_dataset(photo, out / "photo")
    timings["photo_s"] = time.perf_counter() - t
    n_added = 0
    if expansion and sim.expansion is not None:
        n_added = _write_expansion(out / EXPANSION_DIR, sim, out / "images")
    # the scenarios file last: an interrupted run never leaves a dataset that looks complete
    if layout == "upstream":
        release = sim.release.assign(score=sim.release["ratings"].map(lambda r: float(np.mean(r))),
                                     modality=sim.release["modalities"].map(majority_modality))
        suffix = image_suffix("synthetic")
        write_upstream(release, out, {i: f"{i}{suffix}" for i in release["image_id"].unique()})
    else:
        write_dataset(sim.release, out)
    timings["total_s"] = time.perf_counter() - t0

    meta = {
        "generator": "mmscale simulate",
        "seed": seed,
        "layout": layout,
        "n_images": n_images,
        "image_size": image_size,
        "photo_images": int(len(chosen)),
        "scenarios": int(len(sim.release)),
        "expansion_scenarios": n_added if expansion else None,
        "image_format": {"images": image_suffix("synthetic"), "photo": image_suffix("photo")},
        "params": _jsonable(dataclasses.asdict(params)),
    }
    write_json(out / "simulation.json", meta)
    return {**timings, "scenarios": len(sim.release), "images": n_images, "photo_images": int(len(chosen)),
            "expansion_scenarios": n_added}


def _write_expansion(root: Path, sim: Simulation, images: Path) -> int:
    """The ``expansion/`` dataset: the release with the added scenarios (all with ``origin``),
    its latent truth and the source's QC report; images hard-linked (copied across devices)."""
    release = sim.release.copy()
    added = sim.expansion.assign(split=sim.expansion["image_id"].map(dict(zip(release["image_id"],
                                                                              release["split"]))))
    (root / "images").mkdir(parents=True, exist_ok=True)
    for src in images.iterdir():
        dst = root / "images" / src.name
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)
    write_parquet(root / "latent.parquet", pd.concat([sim.latent, sim.expansion_latent], ignore_index=True))
    write_json(root / "qc_report.json", sim.qc_report)
    write_dataset(expanded_release(release, added), root)
    return int(len(added))
