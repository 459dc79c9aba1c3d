"""A dataset directory's content digest, written beside it by the pipeline's data stage.

Why: DVC hashes a directory dependency file by file for every stage that lists it, several
times per stage (before, after, and for its run cache). ``data/dataset`` holds ~9,300 image
files, and ~17 stages read it: on the default profile that walk was ~75% of a no-op ``dvc
repro`` (21 s) and ~2 s of every stage. Only the data stage writes ``data/dataset``, so the
stages after it depend on ``data/dataset.digest.json`` instead: one small file whose sha256
covers every file's relative path and bytes, so it changes exactly when the dataset does.
If the directory is edited by hand, DVC sees the data stage's output changed and re-runs that
stage first, which rewrites the dataset and its digest together.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from mmscale_core.io import write_json

DIGEST_SUFFIX = ".digest.json"


def digest_path(dataset_dir: str | os.PathLike) -> Path:
    """Where the digest of ``dataset_dir`` lives: ``<dir>.digest.json`` next to it."""
    path = Path(dataset_dir)
    return path.with_name(path.name + DIGEST_SUFFIX)


def content_digest(dataset_dir: str | os.PathLike) -> dict:
    """sha256 over every regular file under ``dataset_dir`` (a symlinked root is followed): for each,
    in sorted order of its relative POSIX path, the path, its byte count and its bytes."""
    root = Path(dataset_dir)
    files = sorted(p for p in root.rglob("*") if p.is_file())
    digest = hashlib.sha256()
    total = 0
    for path in files:
        relative = path.relative_to(root).as_posix()
        size = path.stat().st_size
        digest.update(f"{relative}\0{size}\0".encode())
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        total += size
    return {"sha256": digest.hexdigest(), "files": len(files), "bytes": total}


def write_digest(dataset_dir: str | os.PathLike) -> Path:
    """Write ``content_digest(dataset_dir)`` to ``digest_path(dataset_dir)`` (atomically)."""
    target = digest_path(dataset_dir)
    write_json(target, {"dataset": Path(dataset_dir).name, **content_digest(dataset_dir)})
    return target
