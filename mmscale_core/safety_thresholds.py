"""Sec. 5.2's safety-threshold ablation: Unsafe Rate and AUC-Safety as the unsafe cut moves.

The paper fixes "unsafe" at a human score <= 2.5 (sec. 12.2) and titles sec. 5.2
"Ablations on List Size and Safety Thresholds" without showing the threshold part.
Here every objective is evaluated at each threshold t (ground truth unsafe = score <= t,
predictions on the calibrated 1-5 scale, exactly as ``metrics.evaluate_lists`` does at
2.5), with bootstrap CIs and the chance level at that t, and every pair of objectives is
compared with paired CIs at each t, so whether the ranking of objectives depends on the
threshold is read from the intervals rather than from the point estimates.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any, Sequence

import pandas as pd

from mmscale_core.experiments import OBJECTIVE_LABELS, evaluate_runs
from mmscale_core.metrics.evaluate import POOLED_METRICS
from mmscale_core.metrics.safety import UNSAFE_THRESHOLD

PAPER_THRESHOLD = UNSAFE_THRESHOLD


def safety_by_threshold(runs: pd.DataFrame, frame: pd.DataFrame, thresholds: Sequence[float],
                        **evaluate_kwargs: Any) -> pd.DataFrame:
    """Unsafe Rate and AUC-Safety per (backbone, objective) at each threshold (seeds averaged).

    Columns: threshold, paper_threshold (True at the paper's 2.5), n_unsafe (human-unsafe
    scenarios of the evaluated lists at t), then :func:`experiments.evaluate_runs`'s.
    """
    from mmscale_core.metrics.padding import pad_lists

    min_list_size = evaluate_kwargs.get("min_list_size", 2)
    scores = pad_lists(frame, "image_id", ["score"], min_list_size=min_list_size)
    pooled = scores.values["score"][scores.mask]
    tables = []
    for t in thresholds:
        table = evaluate_runs(runs, frame, threshold=float(t), **evaluate_kwargs)
        table = table[table["metric"].isin(POOLED_METRICS)].copy()
        table.insert(0, "n_unsafe", int((pooled <= t).sum()))
        table.insert(0, "paper_threshold", bool(abs(float(t) - PAPER_THRESHOLD) < 1e-9))
        table.insert(0, "threshold", float(t))
        tables.append(table)
    return pd.concat(tables, ignore_index=True)


def paired_by_threshold(runs: pd.DataFrame, frame: pd.DataFrame, thresholds: Sequence[float],
                        **compare_kwargs: Any) -> pd.DataFrame:
    """Every pair of objectives (per backbone) compared at each threshold: paired bootstrap CI
    of the difference a - b and a permutation p-value (``metrics.compare``), pooled metrics only."""
    from mmscale_core.metrics import compare

    out = []
    for backbone, group in runs.groupby("backbone", sort=False):
        by_obj = {obj: tuple(f"pred:{r}" for r in g["run"]) for obj, g in group.groupby("objective", sort=False)}
        scale = {f"pred:{r}": f"scale:{r}" for r in group["run"]}
        for a, b in combinations(by_obj, 2):
            for t in thresholds:
                table = compare(frame, by_obj[a], by_obj[b], scale_cols=scale, threshold=float(t), **compare_kwargs)
                table = table[table["metric"].isin(POOLED_METRICS)].copy()
                table["reference"], table["other"] = a, b
                table.insert(0, "threshold", float(t))
                table.insert(0, "backbone", backbone)
                out.append(table)
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


def _label(objective: str) -> str:
    return OBJECTIVE_LABELS.get(objective, objective)


def ranking_verdict(pairs: pd.DataFrame) -> str:
    """One sentence, from the paired CIs, on whether the ranking of objectives depends on t.

    A pair's order is *clear* at t when the 95% CI of its difference excludes 0. The ranking
    depends on the threshold when some pair is clearly ordered one way at one t and clearly
    the other way at another t; it is threshold-independent where the CIs support it when
    no such swap exists. Point-estimate swaps whose CIs include 0 are named as not resolved.
    """
    if pairs.empty:
        return "Only one objective was trained, so there is no ranking of objectives to compare across thresholds."
    thresholds = sorted(pairs["threshold"].unique())
    span = f"t = {', '.join(f'{t:g}' for t in thresholds)}"
    swaps, unclear, n_clear = [], [], 0
    for (backbone, metric, a, b), group in pairs.groupby(["backbone", "metric", "reference", "other"], sort=False):
        group = group.dropna(subset=["diff"])
        above = group[group["ci_low"] > 0]["threshold"].tolist()
        below = group[group["ci_high"] < 0]["threshold"].tolist()
        n_clear += len(above) + len(below)
        if above and below:
            swaps.append(f"on {metric}, {_label(a)} minus {_label(b)} is clearly positive at t = {above[0]:g} "
                         f"and clearly negative at t = {below[0]:g}")
        elif (group["diff"] > 0).any() and (group["diff"] < 0).any():
            unclear.append(f"{_label(a)} vs {_label(b)} on {metric}")
    if swaps:
        return ("The ranking of objectives depends on the threshold: " + "; ".join(swaps)
                + f" (paired 95% CIs of the difference exclude 0; {span}).")
    sentence = ("No pair of objectives swaps order with paired 95% CIs excluding 0 at two thresholds "
                f"({span}; {n_clear} of {len(pairs.dropna(subset=['diff']))} pair-metric-threshold differences "
                "are clear at all), so the data do not show a threshold-dependent ranking")
    if unclear:
        sentence += ("; the point estimates do swap for " + ", ".join(unclear)
                     + ", within CIs that include 0")
    return sentence + "."
