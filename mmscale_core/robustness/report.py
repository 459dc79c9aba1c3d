"""What notebook 09 calls: the suite on the pipeline's main runs, tables with chance levels, figures.

``suite_runs`` finds the runs (seed 0 of every objective, the modality ablations),
``run_all`` scores each with the suite (and the lipo run with test-time augmentation)
and writes each run's ``robustness.parquet`` / ``summary.csv`` like ``mmscale
robustness``; the table functions read those back and put every number beside its
chance level (``measures.chance_levels``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from mmscale_core.metrics import ndcg_padded, pad_lists
from mmscale_core.metrics.evaluate import bootstrap_weights
from mmscale_core.robustness.measures import (
    MIN_RANKING_LIST, NDCG_K, chance_levels, compare_flip_rates, summarize,
)
from mmscale_core.robustness.perturbations import Perturbation, get_perturbations
from mmscale_core.robustness.runner import RESULTS_FILE, SUMMARY_FILE, PerturbedImages, run_suite, write_outputs

OBJECTIVE_ORDER = ("lipo", "lipo+mse", "bpo", "bce")


def suite_runs(main_dir: str | Path, modality_dir: str | Path | None = None, seed: int = 0) -> pd.DataFrame:
    """The runs the stage measures: training seed ``seed`` of every objective under ``main_dir``, then
    every run under ``modality_dir``; columns name, label, objective, backbone, path."""
    rows = []
    for root, kind in ((main_dir, "main"), (modality_dir, "modality")):
        if root is None or not Path(root).is_dir():
            continue
        for config_path in sorted(Path(root).rglob("config.json")):
            if not (config_path.parent / "metrics.json").is_file():
                continue  # an unfinished run
            config = json.loads(config_path.read_text(encoding="utf-8"))
            if kind == "main" and int(config.get("seed", 0)) != seed:
                continue
            name = config["objective"] if kind == "main" else config["backbone"]
            label = config["objective"] if kind == "main" else f"{config['backbone']} ({config['objective']})"
            rows.append({"name": name, "label": label, "objective": config["objective"],
                         "backbone": config["backbone"], "kind": kind, "path": str(config_path.parent)})
    runs = pd.DataFrame(rows, columns=["name", "label", "objective", "backbone", "kind", "path"])
    order = {o: i for i, o in enumerate(OBJECTIVE_ORDER)}
    runs["_order"] = [(0 if k == "main" else 1, order.get(o, 9), n)
                      for k, o, n in zip(runs["kind"], runs["objective"], runs["name"])]
    return runs.sort_values("_order").drop(columns="_order").reset_index(drop=True)


def run_all(runs: pd.DataFrame, dataset, out_dir: str | Path, *, perturbations: list[Perturbation] | None = None,
            seed: int = 0, max_images: int | None = None, n_boot: int = 1000, tta_views: int = 0,
            tta_run: str = "lipo", tta_images: int | None = None, torch_threads: int = 0,
            progress: bool = True) -> dict[str, pd.DataFrame]:
    """Score every run with the suite; ``tta_run`` also with test-time augmentation (name ``<run>+tta``)
    on the sycophancy and typographic probes, over the first ``tta_images`` of the suite's images.

    ``torch_threads`` > 0 sets torch's intra-op threads first: in a notebook kernel forked from the
    warm-kernel zygote, two threads ran this suite several times slower than one on 2 cores.
    """
    from mmscale_core.robustness.scorers import AugmentedScorer, RunScorer

    if torch_threads > 0:
        import torch

        torch.set_num_threads(int(torch_threads))

    perturbations = perturbations or get_perturbations(None)
    out_dir = Path(out_dir)
    results = {}
    donors: dict[str, RunScorer] = {}  # per tower, the first run with it: later runs reuse its features
    copies = PerturbedImages(dataset, seed)  # every run reads the same perturbed images
    for run in tqdm(list(runs.itertuples()), desc="robustness runs", unit="run", disable=not progress):
        scorer = RunScorer.from_run_dir(run.path, name=run.name)
        for donor in dict.fromkeys(donors.values()):
            scorer.share_features_with(donor)
        results[run.name] = _measure(scorer, dataset, perturbations, out_dir / run.name, seed, max_images,
                                     n_boot, progress, copies)
        if tta_views and run.name == tta_run:
            probes = [p for p in perturbations if p.probe in ("sycophancy", "typographic")]
            tta = AugmentedScorer(scorer, k=int(tta_views), seed=seed)
            results[f"{run.name}+tta"] = _measure(tta, dataset, probes, out_dir / f"{run.name}+tta", seed,
                                                  tta_images or max_images, n_boot, progress)
        for tower in scorer.tower_names():
            donors.setdefault(tower, scorer)
    return results


def _measure(scorer, dataset, perturbations, out: Path, seed, max_images, n_boot, progress,
             perturbed_images: PerturbedImages | None = None) -> pd.DataFrame:
    frame = run_suite(scorer, dataset, perturbations, seed=seed, max_images=max_images, progress=progress,
                      perturbed_images=perturbed_images)
    write_outputs(out, frame, summarize(frame, dataset.scenarios, perturbations, n_boot=n_boot, seed=seed))
    return frame


def load_results(out_dir: str | Path, names: list[str]) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """Each run's ``robustness.parquet`` and all ``summary.csv`` files stacked (column ``run``)."""
    out_dir = Path(out_dir)
    results = {n: pd.read_parquet(out_dir / n / RESULTS_FILE) for n in names if (out_dir / n / RESULTS_FILE).is_file()}
    summary = pd.concat([pd.read_csv(out_dir / n / SUMMARY_FILE).assign(run=n) for n in results], ignore_index=True)
    return results, summary


def with_chance(summary: pd.DataFrame, results: dict[str, pd.DataFrame], scenarios: pd.DataFrame) -> pd.DataFrame:
    """``summary`` (stacked, column ``run``) with each row's chance level beside it."""
    chance = pd.concat([chance_levels(frame, scenarios).assign(run=name) for name, frame in results.items()],
                       ignore_index=True)
    return summary.merge(chance, on=["run", "perturbation", "modality", "measure"], how="left")


def measure_grid(table: pd.DataFrame, measure: str, runs: list[str], modality: str = "all") -> pd.DataFrame:
    """Perturbation x run of one measure's value (suite order of perturbations, given order of runs)."""
    part = table[(table["measure"] == measure) & (table["modality"] == modality)]
    grid = part.pivot(index="perturbation", columns="run", values="value")
    order = list(dict.fromkeys(part["perturbation"]))
    return grid.reindex(index=order, columns=[r for r in runs if r in grid.columns])


def cell(value: float, low: float, high: float, chance: float | None = None, digits: int = 3) -> str:
    """'0.123 [0.100, 0.150]' (and '; chance 0.4' when given): a number never without its CI."""
    if not np.isfinite(value):
        return "undefined"
    text = f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"
    return text + (f"; chance {chance:.{digits}f}" if chance is not None and np.isfinite(chance) else "")


def measure_table(table: pd.DataFrame, measure: str, runs: list[str], source: str,
                  modality: str = "all") -> pd.DataFrame:
    """One measure as perturbation rows x run columns of 'value [CI]; chance c' cells, plus kind/probe/source."""
    part = table[(table["measure"] == measure) & (table["modality"] == modality)].copy()
    part["cell"] = [cell(v, lo, hi, c) for v, lo, hi, c in
                    zip(part["value"], part["ci_low"], part["ci_high"], part["chance"])]
    wide = part.pivot(index=["perturbation", "kind", "probe"], columns="run", values="cell")
    order = list(dict.fromkeys(part["perturbation"]))
    wide = wide.reset_index().set_index("perturbation").loc[order].reset_index()
    wide = wide[["perturbation", "kind", "probe", *[r for r in runs if r in wide.columns]]]
    wide.insert(0, "source", source)
    return wide


def pooled_by_kind(results: dict[str, pd.DataFrame], scenarios: pd.DataFrame, n_boot: int = 1000,
                   seed: int = 0) -> pd.DataFrame:
    """Flip rate by modality grounding with all text (resp. image) perturbations pooled, per run, with chance.

    A text perturbation should move text-grounded judgments and an image one image-grounded ones;
    pooling the perturbations of a kind gives each cell enough scenarios for a CI.
    """
    rows = []
    for name, frame in results.items():
        kinds = _kinds(frame)
        pooled = frame.assign(perturbation=frame["perturbation"].map(lambda n: f"all {kinds[n]} perturbations"),
                              scenario_id=frame["scenario_id"] + "\0" + frame["perturbation"])
        human = pd.concat([scenarios[["scenario_id", "score"]].assign(
            scenario_id=scenarios["scenario_id"] + "\0" + p) for p in frame["perturbation"].unique()])
        pseudo = [Perturbation(f"all {k} perturbations", k, "pooled", 0, lambda x, r: x)
                  for k in ("text", "image") if k in kinds.values()]
        summary = summarize(pooled, human, pseudo, n_boot=n_boot, seed=seed)
        summary = summary[summary["measure"] == "flip rate"]
        chance = chance_levels(pooled, human)
        rows.append(summary.merge(chance, on=["perturbation", "modality", "measure"]).assign(run=name))
    return pd.concat(rows, ignore_index=True)


def _kinds(frame: pd.DataFrame) -> dict[str, str]:
    from mmscale_core.robustness.perturbations import BY_NAME

    return {n: BY_NAME[n].kind for n in frame["perturbation"].unique()}


def paired_tests(results: dict[str, pd.DataFrame], pairs: list[tuple[str, str]], n_boot: int = 1000,
                 n_perm: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Flip rate of run a minus run b, per probe (its perturbations pooled), paired over the same scenarios."""
    from mmscale_core.robustness.perturbations import BY_NAME

    rows = []
    for a, b in pairs:
        if a not in results or b not in results:
            continue
        names = list(dict.fromkeys(results[a]["perturbation"]))
        for probe in ("sycophancy", "typographic", "noise"):
            chosen = [n for n in names if BY_NAME[n].probe == probe]
            if not chosen:
                continue
            test = compare_flip_rates(results[a], results[b], chosen, n_boot=n_boot, n_perm=n_perm, seed=seed)
            rows.append({"a": a, "b": b, "probe": probe, **test[test["perturbation"] == "all"].iloc[0].drop(
                "perturbation").to_dict()})
    return pd.DataFrame(rows)


def ndcg_by_image(frame: pd.DataFrame, scenarios: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Per image, NDCG@5 of the original scores against the human ones and its chance level
    (a random order); lists of >= 2 scenarios where NDCG is defined."""
    one = frame[frame["perturbation"] == frame["perturbation"].iloc[0]]
    human = scenarios.set_index("scenario_id")["score"]
    one = one.assign(score=human.reindex(one["scenario_id"]).to_numpy())
    lists = pad_lists(one, "image_id", ["original", "score"], min_list_size=MIN_RANKING_LIST)
    mask = lists.mask
    truth, pred = np.where(mask, lists.values["score"], 0.0), np.where(mask, lists.values["original"], 0.0)
    values = pd.Series(ndcg_padded(truth, pred, mask, k=NDCG_K), index=lists.list_ids)
    chance = pd.Series(ndcg_padded(truth, np.zeros_like(pred), mask, k=NDCG_K), index=lists.list_ids)
    ok = values.notna()
    return values[ok], chance[ok]


def intervention_table(results: dict[str, pd.DataFrame], scenarios: pd.DataFrame, run: str = "lipo",
                       n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Test-time augmentation vs the plain run: flip rate per probe (paired, same scenarios) and NDCG@5 cost."""
    from mmscale_core.robustness.perturbations import BY_NAME

    tta_name = f"{run}+tta"
    if run not in results or tta_name not in results:
        return pd.DataFrame()
    tta = results[tta_name]
    plain = results[run]
    key = set(zip(tta["perturbation"], tta["scenario_id"]))
    plain = plain[[k in key for k in zip(plain["perturbation"], plain["scenario_id"])]]
    rows = []
    for probe in ("sycophancy", "typographic"):
        chosen = [n for n in dict.fromkeys(tta["perturbation"]) if BY_NAME[n].probe == probe]
        if not chosen:
            continue
        test = compare_flip_rates(tta, plain, chosen, n_boot=n_boot, n_perm=n_boot, seed=seed)
        test = test[test["perturbation"] == "all"].iloc[0]
        part = tta[tta["perturbation"].isin(chosen)]
        p = float((part["original"] > 2.5).mean())
        rows.append({"measure": f"flip rate, {probe} probes", "plain": test["flip_b"], "tta": test["flip_a"],
                     "tta - plain": test["diff"], "ci_low": test["ci_low"], "ci_high": test["ci_high"],
                     "p_value": test["p_value"], "chance": 2 * p * (1 - p)})
    (with_tta, chance), (without, _) = ndcg_by_image(tta, scenarios), ndcg_by_image(plain, scenarios)
    diff = (with_tta - without.reindex(with_tta.index)).to_numpy()
    low = high = np.nan
    if len(diff):  # paired bootstrap over the same images
        weights = bootstrap_weights(len(diff), n_boot, np.random.default_rng(seed))
        low, high = np.quantile((weights @ diff) / weights.sum(axis=1), [0.025, 0.975])
    rows.append({"measure": "NDCG@5 of the originals", "plain": without.mean(), "tta": with_tta.mean(),
                 "tta - plain": float(np.mean(diff)) if len(diff) else np.nan, "ci_low": low, "ci_high": high,
                 "p_value": np.nan, "chance": chance.mean()})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- figures

def flip_heatmap(grid: pd.DataFrame, chance: pd.DataFrame, title: str):
    """Heatmap of flip rate (perturbation x run), annotated; the runs' chance levels in the column labels."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, ax = plt.subplots(figsize=(1.3 + 1.1 * grid.shape[1], 0.8 + 0.36 * grid.shape[0]))
    labels = [f"{c}\n(chance {chance.get(c, np.nan):.2f})" for c in grid.columns]
    sns.heatmap(grid.astype(float), annot=True, fmt=".2f", cmap="rocket_r", vmin=0, ax=ax,
                xticklabels=labels, cbar_kws={"label": "flip rate (0 = perfectly stable)"})
    ax.set_xlabel("")
    ax.set_ylabel("")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def direction_bars(table: pd.DataFrame, runs: list[str], title: str):
    """Directional flip rate per directional perturbation and run, 95% CIs, chance p(1-p) as ticks."""
    import matplotlib.pyplot as plt

    part = table[(table["measure"] == "directional flip rate") & (table["modality"] == "all")]
    names = list(dict.fromkeys(part["perturbation"]))
    runs = [r for r in runs if r in set(part["run"])]
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(names) * max(1, len(runs)) / 2), 4))
    width = 0.8 / max(1, len(runs))
    for i, run in enumerate(runs):
        rows = part[part["run"] == run].set_index("perturbation").reindex(names)
        x = np.arange(len(names)) + (i - (len(runs) - 1) / 2) * width
        err = np.vstack([rows["value"] - rows["ci_low"], rows["ci_high"] - rows["value"]]).clip(min=0)
        ax.bar(x, rows["value"], width, yerr=err, capsize=2, label=run)
        ax.scatter(x, rows["chance"], marker="_", s=120, color="black", zorder=3,
                   label="chance p(1-p)" if i == 0 else None)
    ax.set_xticks(np.arange(len(names)))
    ax.set_xticklabels(names, rotation=30, ha="right")
    ax.set_ylabel("share flipped toward the push")
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def truncated_share(dataset, perturbations: list[Perturbation], max_length: int, *, split: str = "test",
                    seed: int = 0, max_images: int | None = None) -> pd.DataFrame:
    """Share of perturbed texts longer than the embedded text tower reads (``max_length`` tokens).

    An appended claim past the cut is invisible to the model, which then looks stable for
    a reason that has nothing to do with its moral judgment; the page reports this beside the flips.
    """
    from transformers import AutoTokenizer

    from mmscale_core.models.embedded import minilm_dir
    from mmscale_core.robustness.perturbations import perturb_texts
    from mmscale_core.robustness.runner import select_scenarios

    tokenizer = AutoTokenizer.from_pretrained(minilm_dir())
    frame = select_scenarios(dataset, split, max_images, seed)
    rows = [("(original)", _longer(tokenizer, frame["scenario"].tolist(), max_length))]
    for p in perturbations:
        if p.kind == "text":
            rows.append((p.name, _longer(tokenizer, perturb_texts(p, frame, seed), max_length)))
    return pd.DataFrame(rows, columns=["perturbation", f"share longer than {max_length} tokens"])


def _longer(tokenizer, texts: list[str], max_length: int) -> float:
    lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=True)["input_ids"]]
    return float(np.mean(np.asarray(lengths) > max_length)) if lengths else float("nan")
