"""``mmscale validate`` and ``mmscale export``: the release formats at the command line."""

from __future__ import annotations

import argparse
from typing import Any

from mmscale_core.data.export import export_dataset
from mmscale_core.data.layouts import LAYOUTS, load_dataset
from mmscale_core.data.problems import DataWarning, format_warnings

LAYOUT_NAMES = {"ours": "our layout", "upstream": "the authors' layout"}


def format_summary(summary: dict[str, Any]) -> str:
    hist = lambda d: ", ".join(f"{k}: {v}" for k, v in d.items())  # noqa: E731
    annotators = (f"{summary['annotators']} ({summary['ratings']} ratings)" if summary.get("annotators") is not None
                  else f"not in this release ({summary['ratings']} ratings)")
    layout = LAYOUT_NAMES.get(summary.get("layout", "ours"), summary.get("layout"))
    lines = [
        f"dataset {summary['root']} ({summary['file']}, {layout}) is valid",
        f"  images:      {summary['images']}",
        f"  scenarios:   {summary['scenarios']} (mean list size {summary['mean_list_size']:.2f})",
        f"  list sizes:  {hist(summary['list_size_histogram'])}",
        f"  annotators:  {annotators}",
        f"  ratings:     {hist(summary['rating_histogram'])}",
        f"  modality:    {hist(summary['modality_histogram'])} (scenario label)",
        f"  split:       {hist(summary['split'])} (images)",
    ]
    if summary.get("normbank_labels") == 0:
        lines.append("  NormBank labels: not in this release (Table 2, Table 6, Fig. 6 are skipped)")
    return "\n".join(lines)


def format_warning_report(warnings: list[DataWarning]) -> str:
    """The warnings block `mmscale validate` prints (empty string without warnings)."""
    if not warnings:
        return ""
    lines = format_warnings(warnings)
    return "\n".join([f"{len(warnings)} warning{'s' * (len(warnings) != 1)} (not blocking):",
                      *(f"  - {line}" for line in lines)])


def _cmd_validate(args: argparse.Namespace) -> int:
    dataset = load_dataset(args.dir, decode_images=not args.no_decode)
    print(format_summary(dataset.summary()))
    report = format_warning_report(dataset.warnings)
    if report:
        print(report)
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    dataset, dropped = export_dataset(args.dir, args.out, args.layout, fmt=args.format)
    print(f"wrote {dataset.summary()['scenarios']} scenarios of {args.dir} ({LAYOUT_NAMES[dataset.layout]}) "
          f"to {args.out} in {LAYOUT_NAMES[args.layout]}")
    if dropped:
        print(f"  left out (no place for them in {LAYOUT_NAMES[args.layout]}): {', '.join(dropped)}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "validate", help="check a dataset directory against the release format (either layout)",
        description="Check every record and image of a dataset (our layout or the authors'); list every "
                    "problem found, then the warnings. Writes nothing.",
    )
    p.add_argument("dir", help="dataset directory: scenarios.parquet|jsonl + images/ (ours) or "
                               "mmscale_clean_flat.jsonl + images/ + splits/ (the authors')")
    p.add_argument("--no-decode", action="store_true", help="check that images exist, but skip decoding them")
    p.set_defaults(func=_cmd_validate)

    p = subparsers.add_parser(
        "export", help="convert a dataset to our layout or the authors' (upstream) layout",
        description="Read a dataset in either layout and write it to a new directory in the given layout.",
    )
    p.add_argument("dir", help="dataset directory (either layout)")
    p.add_argument("out", help="new directory to write (must not exist or be empty)")
    p.add_argument("--layout", choices=LAYOUTS, required=True, help="layout to write")
    p.add_argument("--format", choices=("parquet", "jsonl"), default="parquet",
                   help="scenarios file format when writing our layout (default parquet)")
    p.set_defaults(func=_cmd_export)
