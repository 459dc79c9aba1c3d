"""Paper targets vs the measured statistics of a dataset: ``mmscale calibrate-report DIR``.

The measures (directions, Table 2, agreement, extreme and image shifts) are defined in
:mod:`mmscale_core.modality_shifts`, which the notebooks use too; Krippendorff's alpha
(interval for ratings, nominal for modality labels) is :func:`mmscale_core.metrics.krippendorff_alpha`.
Table 2 cell share: scenarios in a (majority modality, direction) cell, in percent of all
scenarios with a label (the paper's Table 2 shares of 28,586).

Targets that need the simulator's latent truth show ``n/a`` on real data.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from mmscale_core import paper
from mmscale_core.metrics.agreement import krippendorff_alpha
from mmscale_core.modality_shifts import (DIRECTIONS, directional_by_label, extreme_shift_rates, image_shift,
                                          modality_agreement, table2, with_derived)


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
        "alpha_ratings": krippendorff_alpha(frame["ratings"], "interval"),
        "alpha_modality": krippendorff_alpha(frame["modalities"], "nominal"),
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


def _load(root: Path):
    from mmscale_core.data import load_dataset

    ds = load_dataset(root, check_images=False)
    latent = pd.read_parquet(root / "latent.parquet") if (root / "latent.parquet").exists() else None
    qc = json.loads((root / "qc_report.json").read_text()) if (root / "qc_report.json").exists() else None
    return ds.scenarios, latent, qc


def load_for_calibration(root: str | Path) -> dict:
    """Measure a dataset directory (with the simulator's sidecars when present)."""
    return measure(*_load(Path(root)))


def with_source_only(table: pd.DataFrame, source_table: pd.DataFrame, expansion_share: float) -> pd.DataFrame:
    """The table of an expanded dataset next to that of its source scenarios alone: columns
    ``source only`` and ``pass (source only)``, and a first row with the expansion share
    (sec 3.2's added scenarios must keep the paper's marginals: both columns should pass)."""
    out = table.copy()
    out["source only"] = source_table["simulated"].to_numpy()
    out["pass (source only)"] = source_table["pass"].to_numpy()
    share = _row("expansion scenarios (% of scenarios) [info]", "n/a", round(100 * expansion_share, 2),
                 "info", None)
    share.update({"source only": 0.0, "pass (source only)": None})
    return pd.concat([pd.DataFrame([share]), out], ignore_index=True)


def calibration_report(root: str | Path, full_size: bool | None = None) -> pd.DataFrame:
    """Targets vs measured for the dataset at ``root`` (full-size targets when it has 9,260 images).

    A dataset whose records carry ``origin`` (the simulator's ``expansion/``, a MORALE export)
    is measured twice, with and without its added scenarios (:func:`with_source_only`).
    """
    frame, latent, qc = _load(Path(root))
    m = measure(frame, latent, qc)
    if full_size is None:
        full_size = m["images"] == paper.DATASET["images"]
    table = calibration_table(m, full_size)
    if "origin" in frame.columns and (frame["origin"] == "expansion").any():
        source = frame[frame["origin"] == "source"]
        table = with_source_only(table, calibration_table(measure(source, latent, qc), full_size),
                                 float((frame["origin"] == "expansion").mean()))
    return table


def format_report(table: pd.DataFrame) -> str:
    shown = table.copy()
    for col in ("pass", "pass (source only)"):
        if col in shown.columns:
            shown[col] = shown[col].map({True: "PASS", False: "FAIL", None: "-"}).fillna("-")
    shown = shown.fillna("n/a")
    checked = _checked(table)
    summary = f"\n{int(checked.sum())}/{len(checked)} targets pass"
    with pd.option_context("display.max_colwidth", 80, "display.width", 200):
        return shown.to_string(index=False) + summary


def _checked(table: pd.DataFrame) -> pd.Series:
    """Every pass/fail verdict (both columns of an expanded dataset)."""
    cols = [c for c in ("pass", "pass (source only)") if c in table.columns]
    return pd.concat([table[c] for c in cols]).dropna()


def _cmd_calibrate_report(args: argparse.Namespace) -> int:
    table = calibration_report(args.dir)
    print(format_report(table))
    if args.json:
        from mmscale_core.io import write_json

        write_json(args.json, table.to_dict(orient="records"))
    checked = _checked(table)
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
