"""``mmscale evaluate``: score any model's predictions on a dataset with every metric, ours and upstream's.

    mmscale evaluate --data DIR --predictions FILE [--split test] [--json OUT] [--pred-col NAME]

FILE is parquet, CSV or JSONL with ``scenario_id`` and a prediction on the 1-5
scale (``mmscale_core.upstream_predictions``; the release's inference JSONL is
read as is). Gold scores come from the dataset, never from the file; a
``gold_rating`` that disagrees is reported. Scenario ids not in the dataset are
an error; predictions for scenarios of other splits are ignored (and counted),
so the output of ``mmscale predict``, which scores every split, can be given
directly. The metrics and their CIs are ``metrics.upstream.evaluate_predictions``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from dataclasses import dataclass, field

import pandas as pd

from mmscale_core.errors import MmscaleError

GOLD_TOLERANCE = 1e-6
MAX_EXAMPLES = 5


@dataclass
class Evaluation:
    """The metrics table of one prediction file and what the reader should know about the input."""

    table: pd.DataFrame
    split: str
    n_images: int
    n_boot: int
    notes: list[str] = field(default_factory=list)


def _examples(frame: pd.DataFrame, describe) -> str:
    shown = "; ".join(describe(row) for row in frame.head(MAX_EXAMPLES).itertuples())
    return shown + (f"; ... ({len(frame) - MAX_EXAMPLES} more)" if len(frame) > MAX_EXAMPLES else "")


def evaluate_file(data_dir: str | os.PathLike, predictions_path: str | os.PathLike, *, split: str = "test",
                  pred_col: str | None = None, n_boot: int = 1000, seed: int = 0) -> Evaluation:
    """Read, match and score one prediction file (see the module docstring)."""
    from mmscale_core.data import load_dataset
    from mmscale_core.metrics.upstream import evaluate_predictions
    from mmscale_core.upstream_predictions import read_predictions

    scenarios = load_dataset(data_dir, check_images=False).scenarios
    present = sorted(scenarios["split"].dropna().astype(str).unique())
    if split not in present:
        raise MmscaleError(f"{data_dir}: no split {split!r}; the dataset has {', '.join(present) or 'no splits'}")
    predictions = read_predictions(predictions_path, pred_col)
    preds = predictions.frame
    known = scenarios.set_index("scenario_id")
    unknown = preds[~preds["scenario_id"].isin(known.index)]
    if len(unknown):
        listing = _examples(unknown, lambda r: f"{r.where}: scenario_id {r.scenario_id!r}")
        raise MmscaleError(f"{predictions.path}: {len(unknown)} scenario id(s) not in the dataset {data_dir}: "
                           f"{listing}")
    preds = preds.assign(split=known.loc[preds["scenario_id"], "split"].to_numpy(),
                         score=known.loc[preds["scenario_id"], "score"].to_numpy())
    notes = []
    other = preds[preds["split"] != split]
    if len(other):
        counts = other["split"].value_counts()
        notes.append(f"{len(other)} prediction(s) for scenarios of other splits ignored "
                     f"({', '.join(f'{k}: {v}' for k, v in counts.items())})")
    if "gold_rating" in preds.columns:
        given = preds["gold_rating"]
        differs = preds[given.notna() & ((given - preds["score"]).abs() > GOLD_TOLERANCE)]
        if len(differs):
            listing = _examples(differs, lambda r: f"{r.where}: scenario_id {r.scenario_id!r} gold_rating "
                                                   f"{r.gold_rating:g}, dataset {r.score:g}")
            notes.append(f"{len(differs)} gold_rating value(s) in the file disagree with the dataset's scores "
                         f"(the dataset's are used): {listing}")
    preds = preds[preds["split"] == split]
    in_split = scenarios[scenarios["split"] == split]
    merged = in_split[["scenario_id", "image_id", "score", "modality"]].merge(
        preds[["scenario_id", "prediction"]], on="scenario_id", how="left")
    predicted = merged[merged["prediction"].notna()]
    n_null = int((preds["prediction"].isna()).sum())
    n_absent = len(in_split) - len(preds)
    if n_null or n_absent:
        notes.append(f"{len(in_split) - len(predicted)} of {len(in_split)} {split} scenarios have no prediction "
                     f"({n_null} null in the file, {n_absent} absent from it); they are left out of every metric")
    out_of_scale = predicted[(predicted["prediction"] < 1) | (predicted["prediction"] > 5)]
    if len(out_of_scale):
        notes.append(f"{len(out_of_scale)} prediction(s) outside 1-5 (the confidence of ECE clips them)")
    if predicted.empty:
        raise MmscaleError(f"{predictions.path}: no prediction for any of the {len(in_split)} {split} scenarios")
    table = evaluate_predictions(predicted, n_in_split=len(in_split), n_boot=n_boot, seed=seed)
    return Evaluation(table, split, int(predicted["image_id"].nunique()), n_boot, notes)


def _number(value: float) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def format_table(evaluation: Evaluation) -> str:
    """The table as aligned text: metric, value, 95% CI, chance, n, and what the CIs are."""
    header = ("metric", "value", "95% CI", "chance", "n")
    rows = [header]
    for row in evaluation.table.itertuples():
        ci = "-" if math.isnan(row.ci_low) else f"[{row.ci_low:.4f}, {row.ci_high:.4f}]"
        rows.append((row.metric, _number(row.value), ci, _number(row.chance), f"{row.n:,}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(r, widths)))
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    lines.append(f"95% CI: percentile bootstrap over the {evaluation.n_images:,} {evaluation.split} images with a "
                 f"prediction ({evaluation.n_boot:,} resamples); Pairwise accuracy T-T ... I-B: Wilson interval.")
    lines.append("n: images with >= 2 predicted scenarios (NDCG@5, MRR, Kendall tau), their scenarios (Unsafe Rate, "
                 "AUC-Safety), pairs (pairwise accuracy), predicted scenarios (MAE ... ECE), scenarios in the split "
                 "(coverage).")
    return "\n".join(lines)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from mmscale_core.io import write_text
    from mmscale_core.judges import verifier
    from mmscale_core.metrics.upstream import metrics_json

    if verifier.is_verdict_file(args.predictions):  # a `mmscale verify-rationales` file: Task 3
        from mmscale_core.data import load_dataset

        report = verifier.rationale_report(args.predictions, load_dataset(args.data, check_images=False).scenarios)
        print(verifier.format_rationale_report(report))
        return 0
    evaluation = evaluate_file(args.data, args.predictions, split=args.split, pred_col=args.pred_col,
                               n_boot=args.n_boot, seed=args.seed)
    for note in evaluation.notes:
        print(f"note: {note}")
    print(format_table(evaluation))
    if args.json:
        write_text(args.json, json.dumps(metrics_json(evaluation.table), indent=2) + "\n")  # keys in schema order
        print(f"metrics written to {args.json}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate", help="score a prediction file with every metric (ours and the upstream release's)",
        description="Score predictions (parquet, CSV or JSONL with scenario_id and a 1-5 prediction; the "
                    "upstream release's inference JSONL as is) against a dataset's gold scores: coverage, "
                    "NDCG@5, MRR, Kendall tau, Unsafe Rate, AUC-Safety, pairwise accuracy (delta >= 0, >= 1, "
                    "by modality pair), MAE, RMSE, AUC-acceptability, ECE (acceptability), each with a 95%% CI, "
                    "the chance level and n.",
    )
    p.add_argument("--data", required=True, help="dataset directory (our layout or the upstream release's)")
    p.add_argument("--predictions", required=True, help="prediction file (.parquet, .csv, .jsonl)")
    p.add_argument("--split", default="test", help="split to score (default test; any split of the dataset)")
    p.add_argument("--json", help="also write {\"metrics\": [...]} to this file")
    p.add_argument("--pred-col", help="prediction column when it is neither 'prediction' nor 'pred'")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.set_defaults(func=_cmd_evaluate)
