"""Export a MORALE round as a dataset in the release format (``mmscale validate`` accepts it).

Each scenario with at least ``min_ratings`` counted ratings becomes one record:
the source fields of the dataset (annotator-added scenarios take their image's
split / image_source / qc and a null ``normbank_label``; ``origin`` says which: ``source``
for the pool's, ``expansion`` for those added, sec 3.2), and the round's
final ratings (after reconfirmation), modalities and annotator names.
Excluded annotators and scenarios they wrote are left out; canaries never
enter the pool. ``include_existing`` puts the dataset's own earlier ratings
first. Images are copied to ``out/images/``.

Next to the scenarios the export writes ``morale_ratings.parquet`` (one row
per rating with the initial answer, the model score, the flag and the
reconfirmation) and ``morale_stats.json`` (progress, reconfirmation
statistics), for the analyses of sec 3.4. The written directory is loaded
back with ``load_dataset`` before returning, so a broken export fails here.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mmscale_core.data import IMAGE_DIR, index_images, load_dataset, write_dataset
from mmscale_core.errors import MmscaleError
from mmscale_core.io import atomic_path, write_json, write_parquet
from mmscale_core.morale.db import Database
from mmscale_core.morale.discrepancy import reconfirmation_stats
from mmscale_core.morale.queries import Source, progress, ratings_frame, scenarios_frame
from mmscale_core.morale.screening import item_sd

RATINGS_LOG = "morale_ratings.parquet"
STATS_FILE = "morale_stats.json"


@dataclass
class ExportSummary:
    out: Path
    scenarios: int
    scenarios_added: int
    ratings: int
    skipped_too_few_ratings: int
    skipped_high_variance: int


def export_frame(db: Source, *, min_ratings: int = 3, include_existing: bool = False,
                 max_item_sd: float | None = None) -> tuple[pd.DataFrame, dict]:
    """The release-format records of the round and counts of what was left out."""
    if min_ratings < 1:
        raise MmscaleError(f"--min-ratings {min_ratings}: the release format needs at least one rating")
    ratings = ratings_frame(db)
    scenarios = scenarios_frame(db)
    scenarios = scenarios[~scenarios["author_excluded"] & ~scenarios["retired"]]
    by_item = {sid: grp for sid, grp in ratings.groupby("scenario_id", sort=False)}
    sd = item_sd(ratings) if len(ratings) else pd.Series(dtype=float)
    records, too_few, high_var, added = [], 0, 0, 0
    for row in scenarios.itertuples(index=False):
        grp = by_item.get(row.scenario_id)
        new = ([], [], []) if grp is None else (grp["rating"].tolist(), grp["modality"].tolist(),
                                                grp["annotator"].tolist())
        if len(new[0]) < min_ratings:
            too_few += 1
            continue
        if max_item_sd is not None and sd.get(row.scenario_id, 0.0) > max_item_sd:
            high_var += 1
            continue
        ratings_list, modalities, annotators = new
        if include_existing and row.source_ratings:
            old = row.source_ratings
            clash = set(old["annotators"]) & set(annotators)
            if clash:
                raise MmscaleError(f"scenario_id={row.scenario_id}: annotator id(s) {', '.join(sorted(clash))} "
                                   "rated it both in the dataset and in this round; rename the MORALE "
                                   "annotators or export without --include-existing")
            ratings_list = list(old["ratings"]) + ratings_list
            modalities = list(old["modalities"]) + modalities
            annotators = list(old["annotators"]) + annotators
        is_added = isinstance(row.created_by, str)
        added += is_added
        records.append({
            "image_id": row.image_id, "scenario_id": row.scenario_id, "setting": row.setting,
            "scenario": row.scenario,
            "normbank_label": None if pd.isna(row.normbank_label) else int(row.normbank_label),
            "ratings": [int(r) for r in ratings_list], "modalities": list(modalities),
            "annotators": list(annotators), "split": row.split, "image_source": row.image_source, "qc": row.qc,
            "origin": "expansion" if is_added else "source",
        })
    frame = pd.DataFrame(records, columns=["image_id", "scenario_id", "setting", "scenario", "normbank_label",
                                           "ratings", "modalities", "annotators", "split", "image_source", "qc",
                                           "origin"])
    for optional in ("split", "image_source", "qc"):  # the format wants these on all records or none
        if frame[optional].isna().any():
            frame = frame.drop(columns=optional)
    return frame, {"scenarios_added": added, "skipped_too_few_ratings": too_few, "skipped_high_variance": high_var}


def export_dataset(db: Database, data_dir: str | os.PathLike, out: str | os.PathLike, *,
                   min_ratings: int = 3, include_existing: bool = False, max_item_sd: float | None = None,
                   ratings_per_item: int = 3, fmt: str = "parquet") -> ExportSummary:
    """Write the round to ``out`` in the release format (plus the ratings log and stats) and check it.

    Everything written is read in one snapshot, so that the scenarios, the ratings log and the
    stats agree even while annotators keep submitting.
    """
    data_dir, out = Path(data_dir), Path(out)
    with db.snapshot() as session:
        frame, counts = export_frame(session, min_ratings=min_ratings, include_existing=include_existing,
                                      max_item_sd=max_item_sd)
        log = ratings_frame(session, include_excluded=True)
        stats = {"progress": progress(session, ratings_per_item),
                 "reconfirmation": reconfirmation_stats(ratings_frame(session))}
    if frame.empty:
        raise MmscaleError(f"nothing to export: no scenario has {min_ratings} rating(s) yet "
                           f"(lower --min-ratings to export a partial round)")
    images, _ = index_images(data_dir)
    missing = sorted(set(frame["image_id"]) - set(images))
    if missing:
        raise MmscaleError(f"{data_dir / IMAGE_DIR}: no image file for {len(missing)} exported image(s), "
                           f"e.g. {missing[0]}; pass the dataset directory the round was served from (--data)")
    if out.resolve() == data_dir.resolve():
        raise MmscaleError(f"{out}: export into a new directory, not the source dataset")
    (out / IMAGE_DIR).mkdir(parents=True, exist_ok=True)
    for image_id in sorted(set(frame["image_id"])):
        src = images[image_id]
        dst = out / IMAGE_DIR / src.name
        if not dst.exists() or dst.stat().st_size != src.stat().st_size:
            with atomic_path(dst) as tmp:
                shutil.copyfile(src, tmp)
    write_dataset(frame, out, fmt=fmt)
    write_parquet(out / RATINGS_LOG, log.assign(created_at=log["created_at"].astype(str)))
    write_json(out / STATS_FILE, {
        **stats,
        "export": {"min_ratings": min_ratings, "include_existing": include_existing,
                   "max_item_sd": max_item_sd, **counts},
    })
    load_dataset(out)  # the contract: what we wrote must validate
    return ExportSummary(out=out, scenarios=len(frame), ratings=int(frame["ratings"].map(len).sum()), **counts)
