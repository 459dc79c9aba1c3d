"""The paper's annotation quality control, as functions that run on any dataset.

* Canary checks: share of canary answers on the right side of the scale
  (paper: > 98 % pass).
* Canary screening: an annotator failing at least two canaries and under 80 % of them.
* Per-annotator variance screening: an annotator whose ratings stray from their
  co-annotators far more than everyone else's is screened out (paper: ~2 %).
  The statistic is the mean squared leave-one-out residual
  ``(r_ai - mean of the other ratings of item i)^2`` and its robust z-score
  ``(x - median) / (1.4826 * MAD)`` across annotators.
* High-variance items: rating SD (ddof=1) above 1.2 are removed (paper: ~4.8 %).
  With three ratings on 1..5 that is exactly "range >= 3".
* Image QC flags: shares of images flagged minor / lighting / severe (paper:
  9 / 4 / 2 %); scenarios of severe images are text-grounded and left out of
  visual analyses (:func:`visual_analysis_mask`).

Functions take the release frame (``ratings`` / ``annotators`` lists per scenario)
or its long form from :func:`long_judgments`, so the data-stats notebook can run
them on real data too (only what the release keeps: no canaries, post-QC items).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mmscale_core.data import QC_FLAGS
from mmscale_core.simulator.params import QualityParams



def long_judgments(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (scenario, annotator): scenario_id, annotator, rating (+ modality if present)."""
    cols = ["ratings", "annotators"] + (["modalities"] if "modalities" in frame.columns else [])
    long = frame[["scenario_id", *cols]].explode(cols, ignore_index=True)
    out = pd.DataFrame({
        "scenario_id": long["scenario_id"],
        "annotator": long["annotators"].astype(str),
        "rating": long["ratings"].astype(float),
    })
    if "modalities" in cols:
        out["modality"] = long["modalities"]
    return out


def canary_pass_rate(canaries: pd.DataFrame) -> float:
    """Share of canary answers that passed."""
    return float(canaries["passed"].mean()) if len(canaries) else float("nan")


def annotator_residuals(judgments: pd.DataFrame, item: str = "scenario_id") -> pd.DataFrame:
    """Per annotator: judgments, mean squared leave-one-out residual and its robust z-score."""
    g = judgments.groupby(item)["rating"]
    n = g.transform("size")
    loo_mean = (g.transform("sum") - judgments["rating"]) / (n - 1).where(n > 1)
    resid2 = (judgments["rating"] - loo_mean) ** 2
    per = (pd.DataFrame({"annotator": judgments["annotator"], "resid2": resid2})
           .dropna().groupby("annotator")["resid2"].agg(n="size", residual_msq="mean"))
    med = per["residual_msq"].median()
    mad = 1.4826 * (per["residual_msq"] - med).abs().median()
    per["robust_z"] = (per["residual_msq"] - med) / (mad if mad > 0 else 1.0)
    return per


def screen_annotators(judgments: pd.DataFrame, canaries: pd.DataFrame | None = None,
                      params: QualityParams = QualityParams(), item: str = "scenario_id") -> pd.DataFrame:
    """Per annotator: residual statistics, canary pass rate and whether (and why) they are screened out."""
    per = annotator_residuals(judgments, item)
    per["canary_pass"] = np.nan
    per["canary_failures"] = 0
    if canaries is not None and len(canaries):
        by_annotator = canaries.groupby("annotator")["passed"]
        per["canary_pass"] = by_annotator.mean().reindex(per.index)
        per["canary_failures"] = (by_annotator.size() - by_annotator.sum()).reindex(per.index).fillna(0).astype(int)
    enough = per["n"] >= params.min_judgments
    by_variance = enough & (per["robust_z"] > params.variance_z)
    # one failed canary is an accident; screening needs a pattern
    by_canary = (per["canary_pass"] < params.canary_min_pass) & (per["canary_failures"] >= params.min_canary_failures)
    per["screened"] = by_variance | by_canary
    per["reason"] = np.select([by_variance & by_canary, by_variance, by_canary],
                              ["variance+canary", "variance", "canary"], "")
    return per


def rating_sd(frame: pd.DataFrame) -> pd.Series:
    """Per-scenario sample SD (ddof=1) of the ratings; NaN for a single rating."""
    return frame["ratings"].map(lambda r: float(np.std(r, ddof=1)) if len(r) > 1 else np.nan)


def high_variance_mask(frame: pd.DataFrame, max_sd: float = QualityParams.max_rating_sd) -> pd.Series:
    """True where the scenario's rating SD exceeds ``max_sd`` (the paper removes these)."""
    return rating_sd(frame) > max_sd


def image_qc_shares(frame: pd.DataFrame) -> dict[str, float]:
    """Share of images per QC flag (an image's flag is that of its scenarios)."""
    if "qc" not in frame.columns or frame["qc"].isna().all():
        return {}
    per_image = frame.groupby("image_id")["qc"].first().fillna("ok")
    shares = per_image.value_counts(normalize=True)
    return {flag: float(shares.get(flag, 0.0)) for flag in QC_FLAGS}


def visual_analysis_mask(frame: pd.DataFrame) -> pd.Series:
    """Scenarios that enter visual analyses: everything except severely flawed images."""
    if "qc" not in frame.columns:
        return pd.Series(True, index=frame.index)
    return frame["qc"].fillna("ok") != "severe"


def release_quality(frame: pd.DataFrame, params: QualityParams = QualityParams()) -> dict[str, float]:
    """What can be checked on a released dataset alone (real or simulated)."""
    screening = screen_annotators(long_judgments(frame), params=params)
    out = {
        "scenarios": float(len(frame)),
        "annotators": float(len(screening)),
        "share_items_sd_above_max": float(high_variance_mask(frame, params.max_rating_sd).mean()),
        "share_annotators_flagged_by_variance": float(screening["screened"].mean()),
    }
    out.update({f"share_images_{k}": v for k, v in image_qc_shares(frame).items()})
    return out
