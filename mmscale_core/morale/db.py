"""MORALE's storage: SQLAlchemy 2 models, engine and transactions.

Why the schema looks like this: every rule the issue asks for is enforced by the
database itself, so it holds under concurrency and across restarts:

* ``assignments`` unique (annotator_id, scenario_id): nobody is ever given the
  same scenario twice; unique (scenario_id, slot) with slot in 0..k-1: at most
  k (= 3) live assignments per scenario, even with concurrent assigners;
* ``ratings`` unique assignment_id and (annotator_id, scenario_id): one rating
  per assignment, whatever a client retries;
* ``submissions`` unique (annotator_id, client_token): a retried form post
  finds its first submission instead of writing again;
* CHECK constraints on rating (1..5) and modality (text/image/both);
* ``scenario_keys`` unique (image_id, text_key): no two scenarios of an image
  that differ only in case, Unicode form or spacing (the key is computed in
  Python, :func:`text_key`, the same on SQLite and PostgreSQL);
* ``meta`` records the dataset the round was created from (its fingerprint and
  image digests, see :mod:`mmscale_core.morale.pool`); ``retired_scenarios``
  lists scenarios removed from it by an accepted dataset change;
* ``admin_sessions``: server-side admin logins (hashed token, expiry).

SQLite (the default) runs in WAL mode with ``synchronous=FULL`` (a commit is on
disk before the response is sent) and write transactions start with
``BEGIN IMMEDIATE``, so concurrent writers queue instead of failing with
"database is locked" on a lock upgrade (inside one server process they queue
on a lock, across processes on SQLite's busy timeout). Any other SQLAlchemy URL
(e.g. PostgreSQL) uses that database's own transactions (READ COMMITTED): the
writers that touch the same rows lock them in one order (a submission locks its
task row first, assigners take slots in scenario_id order), so they queue
instead of deadlocking. A bare ``postgresql://`` URL uses psycopg (3), the
driver ``mmscale[app]`` installs.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import unicodedata
from datetime import datetime, timezone
from typing import Any, Iterator

from sqlalchemy import (
    JSON, CheckConstraint, DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint,
    create_engine, event, select,
)
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import DBAPIError, NoSuchModuleError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from mmscale_core.errors import MmscaleError

MODALITY_CHECK = "modality IN ('text', 'image', 'both')"
MAX_ID = 2**31 - 1  # integer primary keys fit a 32-bit INTEGER on PostgreSQL; larger path ids are a 404
STAGES = ("rate", "reconfirm", "add", "done", "expired")
SQLITE_BUSY_TIMEOUT_S = 60


def utcnow() -> datetime:
    """Naive UTC (SQLite stores naive datetimes; keep one convention everywhere)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, datetime: DateTime}


class Meta(Base):
    """Key/value settings that must survive restarts (the signing secret, the data directory)."""

    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Annotator(Base):
    __tablename__ = "annotators"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    consented_at: Mapped[datetime | None]
    excluded_at: Mapped[datetime | None]


class Image(Base):
    __tablename__ = "images"
    image_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, default=0)


class Scenario(Base):
    """A scenario of the pool: from the dataset (created_by NULL) or added by an annotator."""

    __tablename__ = "scenarios"
    scenario_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    image_id: Mapped[str] = mapped_column(ForeignKey("images.image_id"), index=True)
    setting: Mapped[str] = mapped_column(Text, default="")
    text: Mapped[str] = mapped_column(Text)
    normbank_label: Mapped[int | None]
    split: Mapped[str | None] = mapped_column(String(16))
    image_source: Mapped[str | None] = mapped_column(String(16))
    qc: Mapped[str | None] = mapped_column(String(16))
    source_ratings: Mapped[dict[str, Any] | None]  # ratings/modalities/annotators already in the dataset
    model_score: Mapped[float | None] = mapped_column(Float)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("annotators.id"), index=True)
    source_task_id: Mapped[int | None] = mapped_column(ForeignKey("tasks.id"))
    position: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


def text_key(text: str) -> str:
    """The duplicate-check key of a scenario: NFKC, casefolded (full Unicode, unlike SQL ``lower``),
    whitespace collapsed; "Über den Zaun" and "ÜBER  DEN ZAUN" share one key."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


class ScenarioKey(Base):
    """The normalised text of a scenario (NFKC, casefolded, whitespace collapsed), unique per image.

    A table of its own (not a column of ``scenarios``) so that databases of earlier rounds get it
    from ``create_all``; NULL ``text_key`` marks a dataset scenario that repeats an earlier one.
    """

    __tablename__ = "scenario_keys"
    __table_args__ = (UniqueConstraint("image_id", "text_key", name="uq_scenario_text_per_image"),)
    scenario_id: Mapped[str] = mapped_column(ForeignKey("scenarios.scenario_id"), primary_key=True)
    image_id: Mapped[str] = mapped_column(ForeignKey("images.image_id"))
    text_key: Mapped[str | None] = mapped_column(Text)


class RetiredScenario(Base):
    """A dataset scenario removed from the served dataset (``--accept-dataset-change``): no longer
    assigned or exported; its collected ratings stay in the database and the ratings log."""

    __tablename__ = "retired_scenarios"
    scenario_id: Mapped[str] = mapped_column(ForeignKey("scenarios.scenario_id"), primary_key=True)
    retired_at: Mapped[datetime] = mapped_column(default=utcnow)


class AdminSession(Base):
    """A server-side admin login: the cookie holds a random token, the DB its SHA-256 and expiry."""

    __tablename__ = "admin_sessions"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]


class Task(Base):
    """One image shown to one annotator: rate -> (reconfirm) -> (add) -> done."""

    __tablename__ = "tasks"
    __table_args__ = (CheckConstraint("stage IN ('rate', 'reconfirm', 'add', 'done', 'expired')"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    annotator_id: Mapped[int] = mapped_column(ForeignKey("annotators.id"), index=True)
    image_id: Mapped[str] = mapped_column(ForeignKey("images.image_id"))
    stage: Mapped[str] = mapped_column(String(16), default="rate")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Assignment(Base):
    """A scenario given to an annotator inside a task; ``slot`` is NULL once released."""

    __tablename__ = "assignments"
    __table_args__ = (
        UniqueConstraint("annotator_id", "scenario_id", name="uq_assignment_once_per_annotator"),
        UniqueConstraint("scenario_id", "slot", name="uq_assignment_slot"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id"), index=True)
    annotator_id: Mapped[int] = mapped_column(ForeignKey("annotators.id"))
    scenario_id: Mapped[str] = mapped_column(ForeignKey("scenarios.scenario_id"))
    position: Mapped[int] = mapped_column(Integer)
    slot: Mapped[int | None]


class Rating(Base):
    """The rating of one assignment; ``initial_*`` keep the answer before reconfirmation."""

    __tablename__ = "ratings"
    __table_args__ = (
        UniqueConstraint("annotator_id", "scenario_id", name="uq_rating_once_per_annotator"),
        CheckConstraint("rating BETWEEN 1 AND 5", name="ck_rating_range"),
        CheckConstraint("initial_rating BETWEEN 1 AND 5", name="ck_initial_rating_range"),
        CheckConstraint(MODALITY_CHECK, name="ck_modality"),
        CheckConstraint(MODALITY_CHECK.replace("modality", "initial_modality"), name="ck_initial_modality"),
        CheckConstraint("reconfirm IS NULL OR reconfirm IN ('kept', 'revised')", name="ck_reconfirm"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignments.id"), unique=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id"), index=True)
    annotator_id: Mapped[int] = mapped_column(ForeignKey("annotators.id"), index=True)
    scenario_id: Mapped[str] = mapped_column(ForeignKey("scenarios.scenario_id"), index=True)
    initial_rating: Mapped[int]
    initial_modality: Mapped[str] = mapped_column(String(8))
    rating: Mapped[int]
    modality: Mapped[str] = mapped_column(String(8))
    model_score: Mapped[float | None] = mapped_column(Float)
    flagged: Mapped[bool | None]  # None: no model prediction for this scenario
    reconfirm: Mapped[str | None] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class CanaryCheck(Base):
    """An attention-check item mixed into a task; never part of the pool or the export."""

    __tablename__ = "canary_checks"
    __table_args__ = (CheckConstraint("expected_rating BETWEEN 1 AND 5"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id"), unique=True)
    annotator_id: Mapped[int] = mapped_column(ForeignKey("annotators.id"), index=True)
    position: Mapped[int]
    expected_rating: Mapped[int]
    expected_modality: Mapped[str] = mapped_column(String(8))
    answered_rating: Mapped[int | None]
    answered_modality: Mapped[str | None] = mapped_column(String(8))
    passed: Mapped[bool | None]


class Submission(Base):
    """One accepted form post; the unique client token makes retries idempotent."""

    __tablename__ = "submissions"
    __table_args__ = (UniqueConstraint("annotator_id", "client_token", name="uq_submission_token"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    annotator_id: Mapped[int] = mapped_column(ForeignKey("annotators.id"))
    client_token: Mapped[str] = mapped_column(String(64))
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id"))
    kind: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# --------------------------------------------------------------------------- engine

def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # Autocommit at the driver level; SQLAlchemy's "begin" event below issues BEGIN itself.
    dbapi_connection.isolation_level = None
    cur = dbapi_connection.cursor()
    for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON",
                   f"busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}"):
        cur.execute(f"PRAGMA {pragma}")
    cur.close()


def make_engine(url: str, *, immediate: bool = True) -> Engine:
    """An engine for ``url``; SQLite gets WAL, FULL sync, foreign keys and (``immediate``) BEGIN IMMEDIATE."""
    try:
        parsed = make_url(url)
    except Exception as err:  # sqlalchemy raises ArgumentError for malformed URLs
        raise MmscaleError(f"--db {url!r}: not a SQLAlchemy database URL ({err})") from None
    if parsed.get_backend_name() != "sqlite":
        if parsed.drivername == "postgresql":  # SQLAlchemy's default would be psycopg2
            parsed = parsed.set(drivername="postgresql+psycopg")
        try:
            return create_engine(parsed, pool_pre_ping=True)
        except (ImportError, NoSuchModuleError) as err:
            raise MmscaleError(f"--db {_shown(parsed)}: no database driver for {parsed.drivername!r} ({err}); "
                               "for PostgreSQL use postgresql+psycopg://USER@HOST/DB with psycopg installed "
                               "(pip install 'psycopg[binary]', part of mmscale[app])") from None
    if parsed.database in (None, "", ":memory:"):
        raise MmscaleError(f"--db {url!r}: MORALE needs a database file (e.g. sqlite:///morale.sqlite), "
                           "an in-memory database would lose every annotation on exit")
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S},
                           pool_size=8, max_overflow=24, pool_timeout=SQLITE_BUSY_TIMEOUT_S)
    event.listen(engine, "connect", _sqlite_pragmas)
    begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"
    event.listen(engine, "begin", lambda conn: conn.exec_driver_sql(begin))
    return engine


def _shown(url: URL) -> str:
    return url.render_as_string(hide_password=True)


def _reason(err: DBAPIError) -> str:
    """The driver's message on one line (without SQLAlchemy's statement and background link)."""
    return " ".join(str(err.orig if err.orig is not None else err).split())


class Database:
    """Engines and transactions: ``write()`` for anything that changes state, ``read()`` for views."""

    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url, immediate=True)
        self.read_engine = (make_engine(url, immediate=False)
                            if self.engine.dialect.name == "sqlite" else self.engine)
        # SQLite has one writer at a time; queueing this process's writers on a lock instead of
        # SQLite's sleep-and-retry busy handler keeps the latency tail short under load.
        self._write_lock = threading.Lock() if self.engine.dialect.name == "sqlite" else contextlib.nullcontext()
        self._write = sessionmaker(self.engine, expire_on_commit=False)
        self._read = sessionmaker(self.read_engine, expire_on_commit=False)
        try:
            Base.metadata.create_all(self.engine)
        except DBAPIError as err:  # unreachable server, no such database, wrong password, no CREATE right...
            self.dispose()
            raise MmscaleError(f"--db {_shown(self.engine.url)}: cannot use the database: {_reason(err)}") from None

    @contextlib.contextmanager
    def write(self) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back entirely on any exception."""
        with self._write_lock, self._write() as session, session.begin():
            yield session

    @contextlib.contextmanager
    def read(self) -> Iterator[Session]:
        with self._read() as session, session.begin():
            yield session

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[Session]:
        """One read transaction that sees a single state of the database for all its queries.

        SQLite in WAL mode gives each read transaction a snapshot; PostgreSQL needs REPEATABLE
        READ for it (READ COMMITTED takes a new snapshot per statement).
        """
        with self._read() as session:  # the transaction begins with the first query, ends at close
            if self.read_engine.dialect.name != "sqlite":
                session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            yield session

    def check_writable(self) -> None:
        """Commit a real write (the last-check time in ``meta``); MmscaleError when the database refuses.

        A read-only file or a full disk shows only on a write that commits, so a server must
        check this way before it accepts annotators, and ``/healthz`` checks the same.
        """
        try:
            self.set_meta("write_check", utcnow().isoformat())
        except DBAPIError as err:
            raise MmscaleError(f"--db {_shown(self.engine.url)}: the database cannot be written "
                               f"({_reason(err)}); nothing an annotator submits could be saved. "
                               "Check the file's permissions and the free disk space") from None

    def meta(self, key: str, default: str | None = None) -> str | None:
        with self.read() as session:
            row = session.get(Meta, key)
            return row.value if row else default

    def set_meta(self, key: str, value: str) -> None:
        with self.write() as session:
            session.merge(Meta(key=key, value=value))

    def secret(self) -> str:
        """The signing secret, created once and kept in the DB so forms stay valid across restarts."""
        with self.write() as session:
            row = session.get(Meta, "secret")
            if row is None:
                row = Meta(key="secret", value=secrets.token_hex(32))
                session.add(row)
            return row.value

    def dispose(self) -> None:
        self.engine.dispose()
        if self.read_engine is not self.engine:
            self.read_engine.dispose()


def annotator_by_token_hash(session: Session, token_hash: str) -> Annotator | None:
    return session.scalar(select(Annotator).where(Annotator.token_hash == token_hash))
