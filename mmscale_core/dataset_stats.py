"""Dataset-level analyses of notebooks 01-02 and 08, next to the paper's numbers.

Each function returns a tidy frame with a ``source`` column, so the report
never shows a number without saying whether it is the paper's or the
companion's. The shift definitions (direction against the NormBank anchor,
extreme shifts) are those of :mod:`mmscale_core.modality_shifts`, which
the simulator was calibrated with; they work on any dataset in the release
format, real or simulated.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mmscale_core import modality_shifts as shifts
from mmscale_core import paper
from mmscale_core.data import MODALITIES, Dataset, has_field, require_fields
from mmscale_core.metrics.agreement import krippendorff_alpha_bootstrap
from mmscale_core.outputs import provenance_label

PAPER = provenance_label("paper")


def summary_vs_paper(dataset: Dataset, source: str) -> pd.DataFrame:
    """Table 1-style size statistics: the paper's and this dataset's."""
    s = dataset.summary()
    rows = [
        ("images", paper.DATASET["images"], s["images"]),
        ("scenarios", paper.DATASET["scenarios"], s["scenarios"]),
        ("mean list size", paper.DATASET["mean_list_size"], round(s["mean_list_size"], 3)),
        ("ratings per scenario", paper.DATASET["raters_per_item"],
         round(s["ratings"] / max(s["scenarios"], 1), 3)),
        ("annotators", None, s["annotators"]),
        ("test images (9:1 split)", round(paper.DATASET["images"] / 10), s["split"].get("test", 0)),
    ]
    if "val" in s["split"]:
        rows.append(("validation images", None, s["split"]["val"]))
    return _side_by_side(rows, source)


def _side_by_side(rows: list[tuple], source: str) -> pd.DataFrame:
    """(statistic, paper value, companion value) rows -> long table with a source column."""
    records = []
    for stat, paper_value, ours in rows:
        records.append({"statistic": stat, "source": PAPER, "value": paper_value})
        records.append({"statistic": stat, "source": source, "value": ours})
    return pd.DataFrame(records)


def ratings_long(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per rating with the modality that annotator chose (Fig. 5).

    Scenarios whose votes and ratings differ in length (the authors' merged near-duplicates)
    cannot pair a rating with its vote and are left out."""
    frame = frame[frame["ratings"].map(len) == frame["modalities"].map(len)]
    if not len(frame):
        return pd.DataFrame({"scenario_id": [], "rating": [], "modality": []})
    return pd.DataFrame({
        "scenario_id": np.repeat(frame["scenario_id"].to_numpy(), frame["ratings"].map(len).to_numpy()),
        "rating": np.concatenate(frame["ratings"].map(np.asarray).to_numpy()),
        "modality": np.concatenate(frame["modalities"].map(np.asarray).to_numpy()),
    })


def alpha_with_ci(frame: pd.DataFrame, n_boot: int = 200, seed: int = 0) -> pd.DataFrame:
    """Krippendorff's alpha for ratings (interval) and modality labels (nominal) with 95% bootstrap
    CIs over scenarios (the units), next to the paper's 0.74 and 0.71."""
    rng = np.random.default_rng(seed)
    rows = []
    for column, level, key in (("ratings", "interval", "alpha_ratings"), ("modalities", "nominal", "alpha_modality")):
        point, boots = krippendorff_alpha_bootstrap(frame[column].reset_index(drop=True), level, n_boot, rng)
        rows.append({"statistic": f"Krippendorff alpha ({column}, {level})", "paper": paper.STATISTICS[key],
                     "value": point, "ci_low": float(np.nanquantile(boots, 0.025)),
                     "ci_high": float(np.nanquantile(boots, 0.975)), "n_boot": n_boot})
    agreement = shifts.modality_agreement(frame)
    for m, key in (("text", "modality_agreement_text"), ("image", "modality_agreement_image")):
        rows.append({"statistic": f"modality agreement, {m}-grounded items", "paper": paper.STATISTICS[key],
                     "value": agreement[m], "ci_low": np.nan, "ci_high": np.nan, "n_boot": 0})
    return pd.DataFrame(rows)


def quality_vs_paper(frame: pd.DataFrame, qc_report: dict | None, source: str) -> pd.DataFrame:
    """Quality control (sec. 3.1-3.3) measured on the release, plus the simulator's own QC log."""
    from mmscale_core.simulator.quality import high_variance_mask, image_qc_shares, release_quality

    if has_field(frame, "annotators"):
        q = release_quality(frame)
        screening = ("annotators flagged by variance screening in the release (%)", None,
                     100 * q["share_annotators_flagged_by_variance"])
    else:  # the screening compares each annotator with the others: it needs annotator ids
        q = {"share_items_sd_above_max": float(high_variance_mask(frame).mean()),
             **{f"share_images_{k}": v for k, v in image_qc_shares(frame).items()}}
        screening = ("annotators flagged by variance screening: not available in this release (no annotator ids)",
                     None, None)
    rows = [
        ("items with rating SD > 1.2 still in the release (%)", 0.0, 100 * q["share_items_sd_above_max"]),
        screening,
        ("images flagged minor (%)", paper.STATISTICS["image_qc_minor_percent"], 100 * q.get("share_images_minor", np.nan)),
        ("images flagged lighting/texture (%)", paper.STATISTICS["image_qc_lighting_percent"],
         100 * q.get("share_images_lighting", np.nan)),
        ("images flagged severe (%)", paper.STATISTICS["image_qc_severe_percent"], 100 * q.get("share_images_severe", np.nan)),
    ]
    for key, label, paper_key, scale in _QC_LOG:
        if qc_report and key in qc_report:
            rows.append((label, paper.STATISTICS.get(paper_key) if paper_key else None, scale * qc_report[key]))
    return _side_by_side(rows, source)


# The simulator's annotation log (qc_report.json): key, label, paper statistic, scale to percent
_QC_LOG = (
    ("canary_pass_rate", "annotation log: canary pass rate (%)", "canary_pass_percent_min", 100),
    ("share_annotators_screened", "annotation log: annotators removed by variance screening (%)",
     "annotator_screening_removed_percent", 100),
    ("share_items_removed_sd", "annotation log: items removed for rating SD > 1.2 (%)",
     "high_variance_removed_percent", 100),
    ("scenarios_severe_text_grounded", "annotation log: scenarios of severe images marked text-grounded", None, 1),
)


def table2_vs_paper(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """Table 2 shares (% of all labelled scenarios) per (modality, direction), paper vs companion."""
    require_fields(frame, "Table 2", "normbank_label")
    ours = shifts.table2(frame)
    total = ours[list(shifts.DIRECTIONS)].to_numpy().sum()
    paper_total = paper.table2_total()
    rows = []
    for m, counts in paper.TABLE2.items():
        for d, paper_count in zip(shifts.DIRECTIONS, counts):
            rows.append({"modality": m, "direction": d, "source": PAPER, "count": paper_count,
                         "share": 100 * paper_count / paper_total})
            rows.append({"modality": m, "direction": d, "source": source, "count": int(ours.loc[m, d]),
                         "share": 100 * ours.loc[m, d] / total})
    return pd.DataFrame(rows)


def table6_vs_paper(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """Table 6: divergent scenarios (direction up or down) by grounding modality."""
    require_fields(frame, "Table 6", "normbank_label")
    ours = shifts.table2(frame)
    divergent = ours["up"] + ours["down"]
    rows = []
    for m, (count, pct) in paper.TABLE6.items():
        rows.append({"modality": m, "source": PAPER, "divergent": count, "percent": pct})
        rows.append({"modality": m, "source": source, "divergent": int(divergent[m]),
                     "percent": 100 * divergent[m] / divergent.sum()})
    return pd.DataFrame(rows)


def shift_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Per labelled scenario: modality, NormBank label, signed gap to the anchor, direction."""
    require_fields(frame, "the shift analysis", "normbank_label")
    out = frame[["scenario_id", "image_id", "modality", "normbank_label"]].copy()
    out["gap"] = shifts.anchor_gap(frame)
    out["direction"] = shifts.shift_direction(frame)
    out = out[out["gap"].notna()].copy()
    out["divergent"] = (out["direction"] != "neutral").astype(int)
    out["normbank_label"] = out["normbank_label"].astype(int)
    return out


def shift_regression(frame: pd.DataFrame) -> pd.DataFrame:
    """Does the grounding modality predict how far a judgment moves from its text-only label?

    The paper asserts it (Table 2, Fig. 6) without a test. Two statsmodels fits
    with standard errors clustered by image (scenarios of one image are not
    independent): OLS of |gap| on modality, and logit of "divergent" on
    modality, both controlling for the NormBank label, text-grounded as the
    reference level.
    """
    import statsmodels.formula.api as smf

    data = shift_frame(frame).assign(abs_gap=lambda d: d["gap"].abs())
    data["modality"] = pd.Categorical(data["modality"], categories=list(MODALITIES))
    groups = pd.factorize(data["image_id"])[0]
    rows = []
    for name, formula, fit in (
        ("OLS |rounded mean - anchor|", "abs_gap ~ C(modality, Treatment('text')) + C(normbank_label)", smf.ols),
        ("logit divergent", "divergent ~ C(modality, Treatment('text')) + C(normbank_label)", smf.logit),
    ):
        kwargs = {"disp": False} if fit is smf.logit else {}
        result = fit(formula, data).fit(cov_type="cluster", cov_kwds={"groups": groups}, **kwargs)
        ci = result.conf_int()
        for term in result.params.index:
            rows.append({"model": name, "term": term, "coef": result.params[term], "se": result.bse[term],
                         "p_value": result.pvalues[term], "ci_low": ci.loc[term, 0], "ci_high": ci.loc[term, 1],
                         "n": int(result.nobs)})
    return pd.DataFrame(rows)
