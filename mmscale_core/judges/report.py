"""What notebook 10 (prompted judges) shows: judges and fine-tuned runs scored the same way.

Every system is scored by :func:`mmscale_core.metrics.upstream.evaluate_predictions`
on the same test scenarios: the prompted judges' inference JSONL files
(``runs/judges/<judge>/<prompt>/predictions.jsonl``, stage ``judge``) and the
fine-tuned runs of Table 3 (``runs/table3``). A judge run with a ``limit``
covers only the first scenarios of the split, so the fine-tuned runs are
scored on the scenarios every judge rated: the comparison is on one set.

Fine-tuned scores: the scalar task (MAE ... ECE) reads the 1-5 score
(``scale:<run>``: raw for objectives trained on the scale, the isotonic map
otherwise), the ordering task (pairwise accuracy, NDCG@5) the raw score, which
has no ties the isotonic map would add. A judge has one score, its rating.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mmscale_core.display import estimate_cell
from mmscale_core.errors import MmscaleError
from mmscale_core.metrics.evaluate import PAIRWISE
from mmscale_core.metrics.upstream import PAIRWISE_DELTA1, STRATIFIED, evaluate_predictions

SCALAR = ("MAE", "RMSE", "AUC-acceptability", "ECE (acceptability)")
ORDERING = (PAIRWISE, PAIRWISE_DELTA1, "NDCG@5")
ORDERING_OF_RUN = set(ORDERING) | set(STRATIFIED)
RANDOM_STAND_IN = ("These numbers come from a random model (the tiny random-init Qwen2-VL, profile {profile}): "
                   "they exist to exercise the code, never as results.")


def is_random_stand_in(profile: dict) -> bool:
    """Whether the profile's judges are the random stand-in (smoke, default), not real checkpoints."""
    return bool((profile.get("judges") or {}).get("random_stand_in"))


def judge_runs(root: str | Path) -> pd.DataFrame:
    """Every judge output below ``root`` (``<judge>/<prompt>/predictions.jsonl``) with its model and scoring."""
    rows = []
    for path in sorted(Path(root).glob("*/*/predictions.jsonl")):
        first = pd.read_json(path, lines=True, nrows=1)
        if first.empty:
            continue
        rows.append({"judge": path.parent.parent.name, "prompt": path.parent.name, "path": str(path),
                     "model_id": str(first["model_id"].iloc[0]) if "model_id" in first else "",
                     "scoring": str(first["provider"].iloc[0]) if "provider" in first else ""})
    if not rows:
        raise MmscaleError(f"{root}: no judge outputs (<judge>/<prompt>/predictions.jsonl); run the judge "
                           f"stage first: dvc repro judge")
    return pd.DataFrame(rows)


def _long(table: pd.DataFrame, **labels) -> pd.DataFrame:
    return table.assign(**labels)[[*labels, "metric", "value", "ci_low", "ci_high", "chance", "n"]]


def evaluate_judges(runs: pd.DataFrame, scenarios: pd.DataFrame, split: str = "test", n_boot: int = 1000,
                    seed: int = 0) -> tuple[pd.DataFrame, set[str]]:
    """The metrics of every judge run (long: system, kind, metric, value, CI, chance, n) and the scenario
    ids every judge rated (with a parsed rating)."""
    from mmscale_core.upstream_predictions import read_predictions

    in_split = scenarios[scenarios["split"] == split][["scenario_id", "image_id", "score", "modality"]]
    tables, common = [], None
    for run in runs.itertuples():
        preds = read_predictions(run.path).frame[["scenario_id", "prediction"]]
        merged = in_split.merge(preds, on="scenario_id", how="inner")
        unknown = set(preds["scenario_id"]) - set(in_split["scenario_id"])
        if unknown:
            raise MmscaleError(f"{run.path}: {len(unknown)} scenario id(s) not in the {split} split, e.g. "
                               f"{sorted(unknown)[0]!r} (judged another dataset?)")
        merged = merged[merged["prediction"].notna()]
        if merged.empty:
            raise MmscaleError(f"{run.path}: no parsed rating for any {split} scenario")
        rated = set(merged["scenario_id"])
        common = rated if common is None else common & rated
        table = evaluate_predictions(merged, n_in_split=len(in_split), n_boot=n_boot, seed=seed)
        tables.append(_long(table, system=f"{run.judge} ({run.prompt})", kind=f"prompted judge, {run.scoring}"))
    return pd.concat(tables, ignore_index=True), common or set()


def evaluate_finetuned(runs: pd.DataFrame, scenarios: pd.DataFrame, scenario_ids: set[str] | None = None,
                       split: str = "test", n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """The same long table for fine-tuned runs (``experiments.collect_runs``), on ``scenario_ids`` when
    given (see the module docstring for which score each task reads)."""
    from mmscale_core.experiments import run_predictions

    frame = run_predictions(runs, scenarios, split=split)
    if scenario_ids is not None:
        frame = frame[frame["scenario_id"].isin(scenario_ids)]
    if frame.empty:
        raise MmscaleError("no test scenario is rated by every judge and predicted by the fine-tuned runs")
    n_in_split = int((scenarios["split"] == split).sum())
    tables = []
    for run in runs.itertuples():
        kwargs = dict(n_in_split=n_in_split, n_boot=n_boot, seed=seed)
        on_scale = evaluate_predictions(frame.assign(prediction=frame[f"scale:{run.run}"]), **kwargs)
        raw = evaluate_predictions(frame.assign(prediction=frame[f"pred:{run.run}"]), **kwargs)
        table = pd.concat([on_scale[~on_scale["metric"].isin(ORDERING_OF_RUN)],
                           raw[raw["metric"].isin(ORDERING_OF_RUN)]], ignore_index=True)
        tables.append(_long(table, system=run.run, kind="fine-tuned (Table 3)"))
    return pd.concat(tables, ignore_index=True)


def wide(long: pd.DataFrame, metrics: tuple[str, ...] | list[str], source: str, digits: int = 3) -> pd.DataFrame:
    """One row per system, one column per metric: 'value [95% CI] (chance c)' ("—" where undefined),
    the number of scenarios and a ``source`` column."""
    missing = [m for m in metrics if m not in set(long["metric"])]
    if missing:
        raise MmscaleError(f"metrics not in the table: {', '.join(missing)}")
    rows = []
    for (system, kind), group in long.groupby(["system", "kind"], sort=False):
        by_metric = group.set_index("metric")
        row = {"source": source, "system": system, "kind": kind}
        for metric in metrics:
            r = by_metric.loc[metric]
            row[f"{metric} [95% CI] (chance)"] = estimate_cell(r["value"], r["ci_low"], r["ci_high"], r["chance"],
                                                               digits)
        row["n_scenarios"] = int(by_metric.loc["MAE", "n"]) if "MAE" in by_metric.index else None
        rows.append(row)
    return pd.DataFrame(rows)


def pairwise_figure(long: pd.DataFrame, title: str):
    """Pairwise accuracy (delta >= 0) per system with its 95% CI, chance (0.5) as a dashed line."""
    import matplotlib.pyplot as plt

    rows = long[long["metric"] == PAIRWISE].reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(6.5, 0.35 * len(rows) + 1.2))
    colors = ["tab:orange" if k.startswith("prompted") else "tab:blue" for k in rows["kind"]]
    err = [(rows["value"] - rows["ci_low"]).clip(lower=0), (rows["ci_high"] - rows["value"]).clip(lower=0)]
    ax.barh(range(len(rows)), rows["value"], xerr=err, color=colors, capsize=2)
    ax.axvline(0.5, color="0.3", linestyle="--", linewidth=1, label="chance 0.5")
    ax.set_yticks(range(len(rows)), rows["system"])
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("pairwise accuracy (delta >= 0), 95% CI; orange: prompted judges")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig
