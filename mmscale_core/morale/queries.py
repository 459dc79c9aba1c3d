"""Read-only views of the database as pandas frames: what the admin page, stats and export share.

Each takes a :class:`Database` (one read transaction per call) or an open ``Session``, so that
an export reads every frame from one snapshot (``Database.snapshot``).
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Union

import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mmscale_core.morale.db import (
    Annotator, Assignment, CanaryCheck, Database, Rating, RetiredScenario, Scenario, Task,
)

Source = Union[Database, Session]


@contextlib.contextmanager
def reading(source: Source) -> Iterator[Session]:
    if isinstance(source, Session):
        yield source
    else:
        with source.read() as session:
            yield session

RATING_COLUMNS = ("rating_id", "scenario_id", "image_id", "annotator_id", "annotator", "excluded", "rating",
                  "modality", "initial_rating", "initial_modality", "model_score", "flagged", "reconfirm",
                  "created_at")


def ratings_frame(db: Source, include_excluded: bool = False) -> pd.DataFrame:
    """One row per stored rating (final and initial answer, model score, flag, reconfirmation)."""
    with reading(db) as session:
        rows = session.execute(
            select(Rating.id, Rating.scenario_id, Scenario.image_id, Rating.annotator_id, Annotator.name,
                   Annotator.excluded_at.is_not(None), Rating.rating, Rating.modality, Rating.initial_rating,
                   Rating.initial_modality, Rating.model_score, Rating.flagged, Rating.reconfirm,
                   Rating.created_at)
            .join(Scenario, Scenario.scenario_id == Rating.scenario_id)
            .join(Annotator, Annotator.id == Rating.annotator_id)
            .order_by(Rating.id)).all()
    frame = pd.DataFrame([tuple(r) for r in rows], columns=list(RATING_COLUMNS))
    frame["model_score"] = frame["model_score"].astype(float)
    if not include_excluded:
        frame = frame[~frame["excluded"].astype(bool)].reset_index(drop=True)
    return frame


def annotators_frame(db: Source) -> pd.DataFrame:
    with reading(db) as session:
        done = dict(session.execute(select(Task.annotator_id, func.count()).where(Task.stage == "done")
                                    .group_by(Task.annotator_id)).all())
        added = dict(session.execute(select(Scenario.created_by, func.count())
                                     .where(Scenario.created_by.is_not(None)).group_by(Scenario.created_by)).all())
        rows = [(a.id, a.name, a.consented_at is not None, a.excluded_at is not None, done.get(a.id, 0),
                 added.get(a.id, 0), a.created_at)
                for a in session.scalars(select(Annotator).order_by(Annotator.id))]
    return pd.DataFrame(rows, columns=["id", "name", "consented", "excluded", "tasks_done", "scenarios_added",
                                       "created_at"])


def canaries_frame(db: Source) -> pd.DataFrame:
    with reading(db) as session:
        rows = session.execute(select(CanaryCheck.id, CanaryCheck.annotator_id, CanaryCheck.passed)).all()
    return pd.DataFrame([tuple(r) for r in rows], columns=["id", "annotator_id", "passed"])


def scenarios_frame(db: Source) -> pd.DataFrame:
    """Every scenario of the pool (dataset and annotator-added) with its source fields."""
    with reading(db) as session:
        rows = session.execute(
            select(Scenario, Annotator.name, Annotator.excluded_at.is_not(None),
                   RetiredScenario.scenario_id.is_not(None))
            .outerjoin(Annotator, Annotator.id == Scenario.created_by)
            .outerjoin(RetiredScenario, RetiredScenario.scenario_id == Scenario.scenario_id)
            .order_by(Scenario.position, Scenario.scenario_id)).all()
    records = [{
        "scenario_id": s.scenario_id, "image_id": s.image_id, "setting": s.setting, "scenario": s.text,
        "normbank_label": s.normbank_label, "split": s.split, "image_source": s.image_source, "qc": s.qc,
        "source_ratings": s.source_ratings, "model_score": s.model_score, "created_by": name,
        "author_excluded": bool(excluded), "retired": bool(retired),
    } for s, name, excluded, retired in rows]
    return pd.DataFrame(records, columns=["scenario_id", "image_id", "setting", "scenario", "normbank_label",
                                          "split", "image_source", "qc", "source_ratings", "model_score",
                                          "created_by", "author_excluded", "retired"])


def progress(db: Source, ratings_per_item: int) -> dict:
    """Counts for the admin page: pool size, ratings collected and needed, tasks by stage."""
    ratings = ratings_frame(db)
    scenarios = scenarios_frame(db)
    live = scenarios[~scenarios["author_excluded"] & ~scenarios["retired"]]
    per_item = ratings.groupby("scenario_id").size() if len(ratings) else pd.Series(dtype=int)
    with reading(db) as session:
        stages = dict(session.execute(select(Task.stage, func.count()).group_by(Task.stage)).all())
        live_slots = session.scalar(select(func.count()).select_from(Assignment).where(Assignment.slot.is_not(None)))
    n_items = int(len(live))
    complete = int((per_item.reindex(live["scenario_id"]).fillna(0) >= ratings_per_item).sum())
    return {
        "scenarios": n_items,
        "scenarios_added": int(live["created_by"].notna().sum()),
        "with_model_score": int(live["model_score"].notna().sum()),
        # annotator-added scenarios are scored only when predictions for them are served (a restart
        # with `mmscale predict` run on an export); until then their ratings skip the discrepancy step
        "added_without_model_score": int((live["created_by"].notna() & live["model_score"].isna()).sum()),
        "retired": int(scenarios["retired"].sum()),
        "ratings": int(len(ratings)),
        "ratings_needed": n_items * ratings_per_item,
        "items_complete": complete,
        "share_complete": complete / n_items if n_items else 0.0,
        "assigned_slots": int(live_slots),
        "tasks": {stage: int(stages.get(stage, 0)) for stage in ("rate", "reconfirm", "add", "done", "expired")},
    }
