"""Annotator screening and progress for the admin (paper sec 3.2: canary checks, variance screening).

Per annotator: canary pass rate; the standard deviation of their own ratings
(near zero over many ratings = straight-lining); and their mean absolute
deviation from the leave-one-out mean of the other annotators on the same
scenarios (how far they sit from the consensus). An annotator is flagged when
the canary pass rate is below ``min_canary_pass``, or, with at least
``min_ratings`` ratings, the SD is below ``min_sd`` or the deviation above
``max_deviation``. Flags are advice: the admin decides whom to exclude.

Per item: the paper drops items whose ratings have SD > 1.2 (about 4.8%);
``high_variance_items`` counts them so the admin can see the share.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

HIGH_VARIANCE_SD = 1.2


@dataclass(frozen=True)
class ScreeningRules:
    min_canary_pass: float = 0.9
    min_ratings: int = 10
    min_sd: float = 0.3
    max_deviation: float = 1.5


def leave_one_out_deviation(ratings: pd.DataFrame) -> pd.Series:
    """|rating - mean of the other annotators' ratings of the same scenario| per rating (NaN if alone)."""
    grouped = ratings.groupby("scenario_id")["rating"]
    total, count = grouped.transform("sum"), grouped.transform("count")
    others = (total - ratings["rating"]) / (count - 1).where(count > 1)
    return (ratings["rating"] - others).abs()


def screen_annotators(annotators: pd.DataFrame, ratings: pd.DataFrame, canaries: pd.DataFrame,
                      rules: ScreeningRules = ScreeningRules()) -> pd.DataFrame:
    """One row per annotator: counts, canary pass rate, rating SD, deviation, flags (reasons)."""
    ratings = ratings.assign(deviation=leave_one_out_deviation(ratings)) if len(ratings) else \
        ratings.assign(deviation=pd.Series(dtype=float))
    by_rater = ratings.groupby("annotator_id")
    rows = []
    for ann in annotators.itertuples(index=False):
        mine = by_rater.get_group(ann.id) if ann.id in by_rater.groups else ratings.iloc[0:0]
        checks = canaries[(canaries["annotator_id"] == ann.id) & canaries["passed"].notna()]
        n_canary = len(checks)
        pass_rate = float(checks["passed"].astype(bool).mean()) if n_canary else None
        sd = float(np.std(mine["rating"], ddof=1)) if len(mine) > 1 else None
        dev = mine["deviation"].dropna()
        deviation = float(dev.mean()) if len(dev) else None
        reasons = []
        if pass_rate is not None and pass_rate < rules.min_canary_pass:
            reasons.append(f"canary pass rate {pass_rate:.0%}")
        if len(mine) >= rules.min_ratings and sd is not None and sd < rules.min_sd:
            reasons.append(f"rating SD {sd:.2f} (straight-lining?)")
        if len(dev) >= rules.min_ratings and deviation is not None and deviation > rules.max_deviation:
            reasons.append(f"mean deviation from others {deviation:.2f}")
        rows.append({
            "id": ann.id, "name": ann.name, "consented": ann.consented, "excluded": ann.excluded,
            "n_ratings": int(len(mine)), "n_tasks_done": int(ann.tasks_done),
            "n_scenarios_added": int(ann.scenarios_added), "n_revised": int((mine["reconfirm"] == "revised").sum()),
            "canaries": n_canary, "canaries_failed": int((~checks["passed"].astype(bool)).sum()),
            "canary_pass_rate": pass_rate, "rating_sd": sd, "deviation": deviation,
            "flags": "; ".join(reasons),
        })
    return pd.DataFrame(rows, columns=[
        "id", "name", "consented", "excluded", "n_ratings", "n_tasks_done", "n_scenarios_added", "n_revised",
        "canaries", "canaries_failed", "canary_pass_rate", "rating_sd", "deviation", "flags"])


def item_sd(ratings: pd.DataFrame) -> pd.Series:
    """Sample SD of each scenario's ratings (NaN with one rating)."""
    return ratings.groupby("scenario_id")["rating"].std(ddof=1)


def high_variance_items(ratings: pd.DataFrame, threshold: float = HIGH_VARIANCE_SD) -> list[str]:
    sd = item_sd(ratings) if len(ratings) else pd.Series(dtype=float)
    return sorted(sd[sd > threshold].index)
