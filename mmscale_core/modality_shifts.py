"""How judgments move from the text-only NormBank label once the image is seen.

These definitions serve real and simulated data alike (notebook 02, ``dataset_stats`` and
the simulator's ``calibrate-report``), so they live outside the simulator:

* anchor of a NormBank label on the 1-5 scale: -1 -> 2, 0 -> 3, +1 -> 4;
* direction of a scenario: its rounded mean rating (half up) against that anchor:
  ``up`` / ``neutral`` / ``down``;
* Table 2: counts of (majority modality x direction);
* modality agreement for X-grounded items: share of items with majority label X on
  which every annotator chose X (see ``paper.CONTRADICTIONS['modality_agreement_vs_alpha']``);
* extreme shift: rounded mean at least 3 points from the anchor (Fig. 6a);
* image shift (simulator only, it needs the latent truth): mean rating minus the
  sentence's latent base acceptability, where the scene reinforces / contradicts the text.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mmscale_core import paper
from mmscale_core.data import MODALITIES, majority_modality, require_fields

DIRECTIONS = paper.TABLE2_DIRECTIONS


def with_derived(frame: pd.DataFrame) -> pd.DataFrame:
    """Add ``score`` and ``modality`` if the frame lacks them (in-memory simulator output)."""
    if "score" in frame.columns and "modality" in frame.columns:
        return frame
    frame = frame.copy()
    frame["score"] = frame["ratings"].map(lambda r: float(np.mean(r)))
    frame["modality"] = frame["modalities"].map(majority_modality)
    return frame


def anchor_gap(frame: pd.DataFrame) -> pd.Series:
    """Rounded (half up) mean rating minus the label's anchor, in signed points; NaN without a label.

    Raises ``NotInRelease`` when no scenario has a NormBank label (the authors' release)."""
    require_fields(frame, "the shift from the text-only NormBank label", "normbank_label")
    anchor = frame["normbank_label"].astype("float").map(
        lambda v: paper.LABEL_ANCHOR.get(int(v)) if v == v else np.nan)
    return np.floor(frame["score"].astype(float) + 0.5) - anchor


def shift_direction(frame: pd.DataFrame) -> pd.Series:
    """'up' / 'neutral' / 'down' per scenario (NaN where the NormBank label is missing)."""
    gap = anchor_gap(frame)
    out = pd.Series(np.where(gap > 0, "up", np.where(gap < 0, "down", "neutral")), index=frame.index, dtype=object)
    return out.where(gap.notna())


def table2(frame: pd.DataFrame) -> pd.DataFrame:
    """Counts of (majority modality x direction), the layout of the paper's Table 2."""
    frame = with_derived(frame)
    d = shift_direction(frame)
    counts = pd.crosstab(frame["modality"][d.notna()], d[d.notna()])
    counts = counts.reindex(index=list(paper.TABLE2), columns=list(DIRECTIONS), fill_value=0)
    counts["total"] = counts.sum(axis=1)
    return counts


def modality_agreement(frame: pd.DataFrame) -> dict[str, float]:
    """Per majority label: share of its items on which every annotator chose that label."""
    frame = with_derived(frame)
    unanimous = frame["modalities"].map(lambda m: len(set(m)) == 1)
    return {m: float(unanimous[frame["modality"] == m].mean()) for m in MODALITIES}


def extreme_shift_rates(frame: pd.DataFrame, points: int = 3) -> pd.DataFrame:
    """Per majority modality: count and rate of scenarios >= ``points`` from their label anchor."""
    frame = with_derived(frame)
    extreme = anchor_gap(frame).abs() >= points
    g = extreme.groupby(frame["modality"])
    return pd.DataFrame({"count": g.sum().astype(int), "rate": g.mean()}).reindex(list(MODALITIES))


def directional_by_label(frame: pd.DataFrame) -> pd.DataFrame:
    """Fig. 6b: counts of up / down per (majority modality, NormBank label)."""
    frame = with_derived(frame)
    d = shift_direction(frame)
    keep = d.isin(["up", "down"])
    return pd.crosstab([frame["modality"][keep], frame["normbank_label"][keep].astype(int)], d[keep])


def image_shift(frame: pd.DataFrame, latent: pd.DataFrame) -> dict[str, float]:
    """Mean (score - latent base acceptability) where the scene reinforces / contradicts the text."""
    frame = with_derived(frame)
    joined = frame[["scenario_id", "score"]].merge(latent[["scenario_id", "relation", "base_acceptability"]],
                                                   on="scenario_id")
    delta = joined["score"] - joined["base_acceptability"]
    return {r: float(delta[joined["relation"] == r].mean()) for r in ("reinforce", "contradict", "neutral")}
