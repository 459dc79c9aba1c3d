"""``mmscale bench data``: how long loading and validating a paper-size dataset takes.

The foundation's target is "32k records well under a second, apart from image
decoding"; this prints the measured time for both formats of our layout and for the
authors' layout (flat file + split files).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from mmscale_core.bench.timing import alternate, medians, ratio_line
from mmscale_core.data import load_dataset, write_dataset, write_upstream


def synthetic_release(n_scenarios: int, seed: int = 0) -> pd.DataFrame:
    """Records with the paper's shape (3 ratings each, lists of ~3.5), no images."""
    rng = np.random.default_rng(seed)
    image_of = np.cumsum(rng.random(n_scenarios) < 1 / 3.48)
    return pd.DataFrame({
        "image_id": [f"img{i:05d}" for i in image_of],
        "scenario_id": [f"s{i:06d}" for i in range(n_scenarios)],
        "setting": "a child crossing a street",
        "scenario": [f"holding the child's hand, variant {i}" for i in range(n_scenarios)],
        "normbank_label": rng.integers(-1, 2, n_scenarios),
        "ratings": list(rng.integers(1, 6, (n_scenarios, 3))),
        "modalities": list(rng.choice(["text", "image", "both"], (n_scenarios, 3))),
        "annotators": [[f"w{a}", f"w{a + 1}", f"w{a + 2}"] for a in rng.integers(0, 300, n_scenarios)],
    })


def run(n_scenarios: int = 32_212, repeats: int = 3) -> dict[str, float]:
    """Median load time per layout, the layouts timed in alternating order (``bench.timing``)."""
    frame = synthetic_release(n_scenarios)
    with tempfile.TemporaryDirectory() as tmp:
        roots = {fmt: Path(tmp) / fmt for fmt in ("parquet", "jsonl", "upstream")}
        write_dataset(frame, roots["parquet"], fmt="parquet")
        write_dataset(frame, roots["jsonl"], fmt="jsonl")
        scenarios = load_dataset(roots["parquet"], check_images=False).scenarios
        write_upstream(scenarios, roots["upstream"], {i: f"{i}.png" for i in scenarios["image_id"].unique()})

        def load(root: Path) -> None:
            ds = load_dataset(root, check_images=False)
            assert len(ds.scenarios) == n_scenarios

        timings = alternate({fmt: [lambda r=root: load(r)] for fmt, root in roots.items()}, repeats=repeats)
    return medians(timings)


def _cmd(args: argparse.Namespace) -> int:
    times = run(args.scenarios, args.repeats)
    print(f"load_dataset + validation of {args.scenarios:,} records (images not decoded), "
          f"median of {args.repeats}:")
    names = {"parquet": "scenarios.parquet", "jsonl": "scenarios.jsonl", "upstream": "upstream flat + splits"}
    for fmt, t in times.items():
        print(f"  {names[fmt]:<23} {t:6.3f} s   ({args.scenarios / t:,.0f} records/s)")
    for fmt in ("jsonl", "upstream"):
        print("  " + ratio_line(f"{names[fmt]} / {names['parquet']} time", (fmt, times[fmt]), ("parquet", times["parquet"])))
    print("  (target: each well under 1 s)")
    return 0


def register_bench(subparsers) -> None:
    p = subparsers.add_parser("data", help="time loading + validating a paper-size dataset")
    p.add_argument("--scenarios", type=int, default=32_212)
    p.add_argument("--repeats", type=int, default=3)
    p.set_defaults(func=_cmd)
