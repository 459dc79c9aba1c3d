"""``mmscale bench simulate``: wall time and disk size of the default dataset vs the budget.

Prints measured numbers beside the targets (60 s on 2 cores, 300 MB); it does
not fail on a slow machine (speed is shown, never asserted in tests).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from mmscale_core.simulator.generate import DEFAULT_IMAGES, DEFAULT_PHOTO_IMAGES, simulate

TARGET_SECONDS = 60.0
TARGET_MB = 300.0


def _size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def run_bench(n_images: int, workers: int, image_size: int, out: str | None, keep: bool) -> int:
    root = Path(out) if out else Path(tempfile.mkdtemp(prefix="mmscale-bench-sim-"))
    try:
        t = time.perf_counter()
        result = simulate(root, n_images=n_images, image_size=image_size, workers=workers,
                          photo_images=DEFAULT_PHOTO_IMAGES)
        wall = time.perf_counter() - t
        total_mb = _size_mb(root)
        parts = {"images/": _size_mb(root / "images"), "photo/": _size_mb(root / "photo")}
        parts["scenarios + sidecars"] = total_mb - parts["images/"] - parts["photo/"]
        scale = DEFAULT_IMAGES / n_images
        print(f"mmscale bench simulate: {n_images} images ({result['scenarios']} scenarios), "
              f"{result['photo_images']} photo-variant images, {image_size}px, {workers} worker(s), "
              f"{os.cpu_count()} CPU(s) visible")
        for key in ("tables_s", "write_s", "render_s", "photo_s"):
            print(f"  {key[:-2]:<8} {result[key]:7.2f} s")
        print(f"  wall     {wall:7.2f} s   target {TARGET_SECONDS:.0f} s   ratio {wall / TARGET_SECONDS:.2f}"
              + (f"   (x{scale:.2f} to full size: ~{wall * scale:.0f} s)" if n_images != DEFAULT_IMAGES else ""))
        print(f"  disk     {total_mb:7.1f} MB  target {TARGET_MB:.0f} MB  ratio {total_mb / TARGET_MB:.2f}")
        for name, mb in parts.items():
            print(f"    {name:<22} {mb:7.1f} MB")
        print(f"  rate     {n_images / max(result['render_s'], 1e-9):7.0f} images/s rendered")
    finally:
        if not keep and not out:
            shutil.rmtree(root, ignore_errors=True)
    return 0


def register_bench(subparsers) -> None:
    p = subparsers.add_parser("simulate", help="time and size of `mmscale simulate` at the default size")
    p.add_argument("--images", type=int, default=DEFAULT_IMAGES)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--out", help="write here instead of a temporary directory (kept)")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    p.set_defaults(func=lambda a: run_bench(a.images, a.workers, a.image_size, a.out, a.keep))
