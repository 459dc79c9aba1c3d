"""``mmscale simulate`` and ``mmscale calibrate-report``."""

from __future__ import annotations

import argparse
import os

from mmscale_core.simulator.calibration import register_calibrate_report
from mmscale_core.simulator.generate import DEFAULT_IMAGES, DEFAULT_PHOTO_IMAGES, simulate


def _cmd_simulate(args: argparse.Namespace) -> int:
    result = simulate(args.out, n_images=args.images, seed=args.seed, image_size=args.image_size,
                      photo_images=args.photo_images, workers=args.workers, progress=not args.quiet,
                      layout=args.layout)
    print(f"wrote {result['images']} images, {result['scenarios']} scenarios and a photo variant of "
          f"{result['photo_images']} images to {args.out} in {result['total_s']:.1f} s")
    print(f"check it with: mmscale validate {args.out} && mmscale calibrate-report {args.out}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "simulate", help="write the calibrated simulated MM-SCALE dataset (release format + latent truth)",
        description="Simulate a dataset whose statistics match the paper's: scenarios, three annotators "
                    "each, quality control, procedurally rendered images and a photo-style variant. "
                    "The same seed gives identical files.",
    )
    p.add_argument("--out", required=True, help="output directory (created; its images are replaced)")
    p.add_argument("--images", type=int, default=DEFAULT_IMAGES, help=f"images to release (default {DEFAULT_IMAGES})")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--image-size", type=int, default=224, help="image side in pixels, 16..336 (default 224)")
    p.add_argument("--photo-images", type=int, default=DEFAULT_PHOTO_IMAGES,
                   help=f"images in the photo/ variant, test split first (default {DEFAULT_PHOTO_IMAGES}; 0: none)")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                   help="rendering processes (output does not depend on it)")
    p.add_argument("--layout", choices=("ours", "upstream"), default="ours",
                   help="release layout: ours (scenarios.parquet, 9:1 split) or upstream, the authors' "
                        "(mmscale_clean_flat.jsonl + splits/, 70/10/20 train/val/test)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_simulate)
    register_calibrate_report(subparsers)
