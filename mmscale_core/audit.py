"""Checks of the paper's published numbers against each other and against chance.

The contradictions themselves are data in :mod:`mmscale_core.paper`; this
module lays them out and adds the computations an auditor would redo: the
chance level of each ranking metric on lists of 1-5 scenarios, and what a
majority-class classifier's macro-F1 must be given its accuracy.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from mmscale_core import paper
from mmscale_core.outputs import provenance_label

PAPER = provenance_label("paper")


def contradictions_table() -> pd.DataFrame:
    rows = [dataclasses.asdict(c) for c in paper.CONTRADICTIONS]
    return pd.DataFrame(rows).assign(source=PAPER)


def mrr_chance_unique_top(n: int) -> float:
    """Expected reciprocal rank of the one top item in a uniformly random order of n items: H_n / n."""
    return float(sum(1.0 / k for k in range(1, n + 1)) / n)


def chance_levels_table(data_dir=None, source: str = "") -> pd.DataFrame:
    """Chance MRR by list size (analytic), the paper's Table 3 range, and, given a dataset,
    the exact chance NDCG@5 and MRR of a random scorer on its test lists."""
    from mmscale_core.experiments import paper_table3

    rows = [{"what": f"random MRR, list of {n} with one top scenario", "source": "arithmetic (H_n / n)",
             "metric": "MRR", "value": mrr_chance_unique_top(n)} for n in range(1, 6)]
    t3 = paper_table3()
    for metric in ("NDCG@5", "MRR"):
        values = t3.loc[t3["metric"] == metric, "value"]
        rows.append({"what": f"Table 3 {metric}, lowest", "source": PAPER, "metric": metric, "value": values.min()})
        rows.append({"what": f"Table 3 {metric}, highest", "source": PAPER, "metric": metric, "value": values.max()})
    if data_dir is not None:
        from mmscale_core.data import load_dataset
        from mmscale_core.metrics import evaluate_lists

        test = load_dataset(data_dir, check_images=False).scenarios
        test = test[test["split"] == "test"].assign(pred=0.0)
        for min_size in (2, 1):
            table = evaluate_lists(test, pred_col="pred", min_list_size=min_size, n_boot=1).set_index("metric")
            for metric in ("NDCG@5", "MRR"):
                rows.append({"what": f"random scorer on the test lists of >= {min_size} scenarios",
                             "source": source, "metric": metric, "value": table.loc[metric, "chance"]})
    return pd.DataFrame(rows)


def majority_class_check() -> pd.DataFrame:
    """Table 5 gives the majority class 56.3% accuracy and 41.2% macro-F1. Predicting one class for
    every item gives that class precision = accuracy p and recall 1, F1 = 2p / (1 + p), and F1 = 0
    for the two others, so macro-F1 = 2p / (3 (1 + p))."""
    accuracy, reported_f1 = paper.TABLE5["Majority Class"]
    p = accuracy / 100
    implied = 100 * 2 * p / (3 * (1 + p))
    return pd.DataFrame([
        {"quantity": "majority-class accuracy (%)", "source": PAPER, "value": accuracy},
        {"quantity": "majority-class macro-F1 (%)", "source": PAPER, "value": reported_f1},
        {"quantity": "macro-F1 implied by that accuracy (%)", "source": "arithmetic: 2p / (3 (1 + p))",
         "value": round(implied, 1)},
    ])
