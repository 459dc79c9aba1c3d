"""Sec 5.1: Table 3 on the test split with and without MORALE's annotator-added scenarios.

The paper: "Results remain consistent on the discrepancy-augmented split (± 0.02)". Here the
same runs are evaluated on the test split of a dataset whose records carry ``origin``
(the simulator's ``expansion/``, a MORALE export), once with every scenario and once with
the ``source`` ones only; the difference per metric gets a paired bootstrap CI over
images (:func:`mmscale_core.metrics.compare_subset`) next to the paper's 0.02.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from mmscale_core import paper
from mmscale_core.data import Dataset
from mmscale_core.experiments import rescore_runs, run_predictions

NO_ORIGIN = ("This dataset's records carry no `origin` field (the authors' release has none), so the "
             "discrepancy-augmented comparison of sec 5.1 cannot be made on it.")


def has_expansion(dataset: Dataset | None) -> bool:
    """Whether the dataset marks annotator-added scenarios (and has any in its test split)."""
    if dataset is None or not dataset.has("origin"):
        return False
    s = dataset.scenarios
    return bool(((s["origin"] == "expansion") & (s["split"] == "test")).any())


def expanded_test_frame(runs: pd.DataFrame, expanded: Dataset, progress: bool = False) -> pd.DataFrame:
    """The expanded dataset's test split with ``pred:``/``scale:`` columns per run: source
    scenarios take the runs' stored predictions (Table 3's), the added ones are scored by
    each run in their images' lists (the runs never saw them)."""
    test = expanded.scenarios[expanded.scenarios["split"] == "test"]
    source, added = test[test["origin"] == "source"], test[test["origin"] == "expansion"]
    frame = run_predictions(runs, source, split=None)
    to_score = test[test["image_id"].isin(set(added["image_id"]))].reset_index(drop=True)
    sub = Dataset(root=expanded.root, scenarios=to_score, images=expanded.images, layout=expanded.layout)
    new = added[["scenario_id", "image_id", "split", "score", "modality"]].copy()
    rescore_runs(runs, sub, new, raw_prefix="pred", scale_prefix="scale", progress=progress)
    both = pd.concat([frame.assign(origin="source"), new.assign(origin="expansion")], ignore_index=True)
    return both.set_index("scenario_id").loc[test["scenario_id"]].reset_index()  # the dataset's row order


def expansion_consistency(runs: pd.DataFrame, frame: pd.DataFrame,
                          group_by: tuple[str, ...] = ("backbone", "objective"), **compare_kwargs: Any) -> pd.DataFrame:
    """Per group of runs (seeds averaged) and metric: with / without the added scenarios, the
    difference with its paired CI, and whether it is within the paper's ± 0.02."""
    from mmscale_core.metrics import compare_subset

    tolerance = paper.EXPANSION_CONSISTENCY["max_abs_difference"]
    keep = (frame["origin"] == "source").to_numpy()
    out = []
    for key, group in runs.groupby(list(group_by), sort=False):
        key = key if isinstance(key, tuple) else (key,)
        table = compare_subset(frame, keep, [f"pred:{r}" for r in group["run"]],
                               scale_col=[f"scale:{r}" for r in group["run"]], **compare_kwargs)
        for name, value in zip(group_by, key):
            table.insert(0, name, value)
        table["n_seeds"] = len(group)
        out.append(table)
    table = pd.concat(out, ignore_index=True)
    table["paper_tolerance"] = tolerance
    table["within_paper"] = table["diff"].abs() <= tolerance
    return table
