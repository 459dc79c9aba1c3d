"""Training runs as the pipeline sees them: configs from a profile, results side by side.

The notebooks stay thin by calling these: ``training_config`` turns the active
profile of ``params.yaml`` plus one matrix cell into a ``TrainConfig``;
``collect_runs`` finds finished runs under a directory; ``run_predictions``
joins their predictions to the human scores; ``evaluate_runs`` computes every
Table 3/4 metric per (backbone, objective) with seeds averaged (see
``metrics.evaluate_lists``); ``paper_table3`` lays the paper's numbers out in
the same shape, so the two can be printed and drawn next to each other.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from mmscale_core.errors import MmscaleError
from mmscale_core.params import load_params, load_profile

# The paper's names for the objectives (Tables 3-4) and which need an isotonic map to 1-5
OBJECTIVE_LABELS = {
    "lipo": "Ours (Listwise PO)",
    "lipo+mse": "Ours + MSE",
    "bpo": "BPO (Binary PO)",
    "bce": "BCE (Binary Class.)",
}
PAPER_SUPERVISION = {"lipo": "listwise", "bpo": "bpo", "bce": "bce"}


def training_config(params_file: str | Path, profile_name: str | None, *, run_dir: str | Path,
                    data_dir: str | Path = "data/dataset", backbone: str | None = None,
                    objective: str = "lipo", seed: int = 0, **overrides: Any):
    """A ``TrainConfig`` from ``profiles.<profile>.training`` plus this run's own settings.

    ``backbone`` defaults to the first of ``train_matrix.backbone`` (the main
    backbone, used by the ablations); an override given as None keeps the
    profile's value (a notebook parameter left at None).
    """
    from mmscale_core.models import backbone_kwargs_for
    from mmscale_core.training import TrainConfig

    params = load_params(params_file)
    profile = load_profile(params_file, profile_name)
    if backbone is None:
        backbone = params.get("train_matrix", {}).get("backbone", ["minilm-effnet"])[0]
    values = {**(profile.get("training") or {}), **{k: v for k, v in overrides.items() if v is not None}}
    # shared keys + this backbone's block of training.backbone_kwargs, as the run will record them
    values["backbone_kwargs"] = backbone_kwargs_for(backbone, values.get("backbone_kwargs"))
    return TrainConfig.from_dict({**values, "data": str(data_dir), "out": str(run_dir),
                                  "backbone": backbone, "objective": objective, "seed": int(seed)})


def collect_runs(root: str | Path) -> pd.DataFrame:
    """Every finished run (a ``metrics.json`` next to its ``config.json``) below ``root``."""
    rows = []
    for metrics_path in sorted(Path(root).rglob("metrics.json")):
        run_dir = metrics_path.parent
        config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
        rows.append({"run": run_dir.relative_to(root).as_posix(), "path": str(run_dir), **{
            k: config.get(k) for k in ("backbone", "objective", "seed", "tuning", "max_list_size",
                                       "train_fraction", "epochs", "modality_weight")}})
    if not rows:
        raise MmscaleError(f"{root}: no finished training runs (run the training stages first: dvc repro)")
    return pd.DataFrame(rows)


def objective_on_scale(objective: str) -> bool:
    from mmscale_core.losses import make_objective

    return make_objective(objective).on_score_scale


def run_predictions(runs: pd.DataFrame, scenarios: pd.DataFrame, split: str | None = "test") -> pd.DataFrame:
    """Scenarios (of ``split``) with two columns per run: ``pred:<run>`` (raw score, for ranking)
    and ``scale:<run>`` (the 1-5 score the safety metrics read: raw for objectives trained on
    the scale, else the isotonic map fitted on the val split, or train without one)."""
    frame = scenarios if split is None else scenarios[scenarios["split"] == split]
    frame = frame[["scenario_id", "image_id", "split", "score", "modality"]].copy()
    for run in runs.itertuples():
        preds = pd.read_parquet(Path(run.path) / "predictions.parquet").set_index("scenario_id")
        missing = ~frame["scenario_id"].isin(preds.index)
        if missing.any():
            raise MmscaleError(f"{run.path}: no prediction for {int(missing.sum())} scenario(s), "
                               f"e.g. {frame.loc[missing, 'scenario_id'].iloc[0]} (trained on other data?)")
        raw = preds.loc[frame["scenario_id"], "score"].to_numpy()
        cal = preds.loc[frame["scenario_id"], "calibrated_score"].to_numpy()
        frame[f"pred:{run.run}"] = raw
        frame[f"scale:{run.run}"] = raw if objective_on_scale(run.objective) else cal
        if "modality_pred" in preds.columns:
            frame[f"modality:{run.run}"] = preds.loc[frame["scenario_id"], "modality_pred"].to_numpy()
    return frame


def ablation_runs(ablations_root: str | Path, main_root: str | Path) -> tuple[pd.DataFrame, int, float]:
    """Fig. 8's runs: the ablations plus the main lipo run (seed 0), and the main run's (m, f).

    The main run is each curve's shared point: Fig. 8a varies m at the main
    run's training fraction, Fig. 8b varies f at its list size. An ablation
    run with the main run's own settings (the default profile trains on a
    quarter of the images, one of the fractions ablated) is the same
    computation and is left out.
    """
    ablation = collect_runs(ablations_root)
    main = collect_runs(main_root)
    main = main[(main["objective"] == "lipo") & (main["seed"] == 0)].iloc[:1]
    if main.empty:
        raise MmscaleError(f"{main_root}: no lipo run with seed 0 (the ablations' reference point)")
    m, f = int(main["max_list_size"].iloc[0]), float(main["train_fraction"].iloc[0])
    same = (ablation["max_list_size"] == m) & (ablation["train_fraction"] == f)
    return pd.concat([ablation[~same], main], ignore_index=True), m, f


def fig8_claims(table: pd.DataFrame, main_m: int, main_f: float, source: str) -> pd.DataFrame:
    """The paper's two Fig. 8 claims (sec 5.2), next to what the companion's ablation table says.

    ``table`` is :func:`evaluate_runs` grouped by (max_list_size, train_fraction). The paper
    gives no numbers for Fig. 8, only words, so each claim has two rows: the paper's value where
    it gives one (``source`` = paper), and the companion's measure of it with the CIs behind it:

    * "performance saturates around m = 4": the smallest m whose NDCG@5 CI reaches the best
      m's NDCG@5 (no later m is clearly better);
    * "at f = 50%, NDCG@5 retains most of the full-set score": the share of the main run's
      NDCG@5 above chance that the f = 50% run keeps, (N(0.5) - chance) / (N(main) - chance);
    * "... with a lower Unsafe rate": Unsafe Rate at f = 50% minus at the main run's f.
    """
    from mmscale_core import paper
    from mmscale_core.outputs import provenance_label

    def cell(metric: str, m: int, f: float) -> pd.Series | None:
        rows = table[(table["metric"] == metric) & (table["max_list_size"] == m) & (table["train_fraction"] == f)]
        return None if rows.empty else rows.iloc[0]

    def fmt(row: pd.Series) -> str:
        return f"{row['value']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}]"

    by_m = table[(table["metric"] == "NDCG@5") & (table["train_fraction"] == main_f)].sort_values("max_list_size")
    best = by_m.loc[by_m["value"].idxmax()] if not by_m.empty else None
    saturating = by_m[by_m["ci_high"] >= best["value"]]["max_list_size"].min() if best is not None else None
    m_values = "; ".join(f"m={int(row['max_list_size'])}: {fmt(row)}" for _, row in by_m.iterrows())
    half_f = paper.STATISTICS["data_efficiency_fraction"]
    ndcg_half, ndcg_main = cell("NDCG@5", main_m, half_f), cell("NDCG@5", main_m, main_f)
    unsafe_half, unsafe_main = cell("Unsafe Rate", main_m, half_f), cell("Unsafe Rate", main_m, main_f)
    have_ndcg = ndcg_half is not None and ndcg_main is not None
    have_unsafe = unsafe_half is not None and unsafe_main is not None
    kept = ((ndcg_half["value"] - ndcg_half["chance"]) / (ndcg_main["value"] - ndcg_main["chance"])
            if have_ndcg else float("nan"))
    claims = [
        ("NDCG@5 saturates around list size m", f"m = {paper.STATISTICS['ranking_saturation_list_size']}",
         f"m = {saturating}" if saturating is not None else "n/a", m_values or "n/a"),
        (f"at f = {half_f:.0%}, NDCG@5 retains most of the full-set score above chance",
         "most (no number given)", f"{kept:.0%}" if kept == kept else "n/a",
         f"f={half_f:g}: {fmt(ndcg_half)}; f={main_f:g}: {fmt(ndcg_main)}; chance {ndcg_main['chance']:.3f}"
         if have_ndcg else "n/a"),
        (f"at f = {half_f:.0%}, a lower Unsafe Rate than the full set", "lower (no number given)",
         f"{unsafe_half['value'] - unsafe_main['value']:+.3f}" if have_unsafe else "n/a",
         f"f={half_f:g}: {fmt(unsafe_half)}; f={main_f:g}: {fmt(unsafe_main)}" if have_unsafe else "n/a"),
    ]
    rows = []
    for claim, theirs, ours, evidence in claims:
        rows.append((claim, provenance_label("paper"), theirs, "sec 5.2, Fig. 8"))
        rows.append((claim, source, ours, evidence))
    return pd.DataFrame(rows, columns=["claim", "source", "value", "evidence (95% CI)"])


def evaluate_runs(runs: pd.DataFrame, frame: pd.DataFrame, group_by: tuple[str, ...] = ("backbone", "objective"),
                  **evaluate_kwargs: Any) -> pd.DataFrame:
    """All Table 3/4 metrics per group of runs (seeds averaged), with CI, chance and oracle."""
    from mmscale_core.metrics import evaluate_lists

    tables = []
    for key, group in runs.groupby(list(group_by), sort=False):
        key = key if isinstance(key, tuple) else (key,)
        table = evaluate_lists(frame, pred_col=[f"pred:{r}" for r in group["run"]],
                               scale_col=[f"scale:{r}" for r in group["run"]], **evaluate_kwargs)
        for name, value in zip(group_by, key):
            table.insert(0, name, value)
        table["n_seeds"] = len(group)
        tables.append(table)
    return pd.concat(tables, ignore_index=True)


def compare_objectives(runs: pd.DataFrame, frame: pd.DataFrame, reference: str = "lipo",
                       **compare_kwargs: Any) -> pd.DataFrame:
    """Paired tests, per backbone, of ``reference`` against every other objective (seeds averaged)."""
    from mmscale_core.metrics import compare

    out = []
    for backbone, group in runs.groupby("backbone", sort=False):
        by_obj = {obj: tuple(f"pred:{r}" for r in g["run"]) for obj, g in group.groupby("objective", sort=False)}
        if reference not in by_obj or len(by_obj) < 2:
            continue
        others = [cols for obj, cols in by_obj.items() if obj != reference]
        scale = {f"pred:{r}": f"scale:{r}" for r in group["run"]}
        table = compare(frame, by_obj[reference], *others, scale_cols=scale, **compare_kwargs)
        names = {cols[0]: obj for obj, cols in by_obj.items()}
        table["reference"] = table["reference"].map(names)
        table["other"] = table["other"].map(names)
        table.insert(0, "backbone", backbone)
        out.append(table)
    if not out:
        raise MmscaleError(f"no backbone has both {reference!r} and another objective to compare")
    return pd.concat(out, ignore_index=True)


def paper_table3() -> pd.DataFrame:
    """The paper's Table 3 in the tidy shape of :func:`evaluate_runs` (source = paper)."""
    from mmscale_core import paper

    names = dict(zip(paper.TABLE3_METRICS, ("NDCG@5", "MRR", "Unsafe Rate", "AUC-Safety")))
    rows = []
    for backbone, by_sup in paper.TABLE3.items():
        for sup, values in by_sup.items():
            objective = {v: k for k, v in PAPER_SUPERVISION.items()}[sup]
            for key, value in zip(paper.TABLE3_METRICS, values):
                rows.append({"backbone": backbone, "objective": objective, "metric": names[key], "value": value})
    return pd.DataFrame(rows)


def training_curve(run_dir: str | Path) -> pd.DataFrame:
    """The run's ``train_log.csv`` (one row per optimizer step)."""
    path = Path(run_dir) / "train_log.csv"
    if not path.is_file():
        raise MmscaleError(f"{run_dir}: no train_log.csv")
    return pd.read_csv(path)


def paper_table4() -> pd.DataFrame:
    """The paper's Table 4 (means over its four VLMs) in tidy form."""
    from mmscale_core import paper

    return pd.DataFrame([{"backbone": "mean of 4 VLMs", "objective": obj, "metric": metric, "value": value}
                         for obj, sup in PAPER_SUPERVISION.items()
                         for metric, value in zip(("Kendall tau", "NDCG@5"), paper.TABLE4[sup])])


def lists_with(frame: pd.DataFrame, modality: str) -> pd.DataFrame:
    """The lists (images) that contain at least one scenario whose majority label is ``modality``."""
    return frame[frame["image_id"].isin(frame.loc[frame["modality"] == modality, "image_id"])]


def modality_ablation(runs: pd.DataFrame, frame: pd.DataFrame, **evaluate_kwargs: Any) -> pd.DataFrame:
    """Metrics per backbone on all lists and on lists with a text- / image- / both-grounded scenario."""
    tables = []
    for subset in ("all", "text", "image", "both"):
        part = frame if subset == "all" else lists_with(frame, subset)
        if part["image_id"].nunique() < 2:
            continue
        table = evaluate_runs(runs, part, group_by=("backbone",), **evaluate_kwargs)
        tables.append(table.assign(lists="all lists" if subset == "all" else f"lists with a {subset}-grounded scenario"))
    return pd.concat(tables, ignore_index=True)


def compare_modalities(runs: pd.DataFrame, frame: pd.DataFrame, reference: str = "minilm-effnet",
                       **compare_kwargs: Any) -> pd.DataFrame:
    """Paired tests of the ``reference`` backbone (both towers) against the single-tower ablations.

    The question Table 3's modality rows answer: does seeing the image help
    rank a list? Tested on all lists and on the lists with a text-, image- or
    both-grounded scenario (same subsets as :func:`modality_ablation`); seeds
    of a backbone are averaged. Only the ``lipo`` runs take part.
    """
    from mmscale_core.metrics import compare

    lipo = runs[runs["objective"] == "lipo"]
    by_backbone = {b: tuple(f"pred:{r}" for r in g["run"]) for b, g in lipo.groupby("backbone", sort=False)}
    if reference not in by_backbone or len(by_backbone) < 2:
        raise MmscaleError(f"need lipo runs of {reference!r} and of another backbone, have {sorted(by_backbone)}")
    others = [cols for b, cols in by_backbone.items() if b != reference]
    scale = {f"pred:{r}": f"scale:{r}" for r in lipo["run"]}
    names = {cols[0]: b for b, cols in by_backbone.items()}
    tables = []
    for subset in ("all", "text", "image", "both"):
        part = frame if subset == "all" else lists_with(frame, subset)
        if part["image_id"].nunique() < 2:
            continue
        table = compare(part, by_backbone[reference], *others, scale_cols=scale, **compare_kwargs)
        table["reference"] = table["reference"].map(names)
        table["other"] = table["other"].map(names)
        table.insert(0, "lists", "all lists" if subset == "all" else f"lists with a {subset}-grounded scenario")
        tables.append(table)
    return pd.concat(tables, ignore_index=True)


def uncalibrated_scale(runs: pd.DataFrame, frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with a ``raw:<run>`` column per run: its scores before any isotonic map.

    Objectives trained on the 1-5 scale keep their raw score; the others' raw scores (logits on
    no scale) are stretched linearly from their own range onto 1-5, a map that uses no human
    label, so their reliability curve shows the objective's calibration, not the map's."""
    import numpy as np

    out = frame.copy()
    for run in runs.itertuples():
        raw = out[f"pred:{run.run}"].to_numpy(dtype=float)
        if not objective_on_scale(run.objective):
            low, high = np.nanmin(raw), np.nanmax(raw)
            raw = 1.0 + 4.0 * (raw - low) / (high - low) if high > low else np.full_like(raw, 3.0)
        out[f"raw:{run.run}"] = raw
    return out


def calibration_by_objective(runs: pd.DataFrame, frame: pd.DataFrame, n_bins: int = 10, n_boot: int = 200,
                             seed: int = 0, column: str = "scale") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fig. 9: reliability curves and ECE (95% CI, bootstrap over images) per objective, seeds pooled.

    ``column`` picks the scores: ``scale`` (what the safety metrics read) or ``raw``
    (:func:`uncalibrated_scale`)."""
    import numpy as np

    from mmscale_core.metrics import expected_calibration_error, reliability_curve

    rng = np.random.default_rng(seed)
    images = frame["image_id"].to_numpy()
    unique, inverse = np.unique(images, return_inverse=True)
    curves, rows = [], []
    for objective, group in runs.groupby("objective", sort=False):
        label = OBJECTIVE_LABELS.get(objective, objective)
        y_true = np.tile(frame["score"].to_numpy(), len(group))
        y_pred = np.concatenate([frame[f"{column}:{r}"].to_numpy() for r in group["run"]])
        curves.append(reliability_curve(y_true, y_pred, n_bins).assign(objective=label))
        boots = []
        for _ in range(n_boot):
            draws = np.bincount(rng.integers(0, len(unique), len(unique)), minlength=len(unique))
            weight = np.tile(draws[inverse], len(group))  # an image drawn k times counts k times
            boots.append(expected_calibration_error(np.repeat(y_true, weight), np.repeat(y_pred, weight), n_bins))
        rows.append({"objective": label, "value": expected_calibration_error(y_true, y_pred, n_bins),
                     "ci_low": float(np.quantile(boots, 0.025)) if boots else float("nan"),
                     "ci_high": float(np.quantile(boots, 0.975)) if boots else float("nan"),
                     "n_seeds": len(group), "n_boot": n_boot})
    return pd.concat(curves, ignore_index=True), pd.DataFrame(rows)


MODALITY_METHODS = {"frozen": "Frozen Encoder + Head", "lora": "Ours (LoRA-tuned)"}


def modality_classification(head_runs: pd.DataFrame, frame: pd.DataFrame, train_labels: pd.Series,
                            seed: int = 0) -> pd.DataFrame:
    """Table 5: accuracy and macro-F1 of majority class (of the training split), uniform random
    guessing, and each run's modality head, on ``frame``'s majority labels."""
    import numpy as np

    from mmscale_core.data import MODALITIES
    from mmscale_core.metrics import modality_scores

    truth = frame["modality"].tolist()
    majority = train_labels.value_counts().idxmax()
    guesses = np.random.default_rng(seed).choice(list(MODALITIES), len(truth)).tolist()
    rows = [{"method": "Majority Class", **modality_scores(truth, [majority] * len(truth))},
            {"method": "Random Guessing", **modality_scores(truth, guesses)}]
    for run in head_runs.itertuples():
        rows.append({"method": MODALITY_METHODS.get(run.tuning, run.tuning),
                     **modality_scores(truth, frame[f"modality:{run.run}"].tolist())})
    return pd.DataFrame(rows)


def paper_table5() -> pd.DataFrame:
    from mmscale_core import paper

    return pd.DataFrame([{"method": k, "accuracy": v[0] / 100, "macro_f1": v[1] / 100}
                         for k, v in paper.TABLE5.items()])


def metrics_summary(table: pd.DataFrame) -> dict[str, dict[str, dict[str, float | None]]]:
    """One block per backbone/objective for ``dvc metrics show``: ``{"backbone-objective": {metric:
    {value, ci_low, ci_high, chance}}}``. The notebook writes each block to its own file, so the
    command prints one row per objective (with its CIs) instead of one line of every number."""
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for _, row in table.iterrows():
        entry = out.setdefault(f"{row['backbone']}-{row['objective']}", {})
        entry[row["metric"]] = {key: None if key not in row or pd.isna(row[key]) else round(float(row[key]), 4)
                                for key in ("value", "ci_low", "ci_high", "chance")}
    return out


def rescore_runs(runs: pd.DataFrame, dataset, frame: pd.DataFrame, *, raw_prefix: str, scale_prefix: str,
                 progress: bool = False) -> pd.DataFrame:
    """Score ``dataset`` with every run and add, for ``frame``'s scenarios, ``{raw_prefix}:{run}`` (the raw
    score, what ranking metrics read) and ``{scale_prefix}:{run}`` (the 1-5 scale: the raw score for
    objectives on it, the run's isotonic map otherwise), in place.

    Why: the companion's checks on other data (photo-style images, annotator-added scenarios) score
    the same runs on a second dataset and must read scores exactly as Table 3 does.
    """
    from mmscale_core.predict import load_run, predict_dataset

    for run in runs.itertuples():
        preds = predict_dataset(load_run(run.path), dataset, progress=progress).set_index("scenario_id")
        raw = preds.loc[frame["scenario_id"], "score"].to_numpy()
        frame[f"{raw_prefix}:{run.run}"] = raw
        frame[f"{scale_prefix}:{run.run}"] = (raw if objective_on_scale(run.objective)
                                              else preds.loc[frame["scenario_id"], "calibrated_score"].to_numpy())
    return frame


def real_image_validation(runs: pd.DataFrame, synthetic, photo, min_images: int = 30,
                          progress: bool = False, **compare_kwargs: Any) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Fig. 3: the same runs scored on the same scenarios with synthetic vs photo-style images.

    The paper re-scored 1K caption-matched Visual Genome photos; the simulator's
    ``photo/`` variant re-renders ~1K of its scenes in another visual style with
    the same scenarios and human ratings. Only test-split images are used
    (the runs were trained on the synthetic version of training images),
    unless fewer than ``min_images`` are in the test split, in which case all
    photo images are used and the returned note says so. Returns (metrics per
    image style, paired differences synthetic - photo, note).
    """
    from mmscale_core.metrics import compare, evaluate_lists

    ids = set(photo.scenarios["scenario_id"])
    frame = synthetic.scenarios[synthetic.scenarios["scenario_id"].isin(ids)]
    test = frame[frame["split"] == "test"]
    note = f"{test['image_id'].nunique()} test-split images"
    if test["image_id"].nunique() >= min_images:
        frame = test
    else:
        note = (f"only {test['image_id'].nunique()} photo images are in the test split; all "
                f"{frame['image_id'].nunique()} photo images are used (training images included)")
    frame = run_predictions(runs, frame, split=None)
    photo_rows = photo.scenarios.set_index("scenario_id")
    rescore_runs(runs, photo, frame, raw_prefix="photo", scale_prefix="photoscale", progress=progress)
    differs = photo_rows.loc[frame["scenario_id"], "score"].to_numpy() != frame["score"].to_numpy()
    if differs.any():
        raise MmscaleError(f"{photo.root}: {int(differs.sum())} scenario(s) carry other ratings than in "
                           f"{synthetic.root}; the two image styles must share their human scores")
    syn = tuple(f"pred:{r}" for r in runs["run"])
    pho = tuple(f"photo:{r}" for r in runs["run"])
    scales = {**{f"pred:{r}": f"scale:{r}" for r in runs["run"]},
              **{f"photo:{r}": f"photoscale:{r}" for r in runs["run"]}}
    shared = {k: v for k, v in compare_kwargs.items() if k in ("min_list_size", "n_boot", "seed")}
    metrics = pd.concat([
        evaluate_lists(frame, pred_col=list(cols), scale_col=[scales[c] for c in cols], **shared).assign(images=style)
        for style, cols in (("synthetic", syn), ("photo-style", pho))
    ], ignore_index=True)
    deltas = compare(frame, syn, pho, scale_cols=scales, **compare_kwargs)
    deltas["reference"], deltas["other"] = "synthetic", "photo-style"
    return metrics, deltas, note


# pairwise accuracy (the upstream release's headline; not in the paper's Table 3) beside NDCG@5
HEADLINE_METRICS = ("NDCG@5", "Pairwise accuracy (delta>=0)", "MRR", "Unsafe Rate", "AUC-Safety")


def metric_cell(row: pd.Series, digits: int = 3) -> str:
    """One metric of an :func:`evaluate_runs` row as 'value [ci_low, ci_high] (chance c)';
    "—" where the metric is undefined, and no interval or chance part where that one is."""
    from mmscale_core.display import MISSING

    if pd.isna(row["value"]):
        return MISSING
    text = f"{row['value']:.{digits}f}"
    if not (pd.isna(row["ci_low"]) or pd.isna(row["ci_high"])):
        text += f" [{row['ci_low']:.{digits}f}, {row['ci_high']:.{digits}f}]"
    return text + ("" if pd.isna(row["chance"]) else f" (chance {row['chance']:.{digits}f})")


def metrics_wide(table: pd.DataFrame, index: list[str], digits: int = 3) -> pd.DataFrame:
    """An :func:`evaluate_runs` table for display: a column per metric, each cell with its CI and
    chance level, so no ranking metric is shown without what a random scorer would get. A table's
    ``source`` column (paper, or the companion on simulated or real data) leads the index, so every
    number shown says where it comes from."""
    if "source" in table.columns and "source" not in index:
        index = ["source", *index]
    cells = table.assign(cell=[metric_cell(row, digits) for _, row in table.iterrows()])
    return cells.pivot_table(index=index, columns="metric", values="cell", aggfunc="first", sort=False)


def headline_table(companion: pd.DataFrame, source: str) -> pd.DataFrame:
    """One row per (source, supervision): the paper's mean over its four VLMs, and the companion's
    value with its 95% CI and the chance level of a random scorer, per Table 3 metric (and pairwise
    accuracy, which the paper does not report).

    Rows follow the paper's order of objectives (Ours first), not the runs' directory order. The
    paper's values keep its two decimals; the companion's get three, as in every other table: at
    two, an NDCG@5 CI of width 0.008 read as no interval at all ("0.96 [0.96, 0.96]")."""
    paper = paper_table3()
    rows = []
    for objective in PAPER_SUPERVISION:
        row = {"source": "paper (mean of 4 VLMs)", "supervision": OBJECTIVE_LABELS[objective]}
        for metric in HEADLINE_METRICS:
            values = paper[(paper["objective"] == objective) & (paper["metric"] == metric)]["value"]
            row[metric] = f"{values.mean():.2f}" if len(values) else "not reported"
        rows.append(row)
    order = {objective: i for i, objective in enumerate(OBJECTIVE_LABELS)}
    groups = sorted(companion.groupby(["backbone", "objective"], sort=False),
                    key=lambda item: order.get(item[0][1], len(order)))
    for (backbone, objective), group in groups:
        row = {"source": f"{source}: {backbone}", "supervision": OBJECTIVE_LABELS.get(objective, objective)}
        by_metric = group.set_index("metric")
        for metric in HEADLINE_METRICS:
            row[metric] = metric_cell(by_metric.loc[metric], digits=3)
        rows.append(row)
    return pd.DataFrame(rows)


def calibration_note(runs: pd.DataFrame) -> str:
    """Which split the isotonic maps of the objectives without a 1-5 scale were fitted on
    (``calibration_split`` in each run's metrics.json: val when the dataset has one, else train)."""
    fitted: dict[str, list[str]] = {}
    for run in runs.itertuples():
        if objective_on_scale(run.objective):
            continue
        metrics = json.loads((Path(run.path) / "metrics.json").read_text(encoding="utf-8"))
        fitted.setdefault(metrics.get("calibration_split", "train (not recorded)"), []).append(run.run)
    if not fitted:
        return "Every objective here predicts on the 1-5 scale; no isotonic map was fitted."
    parts = [f"the {split} split ({len(names)} run{'s' * (len(names) != 1)})" for split, names in sorted(fitted.items())]
    return ("Objectives without a 1-5 scale are read through an isotonic map fitted on "
            f"{' and '.join(parts)}: the validation split when the release has one, else the training split.")
