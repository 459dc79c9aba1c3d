"""Who rates what: k (= 3) distinct annotators per scenario, random, never twice, canaries mixed in.

An annotator asks for work and gets a *task*: one image with the scenarios of
it that still need ratings and that they have neither rated, been given, nor
written themselves, in a random order: 3 to 5 of them (``min_items`` ..
``max_items``, the paper's list sizes). An image with more open scenarios is split
so that what remains for the next annotator is not below ``min_items`` either;
fewer than ``min_items`` are given only when no image has that many open for the
annotator (the tail of a round), so that every scenario still gets its ratings. The image is drawn
uniformly at random among images with open scenarios, so which annotators end
up rating a scenario is a random sample (the paper's guard against modality
anchoring).

The rules are database constraints, not just code paths (see
:mod:`mmscale_core.morale.db`): an assignment takes one of the scenario's k
*slots* (unique per scenario), and an annotator can hold one assignment per
scenario. A concurrent assigner that loses a race gets an IntegrityError inside
a savepoint and tries the scenario's next free slot, so the rules hold on
PostgreSQL as on SQLite (tested in ``tests/test_morale_postgres.py``).

Slots of tasks still unrated after ``lease_hours`` are released for others;
slots of excluded annotators too (their ratings no longer count).

Canaries are instructed-response attention checks ("select rating 2 and
modality text"), added to a task with probability ``canary_rate`` at a random
position; the annotator's answer either matches or not.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import and_, exists, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mmscale_core.data import MODALITIES
from mmscale_core.morale.db import Annotator, Assignment, CanaryCheck, RetiredScenario, Scenario, Task, utcnow

LIKERT_LABELS = {
    1: "Very unacceptable",
    2: "Unacceptable",
    3: "Neither",
    4: "Acceptable",
    5: "Very acceptable",
}
ACTIVE_STAGES = ("rate", "reconfirm", "add")


@dataclass(frozen=True)
class AssignmentPolicy:
    ratings_per_item: int = 3
    min_items: int = 3
    max_items: int = 5
    canary_rate: float = 0.2
    lease_hours: float = 24.0
    image_attempts: int = 8


def canary_text(expected_rating: int, expected_modality: str) -> str:
    # No label ("attention check") and the same form fields as a real item: an annotator who reads
    # the line answers it as asked, one who does not cannot tell it from the others by the page.
    return (f"For this line, please select rating {expected_rating} ({LIKERT_LABELS[expected_rating]}) "
            f"and the modality \u201c{expected_modality}\u201d.")


def release_stale(session: Session, policy: AssignmentPolicy) -> int:
    """Expire tasks still unrated after the lease; their slots go back to the pool."""
    cutoff = utcnow() - timedelta(hours=policy.lease_hours)
    # FOR UPDATE (PostgreSQL; SQLite has one writer anyway): lock the tasks before their assignments,
    # the order a submission locks them in, and skip a task whose late rating commits meanwhile.
    stale = list(session.scalars(select(Task.id).where(Task.stage == "rate", Task.created_at < cutoff)
                                 .with_for_update()))
    if stale:
        session.execute(update(Assignment).where(Assignment.task_id.in_(stale)).values(slot=None))
        session.execute(update(Task).where(Task.id.in_(stale)).values(stage="expired", updated_at=utcnow()))
    return len(stale)


def release_annotator(session: Session, annotator_id: int) -> None:
    """Free every slot of an excluded annotator (their ratings stop counting)."""
    # tasks before assignments: the order a concurrent submission locks them in (no deadlock on PostgreSQL)
    session.execute(update(Task).where(Task.annotator_id == annotator_id, Task.stage.in_(ACTIVE_STAGES))
                    .values(stage="expired", updated_at=utcnow()))
    session.execute(update(Assignment).where(Assignment.annotator_id == annotator_id).values(slot=None))


def active_task(session: Session, annotator_id: int) -> Task | None:
    return session.scalar(select(Task).where(Task.annotator_id == annotator_id, Task.stage.in_(ACTIVE_STAGES))
                          .order_by(Task.id).limit(1))


def _open_scenarios(session: Session, annotator: Annotator, k: int, image_id: str | None = None):
    """Scenarios with a free slot that this annotator has not been given and did not write."""
    taken = (select(func.count()).select_from(Assignment)
             .where(Assignment.scenario_id == Scenario.scenario_id, Assignment.slot.is_not(None))
             .scalar_subquery())
    mine = exists().where(Assignment.scenario_id == Scenario.scenario_id, Assignment.annotator_id == annotator.id)
    excluded_author = exists().where(Annotator.id == Scenario.created_by, Annotator.excluded_at.is_not(None))
    retired = exists().where(RetiredScenario.scenario_id == Scenario.scenario_id)
    query = select(Scenario).where(
        taken < k, ~mine, ~excluded_author, ~retired,
        (Scenario.created_by.is_(None)) | (Scenario.created_by != annotator.id),
    )
    if image_id is not None:
        query = query.where(Scenario.image_id == image_id).order_by(Scenario.position, Scenario.scenario_id)
    return query


def _take_slot(session: Session, scenario_id: str, k: int) -> int | None:
    used = set(session.scalars(select(Assignment.slot).where(Assignment.scenario_id == scenario_id,
                                                             Assignment.slot.is_not(None))))
    free = [s for s in range(k) if s not in used]
    return free[0] if free else None


def assign_next(session: Session, annotator: Annotator, policy: AssignmentPolicy,
                rng: random.Random) -> Task | None:
    """The annotator's unfinished task, else a new one; None when nothing is left for them."""
    current = active_task(session, annotator.id)
    if current is not None:
        return current
    release_stale(session, policy)
    k = policy.ratings_per_item
    open_per_image = dict(session.execute(
        _open_scenarios(session, annotator, k).with_only_columns(Scenario.image_id, func.count())
        .group_by(Scenario.image_id).order_by(Scenario.image_id)).all())
    full = [i for i, n in open_per_image.items() if n >= policy.min_items]
    short = [i for i, n in open_per_image.items() if n < policy.min_items]
    rng.shuffle(full)
    rng.shuffle(short)
    for image_id in (full or short)[:policy.image_attempts]:
        task = _fill_task(session, annotator, image_id, policy, rng)
        if task is not None:
            return task
    return None


def task_size(n_open: int, min_items: int, max_items: int) -> int:
    """How many of an image's ``n_open`` scenarios to give: at most ``max_items``, leaving either
    none or at least ``min_items`` for the next annotator when that is possible."""
    n = min(n_open, max_items)
    rest = n_open - n
    if 0 < rest < min_items and n_open - min_items >= min_items:
        n = n_open - min_items
    return n


def _fill_task(session: Session, annotator: Annotator, image_id: str, policy: AssignmentPolicy,
               rng: random.Random) -> Task | None:
    k = policy.ratings_per_item
    scenarios = list(session.scalars(_open_scenarios(session, annotator, k, image_id)))
    if not scenarios:
        return None
    rng.shuffle(scenarios)
    chosen = [s.scenario_id for s in scenarios[:task_size(len(scenarios), policy.min_items, policy.max_items)]]
    task = Task(annotator_id=annotator.id, image_id=image_id, stage="rate")
    session.add(task)
    session.flush()
    given = []
    # Slots are taken in scenario_id order, the same in every transaction: on PostgreSQL an insert
    # that hits another assigner's uncommitted slot waits for it, and two assigners taking shared
    # scenarios in different orders would deadlock.
    for scenario_id in sorted(chosen):
        for _ in range(k):  # a concurrent assigner may take the slot first: then try the next free one
            slot = _take_slot(session, scenario_id, k)
            if slot is None:
                break
            try:
                with session.begin_nested():
                    session.add(Assignment(task_id=task.id, annotator_id=annotator.id,
                                           scenario_id=scenario_id, position=0, slot=slot))
                given.append(scenario_id)
                break
            except IntegrityError:
                continue
    given.sort(key=chosen.index)  # back to the random order (which scenario gets which position)
    if not given:
        session.delete(task)
        session.flush()
        return None
    n_items = len(given) + 1
    positions = list(range(n_items))
    rng.shuffle(positions)
    rows = session.scalars(select(Assignment).where(Assignment.task_id == task.id)).all()
    by_scenario = {row.scenario_id: row for row in rows}
    for sid, pos in zip(given, positions):
        by_scenario[sid].position = pos
    if rng.random() < policy.canary_rate:
        session.add(CanaryCheck(task_id=task.id, annotator_id=annotator.id, position=positions[-1],
                                expected_rating=rng.randint(1, 5), expected_modality=rng.choice(MODALITIES)))
    return task


def open_slots(session: Session, k: int) -> int:
    """How many ratings the pool still needs (k per scenario minus live assignments)."""
    n_scenarios = session.scalar(
        select(func.count()).select_from(Scenario).where(
            ~exists().where(and_(Annotator.id == Scenario.created_by, Annotator.excluded_at.is_not(None))),
            ~exists().where(RetiredScenario.scenario_id == Scenario.scenario_id)))
    n_live = session.scalar(select(func.count()).select_from(Assignment).where(Assignment.slot.is_not(None)))
    return int(n_scenarios) * k - int(n_live)
