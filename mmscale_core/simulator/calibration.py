"""Paper targets vs the measured statistics of a dataset: ``mmscale calibrate-report DIR``.

Definitions (the notebooks use the same functions):

* direction of a scenario: its rounded mean rating (half up) against the anchor of its
  text-only NormBank label (-1 -> 2, 0 -> 3, +1 -> 4): ``up`` / ``neutral`` / ``down``;
* Table 2 cell share: scenarios in a (majority modality, direction) cell, in percent
  of all scenarios with a label (the paper's Table 2 shares of 28,586);
* modality agreement for X-grounded items: share of items with majority label X on
  which every annotator chose X (see ``paper.CONTRADICTIONS['modality_agreement_vs_alpha']``);
* Krippendorff's alpha: interval for ratings, nominal for modality labels (``krippendorff``);
* image shift (simulator only): mean rating minus the sentence's latent base
  acceptability, averaged where the scene reinforces / contradicts the text;
* extreme shift: rounded mean at least 3 points from the anchor.

Targets that need the simulator's latent truth show ``n/a`` on real data.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import krippendorff
import numpy as np
import pandas as pd

from mmscale_core import paper
from mmscale_core.data import MODALITIES, majority_modality

DIRECTIONS = paper.TABLE2_DIRECTIONS


# --------------------------------------------------------------------------- measures

def with_derived(frame: pd.DataFrame) -> pd.DataFrame:
    """Add ``score`` and ``modality`` if the frame lacks them (in-memory simulator output)."""
    if "score" in frame.columns and "modality" in frame.columns:
        return frame
    frame = frame.copy()
    frame["score"] = frame["ratings"].map(lambda r: float(np.mean(r)))
    frame["modality"] = frame["modalities"].map(majority_modality)
    return frame


def shift_direction(frame: pd.DataFrame) -> pd.Series:
    """'up' / 'neutral' / 'down' per scenario (NaN where the NormBank label is missing)."""
    anchor = frame["normbank_label"].astype("float").map(lambda v: paper.LABEL_ANCHOR.get(int(v)) if v == v else np.nan)
    rounded = np.floor(frame["score"].astype(float) + 0.5)
    diff = rounded - anchor
    out = pd.Series(np.where(diff > 0, "up", np.where(diff < 0, "down", "neutral")), index=frame.index, dtype=object)
    return out.where(anchor.notna())


def anchor_gap(frame: pd.DataFrame) -> pd.Series:
    """Rounded mean rating minus the label anchor (signed points)."""
    anchor = frame["normbank_label"].astype("float").map(lambda v: paper.LABEL_ANCHOR.get(int(v)) if v == v else np.nan)
    return np.floor(frame["score"].astype(float) + 0.5) - anchor


def table2(frame: pd.DataFrame) -> pd.DataFrame:
    """Counts of (majority modality x direction), the layout of the paper's Table 2."""
    frame = with_derived(frame)
    d = shift_direction(frame)
    counts = pd.crosstab(frame["modality"][d.notna()], d[d.notna()])
    counts = counts.reindex(index=list(paper.TABLE2), columns=list(DIRECTIONS), fill_value=0)
    counts["total"] = counts.sum(axis=1)
    return counts


def _value_counts(lists: pd.Series, domain: list) -> np.ndarray:
    index = {v: i for i, v in enumerate(domain)}
    counts = np.zeros((len(lists), len(domain)))
    for row, values in enumerate(lists):
        for v in values:
            counts[row, index[v]] += 1
    return counts


def alpha_ratings(frame: pd.DataFrame) -> float:
    """Krippendorff's alpha (interval) of the ratings (units = scenarios)."""
    return float(krippendorff.alpha(value_counts=_value_counts(frame["ratings"], [1, 2, 3, 4, 5]),
                                    value_domain=[1, 2, 3, 4, 5], level_of_measurement="interval"))


def alpha_modality(frame: pd.DataFrame) -> float:
    """Krippendorff's alpha (nominal) of the modality labels."""
    return float(krippendorff.alpha(value_counts=_value_counts(frame["modalities"], list(MODALITIES)),
                                    value_domain=list(range(len(MODALITIES))), level_of_measurement="nominal"))


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


def measure(frame: pd.DataFrame, latent: pd.DataFrame | None = None, qc_report: dict | None = None) -> dict:
    """Every calibration statistic of a dataset (latent and QC report optional)."""
    frame = with_derived(frame)
    t2 = table2(frame)
    total = t2["total"].sum()
    out: dict = {
        "images": int(frame["image_id"].nunique()),
        "scenarios": int(len(frame)),
        "mean_list_size": float(frame.groupby("image_id").size().mean()),
        "raters_per_item": float(frame["ratings"].map(len).mean()),
        "table2_counts": t2,
        "table2_shares": {(m, d): 100.0 * t2.loc[m, d] / total for m in t2.index for d in DIRECTIONS},
        "divergent_percent": 100.0 * (1 - t2["neutral"].sum() / total),
        "alpha_ratings": alpha_ratings(frame),
        "alpha_modality": alpha_modality(frame),
        "modality_agreement": modality_agreement(frame),
        "extreme": extreme_shift_rates(frame),
        "fig6b": directional_by_label(frame),
    }
    if latent is not None:
        out["image_shift"] = image_shift(frame, latent)
    if qc_report is not None:
        out["qc"] = qc_report
    return out


# --------------------------------------------------------------------------- targets

def _row(target: str, paper_value, simulated, tolerance: str, passed) -> dict:
    return {"target": target, "paper": paper_value, "simulated": simulated, "tolerance": tolerance,
            "pass": passed}


def _within(value, goal, tol):
    return None if value is None or value != value else bool(abs(value - goal) <= tol)


def calibration_table(m: dict, full_size: bool = False) -> pd.DataFrame:
    """One row per target: the paper's value, the simulated value, the tolerance, pass/fail.

    ``full_size`` adds the absolute size targets (9,260 images, ~32,212 scenarios).
    """
    s = paper.STATISTICS
    rows = []
    if full_size:
        rows.append(_row("images", paper.DATASET["images"], m["images"], "exact",
                         m["images"] == paper.DATASET["images"]))
        rows.append(_row("scenarios", paper.DATASET["scenarios"], m["scenarios"], "+/- 2%",
                         _within(m["scenarios"], paper.DATASET["scenarios"], 0.02 * paper.DATASET["scenarios"])))
    rows.append(_row("mean list size", paper.DATASET["mean_list_size"], round(m["mean_list_size"], 3), "+/- 0.05",
                     _within(m["mean_list_size"], paper.DATASET["mean_list_size"], 0.05)))
    rows.append(_row("ratings per scenario", paper.DATASET["raters_per_item"], m["raters_per_item"], "exact",
                     m["raters_per_item"] == paper.DATASET["raters_per_item"]))
    paper_shares = paper.table2_shares()
    for (mod, d), share in paper_shares.items():
        sim = m["table2_shares"][(mod, d)]
        rows.append(_row(f"Table 2 {mod}/{d} (% of total)", round(share, 2), round(sim, 2), "+/- 3 points",
                         _within(sim, share, 3.0)))
    rows.append(_row("Krippendorff alpha, ratings (interval)", s["alpha_ratings"], round(m["alpha_ratings"], 3),
                     "+/- 0.04", _within(m["alpha_ratings"], s["alpha_ratings"], 0.04)))
    rows.append(_row("Krippendorff alpha, modality (nominal)", s["alpha_modality"], round(m["alpha_modality"], 3),
                     "+/- 0.04", _within(m["alpha_modality"], s["alpha_modality"], 0.04)))
    for mod, key in (("text", "modality_agreement_text"), ("image", "modality_agreement_image")):
        v = m["modality_agreement"][mod]
        rows.append(_row(f"modality agreement, {mod}-grounded", s[key], round(v, 3), "+/- 0.05",
                         _within(v, s[key], 0.05)))
    shift = m.get("image_shift")
    for rel, key in (("reinforce", "shift_reinforce"), ("contradict", "shift_contradict")):
        v = shift[rel] if shift else None
        rows.append(_row(f"mean shift where the image {rel}s the text", s[key],
                         None if v is None else round(v, 3), "+/- 0.1", _within(v, s[key], 0.1)))
    ext = m["extreme"]
    rates = ext["rate"].fillna(0.0)
    rows.append(_row("extreme shifts (>= 3 points): highest rate", "both",
                     f"{rates.idxmax()} ({', '.join(f'{k} {v:.2%}' for k, v in rates.items())})", "argmax",
                     rates.idxmax() == "both"))
    f6 = m["fig6b"]
    for mod in ("image", "both"):
        for label, want in ((1, "down"), (-1, "up")):
            row = f6.loc[(mod, label)] if (mod, label) in f6.index else pd.Series({"up": 0, "down": 0})
            other = "up" if want == "down" else "down"
            desc = "should" if label == 1 else "should not"
            rows.append(_row(f"Fig. 6b {mod}, '{desc}' ({label:+d}) mostly {want}", f"{want} > {other}",
                             f"{want} {int(row.get(want, 0))} vs {other} {int(row.get(other, 0))}", "direction",
                             bool(row.get(want, 0) > row.get(other, 0))))
    img_down = m["table2_counts"].loc["image", "down"]
    img_up = m["table2_counts"].loc["image", "up"]
    down_pos = f6.loc[("image", 1), "down"] if ("image", 1) in f6.index else 0
    up_neg = f6.loc[("image", -1), "up"] if ("image", -1) in f6.index else 0
    paper_down = 100 * s["fig6b_should_down_image"] / paper.TABLE2["image"][2]
    paper_up = 100 * s["fig6b_should_not_up_image"] / paper.TABLE2["image"][0]
    sim_down = 100 * down_pos / max(1, img_down)
    sim_up = 100 * up_neg / max(1, img_up)
    rows.append(_row("Fig. 6b: % of image 'down' with label +1", round(paper_down, 1), round(sim_down, 1),
                     "+/- 10 points", _within(sim_down, paper_down, 10)))
    rows.append(_row("Fig. 6b: % of image 'up' with label -1", round(paper_up, 1), round(sim_up, 1),
                     "+/- 10 points", _within(sim_up, paper_up, 10)))
    qc = m.get("qc")

    def q(key):
        return qc.get(key) if qc else None

    v = q("canary_pass_rate")
    rows.append(_row("canary pass rate", "> 0.98", None if v is None else round(v, 4), "> 0.98",
                     None if v is None else bool(v > 0.98)))
    v = q("share_annotators_screened")
    rows.append(_row("annotators removed by variance screening (%)", s["annotator_screening_removed_percent"],
                     None if v is None else round(100 * v, 2), "1 to 3.5",
                     None if v is None else bool(1.0 <= 100 * v <= 3.5)))
    v = q("share_items_removed_sd")
    rows.append(_row("items removed, rating SD > 1.2 (%)", s["high_variance_removed_percent"],
                     None if v is None else round(100 * v, 2), "+/- 1 point",
                     None if v is None else _within(100 * v, s["high_variance_removed_percent"], 1.0)))
    shares = (qc or {}).get("image_qc_shares") or {}
    for flag, key, tol in (("minor", "image_qc_minor_percent", 1.5), ("lighting", "image_qc_lighting_percent", 1.0),
                           ("severe", "image_qc_severe_percent", 0.75)):
        v = shares.get(flag)
        rows.append(_row(f"images flagged {flag} (%)", s[key], None if v is None else round(100 * v, 2),
                         f"+/- {tol} points", None if v is None else _within(100 * v, s[key], tol)))
    rows.append(_row("divergent scenarios (%) [info: paper says 68.1, Table 2 gives 82.1]",
                     round(100 * (1 - sum(r[1] for r in paper.TABLE2.values()) / paper.table2_total()), 1),
                     round(m["divergent_percent"], 1), "follows Table 2", None))
    return pd.DataFrame(rows)


def load_for_calibration(root: str | Path) -> dict:
    """Measure a dataset directory (with the simulator's sidecars when present)."""
    from mmscale_core.data import load_dataset

    root = Path(root)
    ds = load_dataset(root, check_images=False)
    latent = pd.read_parquet(root / "latent.parquet") if (root / "latent.parquet").exists() else None
    qc = json.loads((root / "qc_report.json").read_text()) if (root / "qc_report.json").exists() else None
    return measure(ds.scenarios, latent, qc)


def calibration_report(root: str | Path, full_size: bool | None = None) -> pd.DataFrame:
    """Targets vs measured for the dataset at ``root`` (full-size targets when it has 9,260 images)."""
    m = load_for_calibration(root)
    if full_size is None:
        full_size = m["images"] == paper.DATASET["images"]
    return calibration_table(m, full_size)


def format_report(table: pd.DataFrame) -> str:
    shown = table.copy()
    shown["pass"] = shown["pass"].map({True: "PASS", False: "FAIL", None: "-"}).fillna("-")
    shown = shown.fillna("n/a")
    checked = table["pass"].dropna()
    summary = f"\n{int(checked.sum())}/{len(checked)} targets pass"
    with pd.option_context("display.max_colwidth", 80, "display.width", 200):
        return shown.to_string(index=False) + summary


def _cmd_calibrate_report(args: argparse.Namespace) -> int:
    table = calibration_report(args.dir)
    print(format_report(table))
    if args.json:
        from mmscale_core.io import write_json

        write_json(args.json, table.to_dict(orient="records"))
    checked = table["pass"].dropna()
    return 0 if bool(checked.all()) or not args.strict else 1


def register_calibrate_report(subparsers) -> None:
    p = subparsers.add_parser(
        "calibrate-report", help="paper targets vs the statistics of a dataset (pass/fail per target)",
        description="Measure a dataset (simulated or real) against the paper's published statistics.",
    )
    p.add_argument("dir", help="dataset directory")
    p.add_argument("--json", help="also write the table as JSON here")
    p.add_argument("--strict", action="store_true", help="exit 1 if any target fails")
    p.set_defaults(func=_cmd_calibrate_report)
