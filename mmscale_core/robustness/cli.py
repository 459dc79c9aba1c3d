"""``mmscale robustness``: the moral-robustness suite on one trained run (parsing only; work is lazy)."""

from __future__ import annotations

import argparse


def _cmd_robustness(args: argparse.Namespace) -> int:
    from mmscale_core.robustness.runner import RESULTS_FILE, SUMMARY_FILE, robustness_to_dir

    results, summary = robustness_to_dir(
        args.run, args.data, args.out, split=args.split, perturbations=args.perturbations, seed=args.seed,
        max_images=args.max_images, n_boot=args.n_boot, tta=args.tta, progress=not args.no_progress)
    print(f"{results['perturbation'].nunique()} perturbations x {results['scenario_id'].nunique()} scenarios "
          f"scored; wrote {args.out}/{RESULTS_FILE} and {args.out}/{SUMMARY_FILE} ({len(summary)} rows)")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "robustness", help="moral robustness: do a run's judgments survive perturbations that keep the context?",
        description="Scores the originals and perturbed copies (persuasion, authority, role play, rewording, "
                    "surface noise, typos; image noise, blur, JPEG, crop, brightness, typographic overlays) "
                    "of a split with a trained run; writes robustness.parquet and summary.csv (flip rates, "
                    "mean |delta|, Kendall tau, delta NDCG@5 with 95%% bootstrap CIs over images).")
    p.add_argument("--run", required=True, help="run directory written by mmscale train")
    p.add_argument("--data", required=True, help="dataset directory (release format)")
    p.add_argument("--split", default="test", help="which split to perturb (default: test)")
    p.add_argument("--perturbations", default=None, metavar="NAME,...",
                   help="comma-separated perturbation names (default: all of the suite)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--seed", type=int, default=0, help="seed of the perturbations, subsample and bootstrap")
    p.add_argument("--max-images", type=int, default=None, help="score at most this many images (seeded choice)")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples of images for the CIs")
    p.add_argument("--tta", type=int, default=0, metavar="K",
                   help="score with test-time augmentation: the mean over K noise-only views")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_robustness)
