"""Validated scenario frames, kept between processes: the same release is not re-validated by every stage.

Why: about 30 pipeline stages load the same 32,500-record release, and reading, validating and
building its frame (``load_ours``) takes ~1 s each time on 2 cores; unpickling the frame one of
them built takes ~0.1 s.

What a frame is kept under: the sha256 of the scenarios file's bytes (1-2 ms for the default's),
the split settings, and a digest of the source of every ``mmscale_core`` module (validation
and the frame's derived columns are code; any edit to the package is a miss). So a hit is the
frame those exact bytes give with this exact code, never a stale one. Only a frame that
validated without problems is kept. The images are indexed and checked on every load, as
without the cache: the cache holds what the scenarios file alone determines.

Where: ``$MMSCALE_FRAME_CACHE_DIR``, else ``$XDG_CACHE_HOME/mmscale/frames`` (default
``~/.cache/mmscale/frames``), the newest ``KEEP`` frames; ``MMSCALE_FRAME_CACHE=0`` turns it
off. A cache that cannot be read or written is skipped: it changes speed, never results.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pickle
from pathlib import Path
from typing import Any

from mmscale_core.io import atomic_path

KEEP = 8
FORMAT = 1  # bump when what an entry holds changes


def enabled() -> bool:
    return os.environ.get("MMSCALE_FRAME_CACHE", "1") != "0"


def cache_dir() -> Path:
    override = os.environ.get("MMSCALE_FRAME_CACHE_DIR")
    if override:
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mmscale" / "frames"


@functools.lru_cache(maxsize=1)
def code_digest() -> str:
    """``source_digest`` of the installed ``mmscale_core``, once per process."""
    return source_digest(Path(__file__).resolve().parents[1])


def source_digest(package: Path) -> str:
    """sha256 over every ``**/*.py`` under ``package`` (relative path and bytes)."""
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def entry_key(scenarios_file: Path, split_seed: int, test_fraction: float) -> str | None:
    """The key of this file's bytes and settings with this code; None when the cache is off or the file unreadable."""
    if not enabled():
        return None
    try:
        data = scenarios_file.read_bytes()
    except OSError:  # the loader reports it as a problem of the dataset
        return None
    digest = hashlib.sha256()
    digest.update(f"{FORMAT}|{code_digest()}|{scenarios_file.name}|{split_seed}|{test_fraction!r}|".encode())
    digest.update(data)
    return digest.hexdigest()


def load(key: str | None) -> Any | None:
    """What ``store`` kept under ``key`` (from ``entry_key``), or None."""
    if key is None:
        return None
    try:
        path = cache_dir() / f"{key}.pkl"
        with open(path, "rb") as fh:
            value = pickle.load(fh)
        os.utime(path)  # recently used: kept by ``_prune``
        return value
    except Exception:  # noqa: BLE001 - missing, unreadable or from another pandas: a miss
        return None


def store(key: str | None, value: Any) -> None:
    """Keep ``value`` (picklable) under ``key``; drop all but the newest ``KEEP``."""
    if key is None:
        return
    try:
        path = cache_dir() / f"{key}.pkl"
        with atomic_path(path) as tmp:
            tmp.write_bytes(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
        _prune(path.parent)
    except Exception:  # noqa: BLE001 - a read-only or full disk: load without the cache next time
        return


def _prune(directory: Path) -> None:
    entries = sorted(directory.glob("*.pkl"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in entries[KEEP:]:
        old.unlink(missing_ok=True)
