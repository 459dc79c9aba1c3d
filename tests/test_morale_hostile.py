"""MORALE under a hostile annotator and an unlucky operator (issue 18): one regression test per
defect found, plus the 3-5 scenarios per task, invitation URLs and re-issued links (issue 23).

Several tests take only ``tmp_path`` and build their app with ``make_app``: the PostgreSQL
suite runs them verbatim there (``tests/test_morale_postgres.py``)."""

from __future__ import annotations

import argparse
import json
import re
import sqlite3

import pandas as pd
import pytest
from sqlalchemy import event, select, update
from sqlalchemy.exc import IntegrityError
from starlette.testclient import TestClient

from mmscale_core.data import DatasetError
from mmscale_core.errors import MmscaleError
from mmscale_core.morale import cli as morale_cli
from mmscale_core.morale import export as export_module
from mmscale_core.morale import workflow
from mmscale_core.morale.app import FailureThrottle, check_admin_token, create_app
from mmscale_core.morale.assignment import AssignmentPolicy, task_size
from mmscale_core.morale.client import canary_answers, hidden_field, item_keys
from mmscale_core.morale.db import (
    AdminSession, Assignment, CanaryCheck, Rating, RetiredScenario, Scenario, ScenarioKey, Task,
)
from mmscale_core.morale.export import RATINGS_LOG, STATS_FILE, export_dataset
from mmscale_core.text_checks import describe_forbidden_characters, forbidden_characters

import test_morale_support as support  # its create_app: the PostgreSQL suite points it at PostgreSQL
from test_morale_support import ADMIN, ADMIN_TOKEN, Annotator, make_app, make_dataset, uniform_scores, \
    write_predictions


def rows(db, model, *where):
    with db.read() as s:
        return list(s.scalars(select(model).where(*where)))


def add_page(app, name="ann1"):
    """An annotator at the add step of their first image (uniform scores 3, answers 3: all agree)."""
    ann = Annotator(app, name).login_and_consent()
    task_id, page = ann.open_task()
    assert ann.post(task_id, "ratings", ann.fill(page)).status_code == 303
    page = ann.page(task_id)
    assert 'id="add-form"' in page
    return ann, task_id, page


# --------------------------------------------------------------------------- 1. another --data

def _drop_image(data, image_id):
    path = data / "scenarios.jsonl"
    kept = [line for line in path.read_text().splitlines() if json.loads(line)["image_id"] != image_id]
    path.write_text("\n".join(kept) + "\n")
    (data / "images" / f"{image_id}.png").unlink()


def test_restart_with_another_dataset_is_refused_with_what_differs(tmp_path):
    app, data, db_url = make_app(tmp_path)
    ann = Annotator(app, "ann1").login_and_consent()
    task_id, page = ann.open_task()
    assert ann.post(task_id, "ratings", ann.fill(page)).status_code == 303
    collected = len(rows(app.state.db, Rating))
    with app.state.db.write() as s:  # a scenario an annotator wrote for the image that will go away
        s.add(Scenario(scenario_id="morale-x", image_id="img2", text="an added action", position=50,
                       created_by=rows(app.state.db, Task)[0].annotator_id))
    app.state.db.dispose()
    pred = tmp_path / "pred.parquet"
    # another directory: one image more, one image fewer
    other = make_dataset(tmp_path / "other", n_images=4)
    _drop_image(other, "img2")
    with pytest.raises(MmscaleError, match="not the dataset this database was created from") as err:
        support.create_app(other, pred, db_url, ADMIN_TOKEN, settings=_lenient())
    message = str(err.value)
    assert "3 scenario(s) added (img3-s0" in message and "3 scenario(s) removed (img2-s0" in message
    assert "new --db" in message and "--accept-dataset-change" in message
    probe = support.create_app(data, pred, db_url, ADMIN_TOKEN)  # nothing was written by the refused start
    assert probe.state.db.meta("data_dir") == str(data.resolve()) and probe.state.sync["added"] == 0
    probe.state.db.dispose()
    # accepted: new scenarios join, removed ones retire, collected ratings stay
    app2 = support.create_app(other, pred, db_url, ADMIN_TOKEN, settings=_lenient(), accept_dataset_change=True)
    assert app2.state.sync["added"] == 3 and app2.state.sync["retired"] == 4
    db = app2.state.db
    assert {r.scenario_id for r in rows(db, RetiredScenario)} == {"img2-s0", "img2-s1", "img2-s2", "morale-x"}
    assert len(rows(db, Rating)) == collected
    Annotator(app2, "ann2").login_and_consent().work_until_finished()
    retired_live = rows(db, Assignment, Assignment.scenario_id.like("img2-%"), Assignment.task_id != task_id)
    assert retired_live == []  # retired scenarios are not handed out
    summary = export_dataset(db, other, tmp_path / "export", min_ratings=1)  # no image is missing
    assert summary.scenarios == 9 and "img2" not in set(pd.read_parquet(tmp_path / "export" / "scenarios.parquet")
                                                       ["image_id"])
    db.dispose()
    # an edited text (or image) cannot be accepted: ratings were given for the old one
    edited = make_dataset(tmp_path / "edited", n_images=4, texts={"img0-s1": "an edited action text"})
    _drop_image(edited, "img2")
    with pytest.raises(MmscaleError, match=r"1 scenario\(s\) with another text.*cannot be accepted"):
        support.create_app(edited, pred, db_url, ADMIN_TOKEN, settings=_lenient(), accept_dataset_change=True)


def _lenient():
    from mmscale_core.morale.app import MoraleSettings
    return MoraleSettings(min_prediction_coverage=0.0, seed=0)


# --------------------------------------------------------------------------- 2. predictions coverage

def test_predictions_must_cover_the_pool_and_be_on_the_1_to_5_scale(tmp_path):
    partial = {sid: 3.0 for sid in list(uniform_scores())[:4]}
    with pytest.raises(MmscaleError, match=r"cover 4 of the 9 scenarios .*min-prediction-coverage is 0.95"):
        make_app(tmp_path, scores=partial)
    with pytest.raises(MmscaleError, match=r"cover 0 of the 9"):
        make_app(tmp_path, scores={"other-dataset-s0": 3.0})
    for bad in (99.0, -40.0):
        with pytest.raises(MmscaleError, match=r"\[scenario_id=img0-s0\] field 'calibrated_score'.*from 1 to 5"):
            make_app(tmp_path, scores={**uniform_scores(), "img0-s0": bad})
    app, _, _ = make_app(tmp_path, scores=partial, min_prediction_coverage=0.4)
    assert app.state.sync["with_prediction"] == 4 and app.state.sync["scenarios"] == 9
    app.state.db.dispose()


def test_admin_view_says_that_added_scenarios_skip_the_discrepancy_step(tmp_path):
    app, _, _ = make_app(tmp_path)
    ann, task_id, page = add_page(app)
    assert ann.post(task_id, "scenario", ann.fill(page, scenario="a brand new action here")).status_code == 303
    page = TestClient(app).get("/admin", headers=ADMIN).text
    assert 'id="unscored-added"' in page and "skip the discrepancy step" in page
    assert TestClient(app).get("/admin/stats.json", headers=ADMIN).json()["progress"]["added_without_model_score"] == 1


# --------------------------------------------------------------------------- 3. Unicode duplicates

def test_duplicate_check_folds_unicode_case_and_spacing(tmp_path):
    texts = {f"img{i}-s0": f"Über den Zaun klettern {i}" for i in range(3)}
    app, _, _ = make_app(tmp_path, dataset_kwargs={"texts": texts})
    ann, task_id, page = add_page(app)
    existing = re.search(r"<li>(Über den Zaun klettern \d)</li>", page).group(1)
    for variant in (existing.upper(), existing.lower(), "  " + existing.replace(" ", "   "),
                    existing.replace("Ü", "U\u0308")):  # decomposed umlaut: equal after NFKC
        r = ann.post(task_id, "scenario", ann.fill(page, scenario=variant))
        assert r.status_code == 422 and "already has that scenario" in r.text, variant
    assert ann.post(task_id, "scenario", ann.fill(page, scenario="über den Zaun springen")).status_code == 303
    db = app.state.db
    image_id = rows(db, Task, Task.id == task_id)[0].image_id
    with pytest.raises(IntegrityError):  # the unique index holds without the form check too
        with db.write() as s:
            s.add(Scenario(scenario_id="dup", image_id=image_id, text="über den zaun springen", position=99))
            s.flush()
            s.add(ScenarioKey(scenario_id="dup", image_id=image_id, text_key="über den zaun springen"))


# --------------------------------------------------------------------------- 4. control characters

def test_forbidden_characters_are_found():
    assert forbidden_characters("a\x00b") == [(1, "U+0000 control character")]
    assert forbidden_characters("evil \u202eTXT.exe")[0][1] == "U+202E RIGHT-TO-LEFT OVERRIDE"
    assert forbidden_characters("\x1b[31m red") and forbidden_characters("x\u2066y")
    assert forbidden_characters("tab\there\nnew line\r") == []
    assert forbidden_characters("Über den Zaun, café, 東京, emoji \U0001F600") == []
    assert describe_forbidden_characters("ok") is None
    assert "U+0000 control character at position 4" in describe_forbidden_characters("bad\x00")


def test_control_characters_are_refused_in_added_text(tmp_path):
    app, _, _ = make_app(tmp_path)
    ann, task_id, page = add_page(app)
    for text in ("climbing the fence\x00 at night", "climbing the \u202efence at night"):
        r = ann.post(task_id, "scenario", ann.fill(page, scenario=text))
        assert r.status_code == 422 and "control or text-direction characters" in r.text
    assert 'id="add-form"' in ann.page(task_id)


def test_a_dataset_with_control_characters_is_a_dataset_problem(tmp_path):
    make_dataset(tmp_path / "data", texts={"img1-s2": "bad\x00text"}, setting="a kitchen \u202e")
    with pytest.raises(DatasetError) as err:
        make_app(tmp_path)
    message = str(err.value)
    assert "[line 6] field 'scenario': contains control" in message and "U+0000" in message
    assert "field 'setting'" in message and "U+202E" in message


# --------------------------------------------------------------------------- 5. database faults

def _fail_writes(engine, state):
    @event.listens_for(engine, "before_cursor_execute")
    def full_disk(conn, cursor, statement, *args):
        if state["on"] and statement.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")):
            raise sqlite3.OperationalError("database or disk is full")


def test_database_faults_are_an_error_page_and_healthz_fails(tmp_path):
    app, _, _ = make_app(tmp_path)
    fresh = Annotator(app, "fresh")
    ann = Annotator(app, "ann1").login_and_consent()
    task_id, page = ann.open_task()
    state = {"on": True}
    _fail_writes(app.state.db.engine, state)
    r = ann.post(task_id, "ratings", ann.fill(page))
    assert r.status_code == 503 and "your answer was not recorded" in r.text
    assert "default-src 'none'" in r.headers["content-security-policy"]
    r = fresh.client.get(f"/login/{fresh.token}", follow_redirects=True)
    r = fresh.client.post("/consent", data={"agree": "yes", "csrf_token": hidden_field(r.text, "csrf_token")})
    assert r.status_code == 503 and "not recorded" in r.text
    health = TestClient(app).get("/healthz")
    assert health.status_code == 503 and "cannot be written" in health.json()["error"]
    state["on"] = False
    assert TestClient(app).get("/healthz").status_code == 200
    assert ann.post(task_id, "ratings", ann.fill(page)).status_code == 303  # the retry goes through


def test_an_unexpected_error_still_gets_the_page_and_headers(tmp_path, monkeypatch):
    app, _, _ = make_app(tmp_path)
    ann = Annotator(app, "ann1").login_and_consent()
    task_id, page = ann.open_task()
    monkeypatch.setattr(workflow, "submit_ratings", lambda *a, **k: 1 / 0)
    r = ann.post(task_id, "ratings", ann.fill(page))
    assert r.status_code == 500 and 'id="error"' in r.text and "x-frame-options" in r.headers


def test_a_database_that_cannot_be_written_is_refused_at_start(tmp_path):
    app, data, _ = make_app(tmp_path)
    app.state.db.dispose()
    read_only = f"sqlite:///file:{tmp_path / 'morale.sqlite'}?mode=ro&uri=true"
    with pytest.raises(MmscaleError, match="cannot be written"):
        create_app(data, tmp_path / "pred.parquet", read_only, ADMIN_TOKEN)


# --------------------------------------------------------------------------- 6. admin login

def test_low_entropy_admin_tokens_are_refused(tmp_path):
    for weak in ("aaaaaaaaaaaaaaaa", "abababababababababab", "1234123412341234"):
        with pytest.raises(MmscaleError, match="too easy to guess"):
            check_admin_token(weak)
    with pytest.raises(MmscaleError, match="at least 16"):
        check_admin_token("Xy7#q")
    assert check_admin_token(ADMIN_TOKEN) == ADMIN_TOKEN


def test_failed_admin_logins_are_throttled_per_client_and_overall(tmp_path):
    app, _, _ = make_app(tmp_path, admin_failures_per_client=3, admin_failures_overall=5)
    mallory = TestClient(app, client=("10.0.0.66", 4000))
    wrong = {"Authorization": "Bearer wrong-token-000000000000"}
    assert [mallory.get("/admin", headers=wrong).status_code for _ in range(4)] == [403, 403, 403, 429]
    assert mallory.get("/admin", headers=ADMIN).status_code == 429  # even the right token, until the window ends
    page = mallory.get("/admin/login").text
    r = mallory.post("/admin/login", data={"token": ADMIN_TOKEN, "csrf_token": hidden_field(page, "csrf_token")})
    assert r.status_code == 429 and "Too many failed admin logins" in r.text
    other = TestClient(app, client=("10.0.0.7", 4000))
    assert [other.get("/admin", headers=wrong).status_code for _ in range(3)] == [403, 403, 429]  # 5 overall
    assert TestClient(app, client=("10.0.0.8", 1)).get("/admin", headers=ADMIN).status_code == 429
    clock = [0.0]
    throttle = FailureThrottle(2, 10, 60.0, clock=lambda: clock[0])
    throttle.failed("a"), throttle.failed("a")
    assert throttle.retry_after("a") == pytest.approx(60.0) and throttle.retry_after("b") is None
    clock[0] = 61.0
    assert throttle.retry_after("a") is None


def test_admin_sessions_are_server_side_and_logout_revokes_them(tmp_path):
    app, _, _ = make_app(tmp_path)

    def login():
        client = TestClient(app, follow_redirects=False)
        page = client.get("/admin/login").text
        r = client.post("/admin/login", data={"token": ADMIN_TOKEN, "csrf_token": hidden_field(page, "csrf_token")})
        assert r.status_code == 303
        return client, client.cookies["morale_admin"]

    first, cookie = login()
    second, other_cookie = login()
    assert cookie != other_cookie and ADMIN_TOKEN not in cookie
    assert first.get("/admin").status_code == 200
    copy = TestClient(app, follow_redirects=False)
    copy.cookies.set("morale_admin", cookie)
    page = first.get("/admin").text
    assert first.post("/admin/logout", data={"csrf_token": hidden_field(page, "csrf_token")}).status_code == 303
    assert copy.get("/admin").status_code == 403  # the copied cookie died with the logout
    assert second.get("/admin").status_code == 200
    with app.state.db.write() as s:
        s.execute(update(AdminSession).values(expires_at=AdminSession.created_at))
    assert second.get("/admin").status_code == 403  # expired


def test_the_admin_token_never_comes_from_argv(tmp_path):
    parser = argparse.ArgumentParser()
    morale_cli.register(parser.add_subparsers())
    base = ["morale", "serve", "--data", "d", "--predictions", "p"]
    with pytest.raises(MmscaleError, match="visible to every user in `ps`"):
        morale_cli.admin_token_from(parser.parse_args(base + ["--admin-token", ADMIN_TOKEN]))
    path = tmp_path / "token"
    path.write_text(ADMIN_TOKEN + "\n")
    assert morale_cli.admin_token_from(parser.parse_args(base + ["--admin-token-file", str(path)])) \
        == (ADMIN_TOKEN, False)
    with pytest.raises(MmscaleError, match="cannot read it"):
        morale_cli.admin_token_from(parser.parse_args(base + ["--admin-token-file", str(tmp_path / "nope")]))


# --------------------------------------------------------------------------- 7. canaries

def test_canaries_cannot_be_told_from_real_items(tmp_path):
    app, _, _ = make_app(tmp_path, canary_rate=1.0)
    ann = Annotator(app, "ann1").login_and_consent()
    task_id, page = ann.open_task()
    keys = item_keys(page)
    assert len(keys) == 4 and all(re.fullmatch(r"i\d", k) for k in keys)
    assert set(re.findall(r'name="(?:rating|modality)_([^"]+)"', page)) == set(keys)
    assert not re.search(r"attention|canary|not a real", page, re.I)
    assert len(canary_answers(page)) == 1  # an annotator who reads it still knows what it asks
    assert ann.post(task_id, "ratings", ann.fill(page)).status_code == 303
    (check,) = rows(app.state.db, CanaryCheck)
    assert check.passed is True and len(rows(app.state.db, Rating)) == 3


# --------------------------------------------------------------------------- 8. export snapshot

def test_a_live_export_is_one_snapshot(tmp_path, monkeypatch):
    app, data, _ = make_app(tmp_path)
    first = Annotator(app, "ann1").login_and_consent()
    first.finish_task(*first.open_task())
    late = Annotator(app, "ann2").login_and_consent()
    task_id, page = late.open_task()
    form = late.fill(page)
    real_item_sd = export_module.item_sd

    def rating_lands_mid_export(ratings):
        assert late.post(task_id, "ratings", form).status_code == 303  # another annotator, meanwhile
        return real_item_sd(ratings)

    monkeypatch.setattr(export_module, "item_sd", rating_lands_mid_export)
    out = tmp_path / "export"
    export_dataset(app.state.db, data, out, min_ratings=1)
    in_dataset = int(pd.read_json(out / "scenarios.jsonl", lines=True)["ratings"].map(len).sum()) \
        if (out / "scenarios.jsonl").exists() else int(pd.read_parquet(out / "scenarios.parquet")["ratings"]
                                                       .map(len).sum())
    in_log = len(pd.read_parquet(out / RATINGS_LOG))
    in_stats = json.loads((out / STATS_FILE).read_text())["progress"]["ratings"]
    assert in_dataset == in_log == in_stats == 3
    assert len(rows(app.state.db, Rating)) == 6  # the late rating is stored, just not in this export


# --------------------------------------------------------------------------- 9. huge ids

def test_huge_path_ids_are_404(tmp_path):
    app, _, _ = make_app(tmp_path)
    ann = Annotator(app, "ann1").login_and_consent()
    task_id, page = ann.open_task()
    for huge in ("99999999999999999999999", "3000000000", "0", "-5"):
        r = ann.client.get(f"/task/{huge}")
        assert r.status_code == 404 and 'id="error"' in r.text, huge
        for step in ("ratings", "reconfirm", "scenario"):
            assert ann.client.post(f"/task/{huge}/{step}", data=ann.fill(page)).status_code == 404
        admin = TestClient(app, follow_redirects=False)
        assert admin.post(f"/admin/annotators/{huge}/exclude", headers=ADMIN).status_code == 404
        assert admin.post(f"/admin/annotators/{huge}/reissue", headers=ADMIN).status_code == 404
    assert ann.post(task_id, "ratings", ann.fill(page)).status_code == 303


# --------------------------------------------------------------------------- 10. switching sessions

def test_a_link_for_someone_else_asks_before_switching(tmp_path):
    app, _, _ = make_app(tmp_path)
    alice = Annotator(app, "alice").login_and_consent()
    bob_token = workflow.invite(app.state.db, "bob")
    r = alice.client.get(f"/login/{bob_token}")
    assert r.status_code == 200 and 'id="switch"' in r.text
    assert "signed in as <strong>alice</strong>" in r.text and "belongs to\n     <strong>bob</strong>" in r.text
    assert "Signed in as <strong>alice</strong>" in alice.client.get("/consent").text  # not switched
    r = alice.client.post("/login", data={"token": bob_token, "csrf_token": hidden_field(r.text, "csrf_token")})
    assert r.status_code == 303 and "Signed in as <strong>bob</strong>" in alice.client.get("/consent").text
    assert alice.client.get(f"/login/{bob_token}").status_code == 303  # one's own link: straight in


# --------------------------------------------------------------------------- 11. invitation URLs

def test_invite_links_use_the_public_url_not_the_host_header(tmp_path, capsys):
    app, _, db_url = make_app(tmp_path, public_url="https://morale.example.org")
    admin = TestClient(app, follow_redirects=False)
    r = admin.post("/admin/invite", data={"names": "carol"},
                   headers={**ADMIN, "Host": "evil.example", "Accept": "application/json"})
    assert r.json()["invited"][0]["link"].startswith("https://morale.example.org/login/")
    # the CLI prints the URL the server was last started with, unless told otherwise
    assert morale_cli.main(["invite", "--db", db_url, "dave"]) == 0
    assert capsys.readouterr().out.startswith("dave\thttps://morale.example.org/login/")
    assert morale_cli.main(["invite", "--db", db_url, "erin", "--base-url", "http://10.0.0.5:9000/"]) == 0
    assert capsys.readouterr().out.startswith("erin\thttp://10.0.0.5:9000/login/")


def test_a_lost_link_is_reissued_and_the_old_one_revoked(tmp_path, capsys):
    app, _, db_url = make_app(tmp_path)
    old = workflow.invite(app.state.db, "carol")
    assert morale_cli.main(["invite", "--db", db_url, "--reissue", "carol"]) == 0
    new = capsys.readouterr().out.strip().rsplit("/", 1)[1]
    client = TestClient(app, follow_redirects=False)
    assert client.get(f"/login/{old}").status_code == 401
    assert client.get(f"/login/{new}").status_code == 303
    assert morale_cli.main(["invite", "--db", db_url, "--reissue", "nobody"]) == 2
    assert "does not exist" in capsys.readouterr().err
    (carol,) = [a for a in TestClient(app).get("/admin/stats.json", headers=ADMIN).json()["annotators"]]
    r = TestClient(app).post(f"/admin/annotators/{carol['id']}/reissue", headers={**ADMIN, "Accept": "application/json"})
    newest = r.json()["invited"][0]["token"]
    assert client.get(f"/login/{new}").status_code == 401 and client.get(f"/login/{newest}").status_code == 303


# --------------------------------------------------------------------------- 12. errors in the right form

def test_malformed_urls_and_early_steps_are_explained_on_the_error_page(tmp_path):
    app, _, _ = make_app(tmp_path)
    ann = Annotator(app, "ann1").login_and_consent()
    task_id, page = ann.open_task()
    r = ann.client.get("/task/abc")
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html") and 'id="error"' in r.text
    r = TestClient(app).get("/admin/export.zip?min_ratings=abc", headers=ADMIN)
    assert r.status_code == 422 and 'id="error"' in r.text and "min_ratings: &#39;abc&#39; is not valid" in r.text
    r = ann.post(task_id, "reconfirm", ann.fill(page))
    assert r.status_code == 409 and "not open yet" in r.text and "rating the scenarios" in r.text
    assert "is finished" not in r.text
    assert ann.post(task_id, "ratings", ann.fill(page)).status_code == 303
    r = ann.post(task_id, "ratings", ann.fill(page, client_token=workflow.new_client_token()))  # a stale page
    assert r.status_code == 409 and "already submitted" in r.text


# --------------------------------------------------------------------------- 3 to 5 scenarios per task

def test_tasks_hold_3_to_5_scenarios_by_default(tmp_path):
    assert (AssignmentPolicy().min_items, AssignmentPolicy().max_items) == (3, 5)
    assert [task_size(n, 3, 5) for n in (2, 3, 5, 6, 7, 8, 10, 11)] == [2, 3, 5, 3, 4, 5, 5, 5]
    parser = argparse.ArgumentParser()
    morale_cli.register(parser.add_subparsers())
    args = parser.parse_args(["morale", "serve", "--data", "d", "--predictions", "p"])
    assert (args.min_items, args.max_items) == (3, 5)
    app, _, _ = make_app(tmp_path, n_images=4, per_image=7, ratings_per_item=1, scores=uniform_scores(4, 7))
    ann = Annotator(app, "ann1").login_and_consent()
    done = ann.work_until_finished()
    sizes = [len(rows(app.state.db, Assignment, Assignment.task_id == t)) for t in done]
    assert sorted(sizes) == [3, 3, 3, 3, 4, 4, 4, 4]  # 7 = 4 + 3, never 5 + 2


# --------------------------------------------------------------------------- a fresh, unrated pool

def test_serve_prints_the_coverage_and_records_its_public_url(tmp_path, capsys, monkeypatch):
    import uvicorn

    data = make_dataset(tmp_path / "data")
    pred = write_predictions(tmp_path / "pred.parquet", {sid: 3.0 for sid in list(uniform_scores())[:8]})
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: None)
    monkeypatch.setenv("MMSCALE_MORALE_ADMIN_TOKEN", ADMIN_TOKEN)
    db = f"sqlite:///{tmp_path / 'm.sqlite'}"
    serve = ["serve", "--data", str(data), "--predictions", str(pred), "--db", db, "--port", "8765"]
    assert morale_cli.main(serve) == 2
    assert "cover 8 of the 9 scenarios" in capsys.readouterr().err
    assert morale_cli.main(serve + ["--min-prediction-coverage", "0.8"]) == 0
    assert "predictions cover 8 of 9 scenarios (89%)" in capsys.readouterr().out
    assert morale_cli.main(["invite", "--db", db, "carol"]) == 0  # the port the server uses, not 8000
    assert capsys.readouterr().out.startswith("carol\thttp://127.0.0.1:8765/login/")


def test_check_accepts_an_unrated_pool_that_serve_accepts(tmp_path, capsys):
    data = make_dataset(tmp_path / "data")
    assert morale_cli.main(["check", str(data)]) == 0
    assert "a valid MORALE pool: 9 scenarios on 3 images, 9 without ratings yet" in capsys.readouterr().out
    make_dataset(tmp_path / "bad", texts={"img0-s0": "x\x00"})
    assert morale_cli.main(["check", str(tmp_path / "bad")]) == 1
    assert "U+0000 control character" in capsys.readouterr().err


def test_the_fast_path_flags_exactly_the_code_points_the_unicode_check_does():
    """Every code point: the precompiled class finds a character iff the unicodedata rule forbids it."""
    import sys
    import unicodedata

    from mmscale_core import text_checks

    def forbidden_by_rule(char: str) -> bool:
        return char not in text_checks.ALLOWED_CONTROLS and (
            unicodedata.category(char) in ("Cc", "Cs") or char in text_checks.BIDI_CONTROLS)

    chars = [chr(c) for c in range(sys.maxunicode + 1)]
    by_class = {c for c in chars if text_checks._FORBIDDEN.search(c)}
    assert by_class == {c for c in chars if forbidden_by_rule(c)}
    assert text_checks.forbidden_characters("ok\tfine\n") == []
    assert text_checks.forbidden_characters("a\u202eb\x00") == [(1, "U+202E RIGHT-TO-LEFT OVERRIDE"),
                                                              (3, "U+0000 control character")]
