"""The annotator's round as transactions, independent of HTTP: consent, rate, reconfirm, add.

Each submit function is one database transaction (``Database.write``): it
validates every field first and writes nothing when any is wrong
(:class:`FormError`, HTTP 422), then writes the submission record, the
ratings and the task's next stage together, or nothing at all. The client
token of the form makes a retried post a no-op that returns the same outcome.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass, field
from typing import Mapping

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mmscale_core.data import MODALITIES
from mmscale_core.errors import MmscaleError
from mmscale_core.morale.assignment import LIKERT_LABELS, canary_text, release_annotator
from mmscale_core.morale.db import (
    MAX_ID, Annotator, Assignment, CanaryCheck, Database, Rating, Scenario, ScenarioKey, Submission, Task,
    text_key, utcnow,
)
from mmscale_core.morale.discrepancy import DEFAULT_DELTA, is_flagged, next_stage
from mmscale_core.text_checks import describe_forbidden_characters

CLIENT_TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,99}$")
MIN_SCENARIO_CHARS, MAX_SCENARIO_CHARS = 5, 300
DUPLICATE_SCENARIO = "this image already has that scenario (ignoring case and spacing); propose a different action"


class NotFound(Exception):
    """The task does not exist *for this annotator* (another annotator's task looks the same)."""


class Conflict(Exception):
    """The request does not fit the task's current stage (HTTP 409)."""


STEP_ORDER = ("rate", "reconfirm", "add", "done")
STEP_NAMES = {"rate": "rating the scenarios", "reconfirm": "checking the flagged ratings",
              "add": "adding a scenario", "done": "finished"}


def valid_id(value: int) -> bool:
    """Whether a path id can name a row at all (larger ones overflow SQLite / PostgreSQL integers)."""
    return 0 < value <= MAX_ID


class FormError(Exception):
    """Invalid form fields (HTTP 422); ``errors`` maps field name -> message."""

    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        super().__init__("; ".join(errors.values()))


@dataclass
class Item:
    """A row of the rating form: a scenario assignment or a canary."""

    key: str
    text: str
    position: int
    is_canary: bool = False
    assignment_id: int | None = None
    canary_id: int | None = None
    rating: int | None = None
    modality: str | None = None
    model_score: float | None = None
    extra: dict = field(default_factory=dict)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_client_token() -> str:
    return secrets.token_urlsafe(24)


# --------------------------------------------------------------------------- admin operations

def invite(db: Database, name: str) -> str:
    """Create an annotator; return their secret token (only its hash is stored)."""
    name = (name or "").strip()
    if not NAME.match(name):
        raise MmscaleError(f"annotator name {name!r}: use 1-100 letters, digits and _ . @ + - "
                           "(it becomes the annotator id in the exported dataset)")
    token = secrets.token_urlsafe(24)
    try:
        with db.write() as session:
            session.add(Annotator(name=name, token_hash=hash_token(token)))
    except IntegrityError:
        raise MmscaleError(f"annotator {name!r} already exists (a lost link is re-issued with "
                           "`mmscale morale invite --reissue NAME`)") from None
    return token


def reissue(db: Database, name: str) -> str:
    """A new token for an existing annotator; the old link stops working (only hashes are stored)."""
    token = secrets.token_urlsafe(24)
    with db.write() as session:
        ann = session.scalar(select(Annotator).where(Annotator.name == (name or "").strip()))
        if ann is None:
            raise MmscaleError(f"annotator {name!r} does not exist (invite them first)")
        if ann.excluded_at is not None:
            raise MmscaleError(f"annotator {name!r} was excluded from the study; no new link is issued")
        ann.token_hash = hash_token(token)
    return token


def exclude(db: Database, annotator_id: int) -> None:
    """Exclude an annotator for good: no more access, their ratings stop counting, their slots reopen."""
    if not valid_id(annotator_id):
        raise NotFound(f"no annotator {annotator_id}")
    with db.write() as session:
        ann = session.get(Annotator, annotator_id)
        if ann is None:
            raise NotFound(f"no annotator {annotator_id}")
        if ann.excluded_at is None:
            ann.excluded_at = utcnow()
            release_annotator(session, ann.id)


def record_consent(db: Database, annotator_id: int) -> None:
    with db.write() as session:
        ann = session.get(Annotator, annotator_id)
        if ann.consented_at is None:
            ann.consented_at = utcnow()


# --------------------------------------------------------------------------- reading a task

def owned_task(session: Session, annotator_id: int, task_id: int, lock: bool = False) -> Task:
    if not valid_id(task_id):
        raise NotFound("no such task for you")
    task = session.get(Task, task_id, with_for_update=lock or None)
    if task is None or task.annotator_id != annotator_id:
        raise NotFound("no such task for you")
    return task


def task_items(session: Session, task: Task) -> list[Item]:
    """The task's scenarios and canary in display order, with any answers given so far.

    Form keys are the display positions (``i1``, ``i2``, ...): a canary's fields are named like
    every other item's and carry no row id, so the page does not tell it apart.
    """
    rows = session.execute(
        select(Assignment, Scenario, Rating)
        .join(Scenario, Scenario.scenario_id == Assignment.scenario_id)
        .outerjoin(Rating, Rating.assignment_id == Assignment.id)
        .where(Assignment.task_id == task.id)).all()
    items = [Item(key="", text=s.text, position=a.position, assignment_id=a.id,
                  rating=r.rating if r else None, modality=r.modality if r else None,
                  model_score=s.model_score,
                  extra={"rating": r, "scenario_id": s.scenario_id}) for a, s, r in rows]
    canary = session.scalar(select(CanaryCheck).where(CanaryCheck.task_id == task.id))
    if canary is not None:
        items.append(Item(key="", text=canary_text(canary.expected_rating, canary.expected_modality),
                          position=canary.position, is_canary=True, canary_id=canary.id,
                          rating=canary.answered_rating, modality=canary.answered_modality,
                          extra={"canary": canary}))
    items.sort(key=lambda it: (it.position, it.is_canary, it.assignment_id or 0))
    for number, item in enumerate(items, start=1):
        item.key = f"i{number}"
    return items


def task_setting(session: Session, task: Task) -> str:
    return session.scalar(select(Scenario.setting).where(Scenario.image_id == task.image_id)
                          .order_by(Scenario.position).limit(1)) or ""


# --------------------------------------------------------------------------- validation

def parse_rating(value: str | None, label: str) -> int:
    if value is None or not str(value).strip():
        raise ValueError(f"{label}: choose a rating from 1 (very unacceptable) to 5 (very acceptable)")
    text = str(value).strip()
    if not re.fullmatch(r"[1-5]", text):
        raise ValueError(f"{label}: rating {text[:20]!r} is not an integer from 1 to 5")
    return int(text)


def parse_modality(value: str | None, label: str) -> str:
    if value is None or not str(value).strip():
        raise ValueError(f"{label}: choose the modality that informed your rating (text, image or both)")
    text = str(value).strip()
    if text not in MODALITIES:
        raise ValueError(f"{label}: modality {text[:20]!r} is not one of text, image, both")
    return text


def parse_answers(items: list[Item], form: Mapping[str, str]) -> dict[str, tuple[int, str]]:
    """(rating, modality) per item key; every problem collected into one :class:`FormError`."""
    answers, errors = {}, {}
    for number, item in enumerate(items, start=1):
        label = f"Scenario {number}"
        try:
            rating = parse_rating(form.get(f"rating_{item.key}"), label)
        except ValueError as err:
            errors[f"rating_{item.key}"] = str(err)
        try:
            modality = parse_modality(form.get(f"modality_{item.key}"), label)
        except ValueError as err:
            errors[f"modality_{item.key}"] = str(err)
        if f"rating_{item.key}" not in errors and f"modality_{item.key}" not in errors:
            answers[item.key] = (rating, modality)
    if errors:
        raise FormError(errors)
    return answers


def check_client_token(token: str | None) -> str:
    if not token or not CLIENT_TOKEN.match(token):
        raise FormError({"client_token": "the form lacks a valid client_token; reload the page and submit again"})
    return token


# --------------------------------------------------------------------------- submissions

@dataclass
class Outcome:
    task_id: int
    stage: str
    replay: bool = False


def _prior(session: Session, annotator_id: int, client_token: str, task_id: int, kind: str) -> Outcome | None:
    prior = session.scalar(select(Submission).where(Submission.annotator_id == annotator_id,
                                                    Submission.client_token == client_token))
    if prior is None:
        return None
    if prior.task_id != task_id or prior.kind != kind:
        raise Conflict("this form's client token was already used for another submission; reload the page")
    return Outcome(task_id, session.get(Task, task_id).stage, replay=True)


def _expect_stage(task: Task, stage: str) -> None:
    if task.stage == "expired":
        raise Conflict("this image was handed to someone else after its lease ran out; go to your next task")
    if task.stage == stage:
        return
    now = STEP_NAMES[task.stage]
    if STEP_ORDER.index(task.stage) < STEP_ORDER.index(stage):
        raise Conflict(f"this step is not open yet: the image is still at {now}. Nothing was recorded; "
                       "go back to your task and finish that step first")
    raise Conflict(f"this step was already submitted (the image is now at {now}); nothing more was "
                   "recorded. Go back to your task to continue")


def _submit(db: Database, annotator_id: int, task_id: int, client_token: str, kind: str, stage: str,
            apply) -> Outcome:
    """Shared frame of every submission: ownership, replay, stage check, then ``apply`` in one transaction."""
    client_token = check_client_token(client_token)
    try:
        with db.write() as session:
            # FOR UPDATE: on PostgreSQL concurrent posts for one task queue here and each sees the
            # stage (and submission) the previous one committed, as under SQLite's single writer
            task = owned_task(session, annotator_id, task_id, lock=True)
            replay = _prior(session, annotator_id, client_token, task_id, kind)
            if replay is not None:
                return replay
            _expect_stage(task, stage)
            apply(session, task)
            session.add(Submission(annotator_id=annotator_id, client_token=client_token, task_id=task_id, kind=kind))
            task.updated_at = utcnow()
            session.flush()
            return Outcome(task_id, task.stage)
    except IntegrityError:
        # A concurrent duplicate of this very post won the race: report its outcome.
        with db.read() as session:
            replay = _prior(session, annotator_id, client_token, task_id, kind)
        if replay is None:
            raise Conflict("this step was submitted concurrently from another page; reload it") from None
        return replay


def submit_ratings(db: Database, annotator_id: int, task_id: int, form: Mapping[str, str],
                   delta: float = DEFAULT_DELTA) -> Outcome:
    """Store a rating and modality for every item of the task (all or nothing)."""

    def apply(session: Session, task: Task) -> None:
        items = task_items(session, task)
        answers = parse_answers(items, form)
        flags = []
        for item in items:
            rating, modality = answers[item.key]
            if item.is_canary:
                canary = item.extra["canary"]
                canary.answered_rating, canary.answered_modality = rating, modality
                canary.passed = rating == canary.expected_rating and modality == canary.expected_modality
                continue
            flag = is_flagged(rating, item.model_score, delta)
            flags.append(flag)
            session.add(Rating(assignment_id=item.assignment_id, task_id=task.id, annotator_id=annotator_id,
                               scenario_id=item.extra["scenario_id"], initial_rating=rating,
                               initial_modality=modality, rating=rating, modality=modality,
                               model_score=item.model_score, flagged=flag))
        task.stage = next_stage(flags, "rate")

    return _submit(db, annotator_id, task_id, form.get("client_token"), "ratings", "rate", apply)


def flagged_items(items: list[Item]) -> list[Item]:
    return [it for it in items if not it.is_canary and it.extra["rating"] is not None
            and it.extra["rating"].flagged]


def submit_reconfirm(db: Database, annotator_id: int, task_id: int, form: Mapping[str, str]) -> Outcome:
    """Keep or revise each flagged rating (the modality-grounding check)."""

    def apply(session: Session, task: Task) -> None:
        items = task_items(session, task)
        flagged = flagged_items(items)
        answers = parse_answers(flagged, form)
        for item in flagged:
            rating_row: Rating = item.extra["rating"]
            new_rating, new_modality = answers[item.key]
            changed = (new_rating, new_modality) != (rating_row.initial_rating, rating_row.initial_modality)
            rating_row.rating, rating_row.modality = new_rating, new_modality
            rating_row.reconfirm = "revised" if changed else "kept"
            rating_row.updated_at = utcnow()
        flags = [it.extra["rating"].flagged for it in items if not it.is_canary]
        task.stage = next_stage(flags, "reconfirm")

    return _submit(db, annotator_id, task_id, form.get("client_token"), "reconfirm", "reconfirm", apply)


def validate_scenario_text(session: Session, image_id: str, text: str | None) -> str:
    """The cleaned text of a proposed scenario; FormError when too short/long, unprintable or a duplicate.

    The duplicate check compares :func:`text_key` (NFKC + casefold in Python, not SQL ``lower``,
    which is ASCII-only on SQLite); the unique index on (image_id, text_key) backs it under races.
    """
    bad = describe_forbidden_characters(text or "")
    if bad:
        raise FormError({"scenario": f"the scenario {bad}"})
    text = " ".join((text or "").split())
    if len(text) < MIN_SCENARIO_CHARS:
        raise FormError({"scenario": f"describe the action in at least {MIN_SCENARIO_CHARS} characters"})
    if len(text) > MAX_SCENARIO_CHARS:
        raise FormError({"scenario": f"keep the scenario under {MAX_SCENARIO_CHARS} characters "
                                     f"(it has {len(text)})"})
    same = session.scalar(select(func.count()).select_from(ScenarioKey).where(
        ScenarioKey.image_id == image_id, ScenarioKey.text_key == text_key(text)))
    if same:
        raise FormError({"scenario": DUPLICATE_SCENARIO})
    return text


def submit_scenario(db: Database, annotator_id: int, task_id: int, form: Mapping[str, str]) -> Outcome:
    """Add a new scenario grounded in the task's image (or skip); it joins the pool for others."""
    skip = form.get("skip") is not None

    def apply(session: Session, task: Task) -> None:
        if not skip:
            text = validate_scenario_text(session, task.image_id, form.get("scenario"))
            scenario_id = f"morale-{task.id}"
            while session.get(Scenario, scenario_id) is not None:
                scenario_id += "x"
            sibling = session.scalar(select(Scenario).where(Scenario.image_id == task.image_id)
                                     .order_by(Scenario.position).limit(1))
            last = session.scalar(select(func.max(Scenario.position))) or 0
            session.add(Scenario(
                scenario_id=scenario_id, image_id=task.image_id, setting=sibling.setting, text=text,
                normbank_label=None, split=sibling.split, image_source=sibling.image_source, qc=sibling.qc,
                source_ratings=None, model_score=None, created_by=annotator_id, source_task_id=task.id,
                position=last + 1))
            session.flush()
            try:  # a concurrent post of the same text (PostgreSQL) loses on the unique index
                with session.begin_nested():
                    session.add(ScenarioKey(scenario_id=scenario_id, image_id=task.image_id,
                                            text_key=text_key(text)))
            except IntegrityError:
                raise FormError({"scenario": DUPLICATE_SCENARIO}) from None
        task.stage = "done"

    return _submit(db, annotator_id, task_id, form.get("client_token"), "scenario", "add", apply)


def likert_choices() -> list[tuple[int, str]]:
    return list(LIKERT_LABELS.items())
