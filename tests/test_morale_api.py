"""MORALE over HTTP (TestClient): the annotator flow, assignment rules, discrepancy branch,
screening, admin, export round trip and the CLI."""

from __future__ import annotations

import argparse
import io
import json
import re
import zipfile
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from starlette.testclient import TestClient

from mmscale_core import data as data_module
from mmscale_core.data import DatasetError, load_dataset
from mmscale_core.errors import MmscaleError
from mmscale_core.metrics import ndcg_at_k
from mmscale_core.morale import cli as morale_cli
from mmscale_core.morale.app import create_app
from mmscale_core.morale.client import hidden_field
from mmscale_core.morale.db import Annotator as AnnotatorRow
from mmscale_core.morale.db import Assignment, CanaryCheck, Rating, Scenario, Submission, Task, utcnow
from mmscale_core.morale.discrepancy import is_flagged, next_stage, reconfirmation_stats
from mmscale_core.morale.export import RATINGS_LOG, STATS_FILE, export_dataset
from mmscale_core.morale.pool import load_pool, read_predictions
from mmscale_core.morale.screening import ScreeningRules, screen_annotators

from test_morale_support import ADMIN, ADMIN_TOKEN, Annotator, make_app, make_dataset, write_predictions


def rows(db, model):
    with db.read() as s:
        return list(s.scalars(select(model)))


# --------------------------------------------------------------------------- the discrepancy rule

@pytest.mark.parametrize("user, model, expected", [
    (3, 3.0, False), (3, 4.0, False), (3, 2.0, False),  # exactly delta: agreement
    (3, 4.01, True), (1, 4.5, True), (5, 1.0, True), (2, None, None),
])
def test_delta_rule(user, model, expected):
    assert is_flagged(user, model, delta=1.0) is expected


def test_delta_is_configurable():
    assert is_flagged(3, 3.6, delta=0.5) is True
    assert is_flagged(3, 4.9, delta=2.0) is False


@pytest.mark.parametrize("flags, after, stage", [
    ([True, False], "rate", "reconfirm"), ([True, False], "reconfirm", "add"), ([True, True], "rate", "reconfirm"),
    ([True, True], "reconfirm", "done"), ([False, None], "rate", "add"), ([None, None], "rate", "done"),
])
def test_next_stage(flags, after, stage):
    assert next_stage(flags, after) == stage


# --------------------------------------------------------------------------- the annotator flow

def test_flow_disagreement_reconfirm_then_add(tmp_path):
    scores = {"img0-s0": 1.0, "img0-s1": 3.5, "img0-s2": 2.5, **{f"img{i}-s{j}": 3.0 for i in (1, 2) for j in range(3)}}
    app, _, _ = make_app(tmp_path, scores=scores, n_images=3)
    ann = Annotator(app, "ann1")
    r = ann.client.get(f"/login/{ann.token}", follow_redirects=True)
    assert str(r.url).endswith("/consent") and "Content warning" in r.text and "voluntary" in r.text
    ann.login_and_consent()

    task_id, page = ann.open_task()
    while "a kitchen number 0" not in page:  # the first image is random; work until img0 comes up
        ann.finish_task(task_id, page)
        task_id, page = ann.open_task()
    assert page.count('type="radio" name="rating_') == 3 * 5 and "Your decision is mainly based on visual cues." in page
    assert "Model" not in page  # no anchoring: the model's score is not shown before rating
    assert ann.post(task_id, "ratings", ann.fill(page, lambda k: (3, "image"))).status_code == 303

    page = ann.page(task_id)
    assert 'id="reconfirm-form"' in page and "action 0 in scene 0" in page  # |3 - 1.0| = 2 > 1
    assert "action 1 in scene 0" not in page and "1.00" in page  # agreeing items are not re-asked
    r = ann.post(task_id, "reconfirm", ann.fill(page, lambda k: (2, "both")))
    assert r.status_code == 303

    page = ann.page(task_id)
    assert 'id="add-form"' in page and "action 1 in scene 0" in page  # it lists the agreeing scenarios
    r = ann.post(task_id, "scenario", ann.fill(page, scenario="  shouting   at the cook in this kitchen "))
    assert r.status_code == 303 and 'id="done"' in ann.page(task_id)

    db = app.state.db
    mine = {r.scenario_id: r for r in rows(db, Rating) if r.task_id == task_id}
    s0 = mine["img0-s0"]
    assert (s0.initial_rating, s0.initial_modality, s0.rating, s0.modality) == (3, "image", 2, "both")
    assert s0.flagged and s0.reconfirm == "revised" and s0.model_score == 1.0
    assert mine["img0-s1"].flagged is False and mine["img0-s1"].reconfirm is None
    added = [s for s in rows(db, Scenario) if s.created_by is not None]
    assert len(added) == 1 and added[0].text == "shouting at the cook in this kitchen"
    assert (added[0].image_id, added[0].split, added[0].setting) == ("img0", "test", "a kitchen number 0")


def test_without_model_scores_the_task_ends_after_rating(tmp_path):
    app, _, _ = make_app(tmp_path, scores={}, min_prediction_coverage=0.0)
    ann = Annotator(app, "ann1").login_and_consent()
    task_id, page = ann.open_task()
    assert ann.post(task_id, "ratings", ann.fill(page)).status_code == 303
    assert 'id="done"' in ann.page(task_id)
    assert all(r.flagged is None for r in rows(app.state.db, Rating))


def test_step_out_of_order_is_409(tmp_path):
    app, _, _ = make_app(tmp_path)
    ann = Annotator(app, "ann1").login_and_consent()
    task_id, page = ann.open_task()
    r = ann.post(task_id, "scenario", ann.fill(page, scenario="a brand new action here"))
    assert r.status_code == 409 and "go back to your task" in r.text
    assert ann.post(task_id, "ratings", ann.fill(page)).status_code == 303
    r = ann.post(task_id, "ratings", ann.fill(ann.page(task_id)) | {"client_token": "another-token-123456"})
    assert r.status_code == 409


def test_unconsented_annotator_cannot_work(tmp_path):
    app, _, _ = make_app(tmp_path)
    ann = Annotator(app, "ann1")
    ann.client.get(f"/login/{ann.token}")
    assert ann.client.get("/task").status_code == 403
    page = ann.client.get("/consent").text
    r = ann.client.post("/consent", data={"csrf_token": hidden_field(page, "csrf_token")})
    assert r.status_code == 422 and "tick the box" in r.text


# --------------------------------------------------------------------------- assignment

def test_each_scenario_gets_three_distinct_annotators(tmp_path):
    app, _, _ = make_app(tmp_path, n_images=4, per_image=3, canary_rate=0.5)
    people = [Annotator(app, f"ann{i}").login_and_consent() for i in range(6)]
    for person in people:
        person.work_until_finished()
    db = app.state.db
    ratings = rows(db, Rating)
    per_scenario: dict[str, list[int]] = {}
    for r in ratings:
        per_scenario.setdefault(r.scenario_id, []).append(r.annotator_id)
    assert len(per_scenario) == 12
    assert all(len(v) == 3 and len(set(v)) == 3 for v in per_scenario.values())
    # the database itself refuses a second assignment of a scenario to the same person, and a 4th slot
    first = rows(db, Assignment)[0]
    with pytest.raises(IntegrityError), db.write() as s:
        s.add(Assignment(task_id=first.task_id, annotator_id=first.annotator_id, scenario_id=first.scenario_id,
                         position=9, slot=None))
    others = {a.id for a in rows(db, AnnotatorRow)} - \
        {a.annotator_id for a in rows(db, Assignment) if a.scenario_id == first.scenario_id}
    with pytest.raises(IntegrityError), db.write() as s:  # a different person, but the slot is taken
        s.add(Assignment(task_id=first.task_id, annotator_id=min(others), scenario_id=first.scenario_id,
                         position=9, slot=first.slot))
    # canaries were mixed in, answered as instructed, and never count as ratings
    canaries = rows(db, CanaryCheck)
    assert canaries and all(c.passed for c in canaries) and len(ratings) == 36


def test_assignment_is_random_across_annotators(tmp_path):
    app, _, _ = make_app(tmp_path, n_images=8, per_image=1)
    first_images = {Annotator(app, f"ann{i}").login_and_consent().open_task()[1].split("a kitchen number ")[1][0]
                    for i in range(8)}
    assert len(first_images) >= 3  # not everyone starts on the same image


def test_added_scenario_goes_to_others_not_the_author(tmp_path):
    app, data, _ = make_app(tmp_path, n_images=1, per_image=3)
    author = Annotator(app, "author").login_and_consent()
    task_id, page = author.open_task()
    author.finish_task(task_id, page, add="helping the cook carry the heavy pot")
    assert author.open_task()[0] is None  # the author never rates their own scenario
    others = [Annotator(app, f"ann{i}").login_and_consent() for i in range(3)]
    for o in others:
        seen = []
        for _ in range(3):
            tid, pg = o.open_task()
            if tid is None:
                break
            seen.append(pg)
            o.finish_task(tid, pg)
        assert any("helping the cook carry the heavy pot" in pg for pg in seen)
    added = [s for s in rows(app.state.db, Scenario) if s.created_by is not None][0]
    raters = [r.annotator_id for r in rows(app.state.db, Rating) if r.scenario_id == added.scenario_id]
    assert len(raters) == 3 and added.created_by not in raters


def test_stale_tasks_are_released_and_late_posts_refused(tmp_path):
    app, _, _ = make_app(tmp_path, n_images=1, per_image=3, ratings_per_item=1, lease_hours=1)
    slow, fast = Annotator(app, "slow").login_and_consent(), Annotator(app, "fast").login_and_consent()
    task_id, page = slow.open_task()
    assert fast.open_task()[0] is None  # the only slot of each scenario is held
    with app.state.db.write() as s:
        s.execute(update(Task).where(Task.id == task_id).values(created_at=utcnow() - timedelta(hours=2)))
    assert fast.open_task()[0] is not None  # the lease ran out: the slots are back in the pool
    r = slow.post(task_id, "ratings", slow.fill(page))
    assert r.status_code == 409 and "lease" in r.text


# --------------------------------------------------------------------------- pool and predictions input

def test_pool_accepts_unrated_and_rejects_bad_records(tmp_path):
    data = make_dataset(tmp_path / "ok")
    pool = load_pool(data)
    assert len(pool.records) == 9 and pool.images.keys() == {"img0", "img1", "img2"}
    bad = make_dataset(tmp_path / "bad")
    lines = (bad / "scenarios.jsonl").read_text().splitlines()
    rec = json.loads(lines[0]) | {"ratings": [7], "modalities": ["both"], "annotators": ["x"]}
    lines[0] = json.dumps(rec)
    lines[1] = json.dumps(json.loads(lines[1]) | {"scenario": ""})
    (bad / "scenarios.jsonl").write_text("\n".join(lines) + "\n")
    (bad / "images" / "img2.png").unlink()
    with pytest.raises(DatasetError) as err:
        load_pool(bad)
    text = str(err.value)
    assert "scenario_id=img0-s0" in text and "outside 1..5" in text and "img0-s1" in text and "img2" in text


def test_predictions_are_read_defensively(tmp_path):
    path = tmp_path / "p.parquet"
    pd.DataFrame({"scenario_id": ["a"], "score": [1.0]}).to_parquet(path)
    with pytest.raises(MmscaleError, match=r"p\.parquet.*calibrated_score"):
        read_predictions(path)
    pd.DataFrame({"scenario_id": ["a", "a"], "calibrated_score": [1.0, 2.0]}).to_parquet(path)
    with pytest.raises(MmscaleError, match="scenario_id=a.*duplicate"):
        read_predictions(path)
    pd.DataFrame({"scenario_id": ["a"], "calibrated_score": [float("nan")]}).to_parquet(path)
    with pytest.raises(MmscaleError, match="calibrated_score"):
        read_predictions(path)
    with pytest.raises(MmscaleError, match="no such predictions file"):
        read_predictions(tmp_path / "missing.parquet")
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(MmscaleError, match="cannot read"):
        read_predictions(tmp_path / "junk.parquet")
    assert read_predictions(write_predictions(path, {"img0-s0": 2.5})) == {"img0-s0": 2.5}


def test_in_memory_database_is_refused(tmp_path):
    make_dataset(tmp_path / "data")
    with pytest.raises(MmscaleError, match="database file"):
        create_app(tmp_path / "data", None, "sqlite://", ADMIN_TOKEN)


def test_restart_keeps_pool_and_form_tokens(tmp_path):
    app, _, db_url = make_app(tmp_path)
    ann = Annotator(app, "ann1").login_and_consent()
    task_id, page = ann.open_task()
    app.state.db.dispose()
    app2, _, _ = make_app(tmp_path)  # same DB file: a restarted server
    assert len(rows(app2.state.db, Scenario)) == 9
    client = TestClient(app2, raise_server_exceptions=False, follow_redirects=False)
    client.cookies = ann.client.cookies
    r = client.post(f"/task/{task_id}/ratings", data=Annotator.fill(page))  # a form rendered before the restart
    assert r.status_code == 303


# --------------------------------------------------------------------------- statistics and screening

def test_reconfirmation_stats_match_a_hand_computation():
    frame = pd.DataFrame({
        "scenario_id": ["a", "a", "b", "b", "c", "d", "e", "f"],
        "image_id":    ["i", "i", "i", "i", "i", "j", "j", "j"],
        "rating":         [5, 4, 2, 3, 1, 4, 2, 3],
        "initial_rating": [5, 4, 4, 3, 1, 4, 2, 3],
        "model_score": [4.0, 4.0, 3.5, 3.5, 1.5, 2.0, 3.0, np.nan],
        "flagged":   [False, False, True, False, False, True, False, None],
        "reconfirm": [None, None, "revised", None, None, "kept", None, None],
    })
    stats = reconfirmation_stats(frame, n_boot=20)
    assert (stats["n_ratings"], stats["n_flagged"], stats["n_ratings_adjusted"]) == (8, 2, 1)
    assert stats["n_items"] == 6 and stats["n_items_adjusted"] == 1 and stats["share_items_adjusted"] == 1 / 6
    # by hand: image i = a, b, c (mean ratings 4.5, 2.5, 1); image j = d, e (f has no model score)
    ndcg_i = ndcg_at_k([4.5, 2.5, 1.0], [4.0, 3.5, 1.5])
    ndcg_j = ndcg_at_k([4.0, 2.0], [2.0, 3.0])
    assert stats["ndcg_at_5_all"]["value"] == pytest.approx((ndcg_i + ndcg_j) / 2)
    ndcg_i_without = ndcg_at_k([4.5, 1.0], [4.0, 1.5])  # b (adjusted) dropped
    assert stats["ndcg_at_5_without_adjusted"]["value"] == pytest.approx((ndcg_i_without + ndcg_j) / 2)
    assert stats["delta_ndcg_at_5"] == pytest.approx(stats["ndcg_at_5_all"]["value"] - (ndcg_i_without + ndcg_j) / 2)
    ndcg_i_before = ndcg_at_k([4.5, 3.5, 1.0], [4.0, 3.5, 1.5])
    assert stats["ndcg_at_5_before_reconfirmation"]["value"] == pytest.approx((ndcg_i_before + ndcg_j) / 2)
    empty = reconfirmation_stats(frame.iloc[0:0])
    assert empty["n_ratings"] == 0 and empty["delta_ndcg_at_5"] is None


def test_screening_flags_straight_liners_canary_failures_and_outliers():
    annotators = pd.DataFrame({"id": [1, 2, 3, 4], "name": ["good", "flat", "careless", "contrarian"],
                               "consented": True, "excluded": False, "tasks_done": 4, "scenarios_added": 0})
    rng = np.random.default_rng(0)
    truth = rng.choice([1, 5], size=12)  # extreme truths make the deviations easy to compute by hand
    ratings = []
    for sid, t in enumerate(truth):
        ratings += [(1, f"s{sid}", int(t)), (2, f"s{sid}", 3), (3, f"s{sid}", int(t)), (4, f"s{sid}", int(6 - t))]
    ratings = pd.DataFrame(ratings, columns=["annotator_id", "scenario_id", "rating"]).assign(reconfirm=None)
    canaries = pd.DataFrame({"id": range(8), "annotator_id": [1, 1, 2, 2, 3, 3, 4, 4],
                             "passed": [True, True, True, True, False, True, True, True]})
    table = screen_annotators(annotators, ratings, canaries, ScreeningRules(max_deviation=2.5)).set_index("name")
    assert table.loc["good", "flags"] == "" and table.loc["good", "deviation"] == pytest.approx(2.0)
    assert "SD" in table.loc["flat", "flags"] and table.loc["flat", "rating_sd"] == 0
    assert "canary" in table.loc["careless", "flags"] and table.loc["careless", "canary_pass_rate"] == 0.5
    assert "deviation" in table.loc["contrarian", "flags"]
    expected = np.mean(np.abs((6 - truth) - (2 * truth + 3) / 3))  # leave-one-out mean of the 3 others
    assert table.loc["contrarian", "deviation"] == pytest.approx(expected)


# --------------------------------------------------------------------------- admin, export, CLI

def full_round(tmp_path, n_people=3, **kw):
    app, data, db_url = make_app(tmp_path, canary_rate=0.3, **kw)
    people = [Annotator(app, f"ann{i}").login_and_consent() for i in range(n_people)]
    rng = np.random.default_rng(1)
    for person in people:
        person.work_until_finished(answers=lambda key: (int(rng.integers(1, 6)), str(rng.choice(["text", "image", "both"]))))
    return app, data, db_url, people


def test_export_round_trip_validates_with_added_scenarios(tmp_path):
    app, data, db_url = make_app(tmp_path, canary_rate=0.3)
    writer = Annotator(app, "writer").login_and_consent()
    task_id, page = writer.open_task()
    writer.finish_task(task_id, page, add="cooking dinner for a sick neighbour")
    rng = np.random.default_rng(1)
    people = [Annotator(app, f"ann{i}").login_and_consent() for i in range(3)]
    for person in people:
        person.work_until_finished(answers=lambda key: (int(rng.integers(1, 6)),
                                                        str(rng.choice(["text", "image", "both"]))))
    db = app.state.db
    out = tmp_path / "export"
    summary = export_dataset(db, data, out)
    ds = load_dataset(out)
    assert summary.scenarios == len(ds.scenarios) == 10 and summary.ratings == 30 and summary.scenarios_added == 1
    final = {(r.scenario_id, r.annotator_id): r for r in rows(db, Rating)}
    by_id = ds.scenarios.set_index("scenario_id")
    for rec in ds.scenarios.itertuples():
        assert len(rec.ratings) == 3 and set(rec.annotators) <= {"writer", "ann0", "ann1", "ann2"}
    added = ds.scenarios[ds.scenarios["scenario"] == "cooking dinner for a sick neighbour"].iloc[0]
    assert "writer" not in added["annotators"] and pd.isna(added["normbank_label"])
    assert added["origin"] == "expansion"  # sec 3.2: an annotator-added scenario, the rest the pool's
    assert (ds.scenarios["origin"] == "source").sum() == 9
    image_of_added = added["image_id"]
    assert added["split"] == by_id[by_id["image_id"] == image_of_added]["split"].iloc[0]
    assert by_id.loc["img0-s0", "split"] == "test" and by_id.loc["img1-s0", "split"] == "train"
    # the exported ratings are the final (post-reconfirmation) answers in the DB
    for r in rows(db, Rating):
        rec = by_id.loc[r.scenario_id]
        assert r.rating in list(rec["ratings"])
    log = pd.read_parquet(out / RATINGS_LOG)
    assert len(log) == len(final) == 30 and json.loads((out / STATS_FILE).read_text())["export"]["scenarios_added"] == 1
    assert morale_cli.main(["export", "--db", db_url, "--out", str(tmp_path / "cli-export"),
                            "--format", "jsonl"]) == 0
    validate = argparse.ArgumentParser()  # `mmscale validate`, without importing every other command
    data_module.register(validate.add_subparsers())
    args = validate.parse_args(["validate", str(tmp_path / "cli-export")])
    assert args.func(args) == 0


def test_export_options(tmp_path):
    app, data, db_url, _ = full_round(tmp_path, dataset_kwargs={"rated": True, "split": False})
    db = app.state.db
    merged = load_dataset(export_dataset(db, data, tmp_path / "merged", include_existing=True).out)
    assert all(len(r) == 5 and r[:2] == [2, 4] for r in merged.scenarios["ratings"])
    assert all(a[:2] == ["old1", "old2"] for a in merged.scenarios["annotators"])
    # no split in the source: the export pins the split the loader derives for the source
    assert merged.scenarios.set_index("scenario_id")["split"].to_dict() == \
        load_dataset(data).scenarios.set_index("scenario_id")["split"].to_dict()
    with pytest.raises(MmscaleError, match="no scenario has 4"):
        export_dataset(db, data, tmp_path / "none", min_ratings=4)
    strict = export_dataset(db, data, tmp_path / "strict", max_item_sd=0.5)
    assert strict.skipped_high_variance > 0 and strict.scenarios + strict.skipped_high_variance == 9
    with pytest.raises(MmscaleError, match="new directory"):
        export_dataset(db, data, data)


def test_admin_dashboard_stats_and_zip(tmp_path):
    app, _, _, people = full_round(tmp_path, n_people=3)
    admin = TestClient(app, follow_redirects=False)
    r = admin.get("/admin", headers=ADMIN)
    assert r.status_code == 200 and "ann0" in r.text and "Reconfirmation" in r.text and "9/9" in r.text
    stats = admin.get("/admin/stats.json", headers=ADMIN).json()
    assert stats["progress"]["ratings"] == 27 and stats["progress"]["items_complete"] == 9
    assert {a["name"] for a in stats["annotators"]} == {"ann0", "ann1", "ann2"}
    assert stats["reconfirmation"]["n_ratings"] == 27
    assert stats["reconfirmation"]["ndcg_at_5_all"]["n_lists"] == 3
    r = admin.get("/admin/export.zip", headers=ADMIN)
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(r.content)).namelist()
    assert "morale-export/scenarios.parquet" in names and "morale-export/images/img1.png" in names
    assert admin.get("/admin/export.zip?min_ratings=4", headers=ADMIN).status_code == 409


def test_admin_login_invite_and_exclude(tmp_path):
    app, _, _ = make_app(tmp_path, n_images=2, per_image=3, ratings_per_item=1)
    admin = TestClient(app, follow_redirects=False)
    page = admin.get("/admin/login").text
    r = admin.post("/admin/login", data={"token": ADMIN_TOKEN, "csrf_token": hidden_field(page, "csrf_token")})
    assert r.status_code == 303
    page = admin.get("/admin").text
    r = admin.post("/admin/invite", data={"names": "alice\nbob\nalice", "csrf_token": hidden_field(page, "csrf_token")})
    assert r.status_code == 200 and "already exists" in r.text
    links = dict(re.findall(r'<td>(\w+)</td><td><code class="secret">[^<]*/login/([^<]+)</code>', r.text))
    assert set(links) == {"alice", "bob"}
    alice = Annotator(app, "alice", token=links["alice"]).login_and_consent()
    task_id, page = alice.open_task()
    alice.finish_task(task_id, page)
    alice_id = rows(app.state.db, Rating)[0].annotator_id
    page = admin.get("/admin").text
    r = admin.post(f"/admin/annotators/{alice_id}/exclude", data={"csrf_token": hidden_field(page, "csrf_token")})
    assert r.status_code == 303
    assert alice.client.get("/task").status_code == 403  # access ends
    bob = Annotator(app, "bob", token=links["bob"]).login_and_consent()
    assert len(bob.work_until_finished()) == 2  # alice's slots were freed: bob rates all six
    stats = admin.get("/admin/stats.json").json()
    assert stats["progress"]["ratings"] == 6 and stats["progress"]["items_complete"] == 6
    assert [a["excluded"] for a in stats["annotators"]] == [True, False]
    assert admin.post("/admin/annotators/999/exclude", headers=ADMIN).status_code == 404


def test_cli_invite_stats_and_errors(tmp_path, capsys):
    app, data, db_url = make_app(tmp_path)
    assert morale_cli.main(["invite", "--db", db_url, "carol", "dave", "--base-url", "http://127.0.0.1:9000"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("carol\thttp://127.0.0.1:9000/login/")
    token = out[0].rsplit("/", 1)[1]
    Annotator(app, "carol", token=token).login_and_consent().work_until_finished()
    assert morale_cli.main(["stats", "--db", db_url]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["progress"]["ratings"] == 9 and stats["annotators"][0]["name"] == "carol"
    assert morale_cli.main(["invite", "--db", db_url, "carol"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert morale_cli.main(["invite", "--db", db_url, "bad name!"]) == 2
    assert morale_cli.main(["stats", "--db", str(tmp_path / "nope.sqlite")]) == 2
    assert "no such database file" in capsys.readouterr().err
    parser = argparse.ArgumentParser()
    morale_cli.register(parser.add_subparsers())
    args = parser.parse_args(["morale", "serve", "--data", "d", "--predictions", "p"])
    assert args.host == "127.0.0.1" and args.delta == 1.0 and args.ratings_per_item == 3
    assert morale_cli.is_loopback("127.0.0.1") and morale_cli.is_loopback("::1")
    assert not morale_cli.is_loopback("0.0.0.0")
    with app.state.db.read() as s:
        assert s.scalar(select(func.count()).select_from(Submission)) >= 3
