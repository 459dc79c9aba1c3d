"""The discrepancy-guided step (paper Fig. 4, sec 3.2) and its reconfirmation statistics.

Rule: Delta = |s_user - s_model| with s_model the model's calibrated 1-5 score.
Delta > delta (default 1) flags the rating for a modality-grounding check where
the annotator keeps or revises their answer; Delta <= delta counts as agreement
and prompts the annotator to add a new scenario grounded in the same image.
(The paper writes both "deviates by >= 1 point ... flagged" and "within one
point ... confirms"; we follow the issue's strict ``>`` so that a rating exactly
one point from the model counts as agreement.) Without a model score a rating
is neither flagged nor agreeing.

Reconfirmation statistics (paper sec 3.4: "fewer than 7% of items are
adjusted; analyses with and without reconfirmed samples differ by Delta
NDCG@5 < 0.01"): an item (scenario) is *adjusted* when at least one of its
ratings was revised at the check. NDCG@5 of the model's scores against the
human mean rating is computed per image list (``evaluate_lists``) on all items
and on the items that were not adjusted; Delta NDCG@5 = all - without.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from mmscale_core.errors import MmscaleError

DEFAULT_DELTA = 1.0


def discrepancy(user_rating: float, model_score: float) -> float:
    """Delta = |s_user - s_model|."""
    return abs(float(user_rating) - float(model_score))


def is_flagged(user_rating: float, model_score: float | None, delta: float = DEFAULT_DELTA) -> bool | None:
    """True: disagreement (grounding check); False: agreement (add a scenario); None: no model score."""
    if model_score is None:
        return None
    return discrepancy(user_rating, model_score) > delta


def next_stage(flags: list[bool | None], after: str) -> str:
    """Stage after ``after`` ('rate' or 'reconfirm') given the per-rating flags of a task."""
    if after == "rate" and any(f is True for f in flags):
        return "reconfirm"
    if after in ("rate", "reconfirm") and any(f is False for f in flags):
        return "add"
    return "done"


def _ndcg(frame: pd.DataFrame, score_col: str, k: int, n_boot: int, seed: int) -> dict:
    """NDCG@k of model_score against ``score_col`` over image lists with >= 2 scored items."""
    from mmscale_core.metrics import evaluate_lists  # scipy/sklearn: only when statistics are asked for

    try:
        table = evaluate_lists(frame, list_col="image_id", true_col=score_col, pred_col="model_score",
                               k=k, n_boot=n_boot, seed=seed)
    except MmscaleError:  # no list with two scored items yet
        return {"value": None, "ci_low": None, "ci_high": None, "n_lists": 0}
    row = table.set_index("metric").loc["NDCG@5"]

    def clean(x):
        return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)

    return {"value": clean(row["value"]), "ci_low": clean(row["ci_low"]), "ci_high": clean(row["ci_high"]),
            "n_lists": int(row["n_lists"])}


def reconfirmation_stats(ratings: pd.DataFrame, *, k: int = 5, n_boot: int = 200, seed: int = 0) -> dict:
    """Share of ratings/items flagged and adjusted, and NDCG@k of the model with and without adjusted items.

    ``ratings``: one row per rating with scenario_id, image_id, rating, initial_rating,
    model_score (NaN without prediction), flagged (True/False/None) and reconfirm
    ('kept' / 'revised' / None).
    """
    n = len(ratings)
    flagged = ratings["flagged"].eq(True) if n else pd.Series(dtype=bool)
    revised = ratings["reconfirm"].eq("revised") if n else pd.Series(dtype=bool)
    out: dict = {
        "n_ratings": n,
        "n_flagged": int(flagged.sum()),
        "share_ratings_flagged": float(flagged.mean()) if n else None,
        "n_ratings_adjusted": int(revised.sum()),
        "share_ratings_adjusted": float(revised.mean()) if n else None,
    }
    if not n:
        return {**out, "n_items": 0, "n_items_adjusted": 0, "share_items_adjusted": None,
                "ndcg_at_5_all": None, "ndcg_at_5_without_adjusted": None, "ndcg_at_5_before_reconfirmation": None,
                "delta_ndcg_at_5": None}
    frame = ratings.assign(_revised=revised)
    items = frame.groupby("scenario_id", sort=False).agg(
        image_id=("image_id", "first"), score=("rating", "mean"), initial_score=("initial_rating", "mean"),
        model_score=("model_score", "first"), adjusted=("_revised", "any"))
    scored = items[np.isfinite(items["model_score"].astype(float))].reset_index()
    scored["model_score"] = scored["model_score"].astype(float)
    all_items = _ndcg(scored, "score", k, n_boot, seed)
    without = _ndcg(scored[~scored["adjusted"]], "score", k, n_boot, seed)
    before = _ndcg(scored, "initial_score", k, n_boot, seed)
    delta = (all_items["value"] - without["value"]
             if all_items["value"] is not None and without["value"] is not None else None)
    return {
        **out,
        "n_items": int(len(items)),
        "n_items_adjusted": int(items["adjusted"].sum()),
        "share_items_adjusted": float(items["adjusted"].mean()),
        "ndcg_at_5_all": all_items,
        "ndcg_at_5_without_adjusted": without,
        "ndcg_at_5_before_reconfirmation": before,
        "delta_ndcg_at_5": delta,
    }
