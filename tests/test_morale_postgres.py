"""MORALE on PostgreSQL (``--db postgresql+psycopg://...``), against a real server on loopback.

The server is a throwaway cluster started once per session (``tests/postgres.py``);
every test gets a new, empty database. The same rules the SQLite tests check must
hold here, where transactions really run concurrently (READ COMMITTED, no
process-wide write lock): several tests of the SQLite suite are run verbatim on
PostgreSQL, and the tests below add a full round with an export that
``mmscale validate`` accepts, idempotent retries, concurrent annotators, a restart
and a SIGKILL of a real ``mmscale morale serve``, and the CLI's messages for a
database it cannot use.
"""

from __future__ import annotations

import argparse
import importlib.util
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from sqlalchemy import select

import test_morale_api as api
import test_morale_hostile as hostile
import test_morale_security as security
import test_morale_support as support
from mmscale_core import data as data_module
from mmscale_core.data import load_dataset
from mmscale_core.morale import cli as morale_cli
from mmscale_core.morale.db import Assignment, CanaryCheck, Database, Rating, Scenario, Submission, Task
from mmscale_core.morale.export import export_dataset
from mmscale_core.morale.server import ServerProcess

from postgres import free_port, postgres_cluster, postgres_url  # noqa: F401  (fixtures)
from test_morale_support import ADMIN, ADMIN_TOKEN, Annotator, make_dataset, uniform_scores, write_predictions

pytestmark = pytest.mark.timeout(180)

count, rows = security.count, api.rows


@pytest.fixture
def pg(postgres_url, monkeypatch):
    """Point the shared ``make_app`` helper at this test's PostgreSQL database instead of a SQLite file.

    Every app built during the test is disposed of at teardown (before its database is dropped).
    """
    real_create_app = support.create_app
    apps = []

    def create_app_on_postgres(data, predictions, _sqlite_url, admin_token, **kw):
        app = real_create_app(data, predictions, postgres_url, admin_token, **kw)
        apps.append(app)
        return app

    monkeypatch.setattr(support, "create_app", create_app_on_postgres)
    yield postgres_url
    for app in apps:
        app.state.db.dispose()


def make_app(tmp_path, **kw):
    app, data, _ = support.make_app(tmp_path, **kw)
    assert app.state.db.engine.dialect.name == "postgresql"
    return app, data


# --------------------------------------------------------------------------- the SQLite suite, verbatim

REUSED = [
    api.test_flow_disagreement_reconfirm_then_add,  # consent, rate, reconfirm (revised), add
    api.test_each_scenario_gets_three_distinct_annotators,  # 3 distinct raters; the DB refuses a 2nd / 4th
    api.test_added_scenario_goes_to_others_not_the_author,
    api.test_stale_tasks_are_released_and_late_posts_refused,
    api.test_restart_keeps_pool_and_form_tokens,  # a new engine and app on the same URL
    api.test_admin_dashboard_stats_and_zip,
    api.test_admin_login_invite_and_exclude,
    security.test_text_is_escaped_everywhere,
    hostile.test_duplicate_check_folds_unicode_case_and_spacing,  # item 3: the unique key on PostgreSQL
    hostile.test_control_characters_are_refused_in_added_text,  # item 4: NUL was a 500 here
    hostile.test_huge_path_ids_are_404,  # item 9: /task/3000000000 overflowed INTEGER
    hostile.test_restart_with_another_dataset_is_refused_with_what_differs,  # item 1
]


@pytest.mark.parametrize("sqlite_test", REUSED, ids=lambda f: f.__name__.removeprefix("test_"))
def test_sqlite_suite_on_postgres(sqlite_test, pg, tmp_path):
    sqlite_test(tmp_path)


def test_a_live_export_is_one_snapshot_on_postgres(pg, tmp_path, monkeypatch):
    # item 8: READ COMMITTED would see the rating that lands mid-export; REPEATABLE READ does not
    hostile.test_a_live_export_is_one_snapshot(tmp_path, monkeypatch)


def security_round(tmp_path):
    """What test_morale_security's ``round_`` fixture builds, here on PostgreSQL."""
    app, _ = make_app(tmp_path, n_images=4, per_image=3, ratings_per_item=1)
    a, b = Annotator(app, "alice").login_and_consent(), Annotator(app, "bob").login_and_consent()
    return app, a, b, a.open_task(), b.open_task()


def test_retried_submissions_are_stored_once(pg, tmp_path):
    # sequential retry, then the same post racing itself from 8 threads: one submission each time
    security.test_a_retried_submission_is_stored_once(security_round(tmp_path))


def test_a_failed_submission_leaves_nothing(pg, tmp_path, monkeypatch):
    security.test_a_submission_is_one_transaction(security_round(tmp_path), monkeypatch)


# --------------------------------------------------------------------------- a full round and its export

def test_full_round_exports_a_dataset_that_validates(pg, tmp_path, capsys):
    app, data = make_app(tmp_path, canary_rate=0.3)  # model scores 3.0: ratings 1 and 5 get flagged
    writer = Annotator(app, "writer").login_and_consent()
    task_id, page = writer.open_task()
    writer.finish_task(task_id, page, add="cooking dinner for a sick neighbour")
    rng = np.random.default_rng(1)
    for person in [Annotator(app, f"ann{i}").login_and_consent() for i in range(3)]:
        person.work_until_finished(answers=lambda key: (int(rng.integers(1, 6)),
                                                        str(rng.choice(["text", "image", "both"]))))
    db = app.state.db
    ratings = rows(db, Rating)
    assert len(ratings) == 30 and any(r.flagged for r in ratings)
    assert any(r.reconfirm in ("kept", "revised") for r in ratings)  # the discrepancy step ran
    assert count(db, Scenario, Scenario.created_by.is_not(None)) == 1 and count(db, CanaryCheck) > 0
    summary = export_dataset(db, data, tmp_path / "export")
    assert (summary.scenarios, summary.ratings, summary.scenarios_added) == (10, 30, 1)
    added = load_dataset(tmp_path / "export").scenarios.query("scenario == 'cooking dinner for a sick neighbour'")
    assert len(added) == 1 and "writer" not in list(added.iloc[0]["annotators"])
    # the CLI on the same URL: stats, then an export that `mmscale validate` accepts
    assert morale_cli.main(["stats", "--db", pg]) == 0 and '"items_complete": 10' in capsys.readouterr().out
    out = tmp_path / "cli-export"
    assert morale_cli.main(["export", "--db", pg, "--out", str(out), "--format", "jsonl"]) == 0
    validate = argparse.ArgumentParser()  # `mmscale validate`, without importing every other command
    data_module.register(validate.add_subparsers())
    args = validate.parse_args(["validate", str(out)])
    assert args.func(args) == 0


# --------------------------------------------------------------------------- concurrency

def _annotate(person: Annotator, start: threading.Barrier, acked: list, codes: list) -> None:
    """Work until nothing is left; record (annotator, (task id, key), rating) once the server answered 303."""
    start.wait(30)
    for n in range(20):
        task_id, page = person.open_task()
        if task_id is None:
            return
        form = Annotator.fill(page, lambda key: (1 + (n + int(key[1:])) % 5, "image"))
        r = person.post(task_id, "ratings", form)
        codes.append(r.status_code)
        if r.status_code != 303:
            return
        canaries = support.canary_answers(page)
        acked.extend((person.name, (task_id, k[len("rating_"):]), int(v)) for k, v in form.items()
                     if k.startswith("rating_") and k[len("rating_"):] not in canaries)
        page = person.page(task_id)
        while 'id="reconfirm-form"' in page or 'id="add-form"' in page:
            step = "reconfirm" if 'id="reconfirm-form"' in page else "scenario"
            r = person.post(task_id, step, Annotator.fill(page) | {"skip": "1"})
            codes.append(r.status_code)
            if r.status_code != 303:
                return
            page = person.page(task_id)


def test_concurrent_annotators_lose_and_duplicate_nothing(pg, tmp_path):
    """10 annotators at once on 10 images x 5 scenarios (3 ratings each): every rating exactly once."""
    scores = {sid: (1.0 if sid.endswith("s0") else 3.0) for sid in uniform_scores(10, 5)}  # some reconfirms
    app, _ = make_app(tmp_path, n_images=10, per_image=5, scores=scores, max_items=5, canary_rate=0.3)
    people = [Annotator(app, f"ann{i}").login_and_consent() for i in range(10)]
    start = threading.Barrier(len(people))
    acked: list[tuple[str, int, int]] = []
    codes: list[int] = []
    with ThreadPoolExecutor(len(people)) as pool:
        for f in [pool.submit(_annotate, p, start, acked, codes) for p in people]:
            f.result(timeout=120)
    assert set(codes) == {303}, codes  # no 409/500 from lost races, deadlocks or serialization failures
    db = app.state.db
    stored = rows(db, Rating)
    assert len(stored) == len(acked) == len(set(acked)) == 150  # none lost, none duplicated, pool complete
    with db.read() as s:
        ids = dict(s.execute(select(Assignment.id, Assignment.annotator_id)).all())
    by_assignment = {r.assignment_id: r for r in stored}
    assignment_of = security.assignments_by_item_key(db)
    assert {(assignment_of[a], r) for _, a, r in acked} == {(k, v.initial_rating) for k, v in by_assignment.items()}
    raters: dict[str, list[int]] = {}
    for r in stored:
        assert ids[r.assignment_id] == r.annotator_id
        raters.setdefault(r.scenario_id, []).append(r.annotator_id)
    assert len(raters) == 50 and all(len(v) == 3 == len(set(v)) for v in raters.values())
    assert count(db, Assignment, Assignment.slot.is_not(None)) == 150
    assert count(db, Task, Task.stage != "done") == 0
    assert count(db, Submission, Submission.kind == "ratings") == count(db, Task)


def test_concurrent_posts_of_one_step_with_different_tokens_apply_once(pg, tmp_path):
    """Two pages of the same step (different client tokens) posted at once: one wins, the others get 409."""
    app, _ = make_app(tmp_path, n_images=1, per_image=3, scores={f"img0-s{j}": 1.0 for j in range(3)})
    person = Annotator(app, "ann").login_and_consent()
    task_id, page = person.open_task()

    def race(step, answers):
        page = person.page(task_id)
        forms = [Annotator.fill(page, answers) | {"client_token": f"token-{step}-{i:02d}-abcdefgh"} for i in range(8)]
        with ThreadPoolExecutor(8) as pool:
            return sorted(pool.map(lambda f: person.post(task_id, step, f).status_code, forms))

    assert race("ratings", lambda k: (5, "image")) == [303] + [409] * 7  # |5 - 1| > 1: all flagged
    assert race("reconfirm", lambda k: (2, "both")) == [303] + [409] * 7
    db = app.state.db
    assert count(db, Rating) == 3 and count(db, Rating, Rating.reconfirm == "revised") == 3
    assert [count(db, Submission, Submission.kind == k) for k in ("ratings", "reconfirm")] == [1, 1]
    assert 'id="done"' in person.page(task_id) or 'id="add-form"' in person.page(task_id)


# --------------------------------------------------------------------------- the real server

def test_served_round_survives_a_killed_server(postgres_url, tmp_path):
    """`mmscale morale serve --db postgresql+psycopg://...`: SIGKILL, restart, nothing acknowledged lost."""
    data = make_dataset(tmp_path / "data", n_images=6, per_image=3)
    pred = write_predictions(tmp_path / "pred.parquet", uniform_scores(6, 3))
    server = ServerProcess(data, pred, postgres_url, ADMIN_TOKEN, log=tmp_path / "server.log").start()
    db = None
    try:
        with httpx.Client(base_url=server.base_url, trust_env=False, timeout=10) as admin:
            r = admin.post("/admin/invite", data={"names": "ann0\nann1"},
                           headers=ADMIN | {"accept": "application/json"})
        tokens = [row["token"] for row in r.json()["invited"]]
        acked: list[tuple[int, int]] = []
        security._annotate_until_stopped(server.base_url, tokens[0], acked, threading.Event(), max_images=3)
        assert len(acked) == 9
        server.kill()
        server.start()  # same port, same database
        more: list[tuple[int, int]] = []
        security._annotate_until_stopped(server.base_url, tokens[1], more, threading.Event(), max_images=2)
        with httpx.Client(base_url=server.base_url, trust_env=False, timeout=10) as admin:
            stats = admin.get("/admin/stats.json", headers=ADMIN).json()
        assert len(more) == 6 and stats["progress"]["ratings"] == 15 and stats["progress"]["scenarios"] == 18
        db = Database(postgres_url)
        with db.read() as s:
            stored = dict(s.execute(select(Rating.assignment_id, Rating.initial_rating)).all())
        assignment_of = security.assignments_by_item_key(db)
        assert stored == {assignment_of[key]: rating for key, rating in acked + more}
    finally:
        server.stop()
        if db is not None:
            db.dispose()


# --------------------------------------------------------------------------- a database MORALE cannot use

def _serve_error(tmp_path, capsys, url: str) -> str:
    data = make_dataset(tmp_path / "data", n_images=1)
    pred = write_predictions(tmp_path / "pred.parquet", uniform_scores(1))
    (tmp_path / "admin-token").write_text(ADMIN_TOKEN)
    code = morale_cli.main(["serve", "--data", str(data), "--predictions", str(pred), "--db", url,
                            "--admin-token-file", str(tmp_path / "admin-token"), "--port", "9"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


def test_unreachable_server_is_one_clear_message(tmp_path, capsys):
    pytest.importorskip("psycopg")
    url = f"postgresql+psycopg://morale:s3cret@127.0.0.1:{free_port()}/morale"  # nothing listens there
    started = time.monotonic()
    err = _serve_error(tmp_path, capsys, url)
    assert err.startswith("mmscale morale: error: --db postgresql+psycopg://morale:***@127.0.0.1:")
    assert "cannot use the database" in err and "refused" in err and "s3cret" not in err
    assert time.monotonic() - started < 30


def test_missing_database_and_driver_are_one_clear_message(postgres_cluster, tmp_path, capsys):
    pytest.importorskip("psycopg")
    err = _serve_error(tmp_path, capsys, postgres_cluster.url("no_such_database"))
    assert "cannot use the database" in err and 'database "no_such_database" does not exist' in err
    if importlib.util.find_spec("pg8000") is not None:
        return
    err = _serve_error(tmp_path, capsys, f"postgresql+pg8000://postgres@127.0.0.1:{postgres_cluster.port}/x")
    assert "driver" in err and "pg8000" in err and "psycopg" in err
