"""MORALE's security and reliability rules, each exercised for real: IDOR, admin auth, CSRF,
XSS, server-side validation, idempotent and atomic submissions, and durability across a
SIGKILL of the server process."""

from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from mmscale_core.morale import workflow
from mmscale_core.morale.client import canary_answers, hidden_field, item_keys
from mmscale_core.morale.db import Annotator as AnnotatorRow
from mmscale_core.morale.db import Database, Rating, Scenario, Submission, Task
from mmscale_core.morale.server import ServerProcess

from test_morale_support import ADMIN, ADMIN_TOKEN, Annotator, make_app, make_dataset, uniform_scores, \
    write_predictions


def count(db, model, *where) -> int:
    with db.read() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))


@pytest.fixture
def round_(tmp_path):
    """An app with two logged-in annotators, each holding an open task on a different image."""
    app, data, db_url = make_app(tmp_path, n_images=4, per_image=3, ratings_per_item=1)
    a, b = Annotator(app, "alice").login_and_consent(), Annotator(app, "bob").login_and_consent()
    task_a, page_a = a.open_task()
    task_b, page_b = b.open_task()
    return app, a, b, (task_a, page_a), (task_b, page_b)


# --------------------------------------------------------------------------- IDOR

def test_annotator_cannot_read_or_write_another_annotators_work(round_):
    app, a, b, (task_a, page_a), (task_b, page_b) = round_
    assert a.client.get(f"/task/{task_b}").status_code == 404
    assert "action" not in a.client.get(f"/task/{task_b}").text
    # A posts a complete, well-formed form for B's task, with A's own valid CSRF token
    form = Annotator.fill(page_b) | {"csrf_token": hidden_field(page_a, "csrf_token")}
    assert a.post(task_b, "ratings", form).status_code == 404
    assert count(app.state.db, Rating) == 0
    # B's image is not A's to fetch; A's own is
    image_b = page_b.split('src="/images/')[1].split('"')[0]
    image_a = page_a.split('src="/images/')[1].split('"')[0]
    assert a.client.get(f"/images/{image_b}").status_code == 404
    assert a.client.get(f"/images/{image_a}").status_code == 200
    # item keys are display positions within the posted task (no row ids): B's keys in A's form
    # name A's own items, and nothing of B's changes
    smuggled = Annotator.fill(page_a) | {f"rating_{k}": "1" for k in item_keys(page_b)}
    assert a.post(task_a, "ratings", smuggled).status_code == 303
    with app.state.db.read() as s:
        stored = list(s.scalars(select(Rating)))
    assert {r.task_id for r in stored} == {task_a}
    # no session at all: 401 everywhere
    anon = TestClient(app, follow_redirects=False)
    assert anon.get(f"/task/{task_a}").status_code == 401
    assert anon.get(f"/images/{image_a}").status_code == 401
    assert anon.get("/login/not-a-real-token").status_code == 401


# --------------------------------------------------------------------------- admin token

ADMIN_ENDPOINTS = [("GET", "/admin"), ("GET", "/admin/stats.json"), ("GET", "/admin/export.zip"),
                   ("POST", "/admin/invite"), ("POST", "/admin/annotators/1/exclude")]


@pytest.mark.parametrize("method, path", ADMIN_ENDPOINTS)
def test_admin_endpoints_need_the_admin_token(round_, method, path):
    app, a, *_ = round_
    anon = TestClient(app, follow_redirects=False)
    data = {"names": "mallory"} if path == "/admin/invite" else {}
    assert anon.request(method, path, data=data).status_code == 401
    assert a.client.request(method, path, data=data).status_code == 401  # an annotator session is no admin
    assert anon.request(method, path, data=data, headers={"Authorization": "Bearer wrong-token-000000000"}
                        ).status_code == 403
    anon.cookies.set("morale_admin", "forged-session-value")
    assert anon.request(method, path, data=data).status_code == 403
    with app.state.db.read() as s:
        assert "mallory" not in set(s.scalars(select(AnnotatorRow.name)))
    ok = TestClient(app, follow_redirects=False).request(method, path, data=data, headers=ADMIN)
    assert ok.status_code in (200, 303, 409)  # 409: export with nothing complete yet


# --------------------------------------------------------------------------- CSRF

def test_posts_without_a_valid_csrf_token_are_rejected(round_):
    app, a, b, (task_a, page_a), _ = round_
    form = Annotator.fill(page_a)
    for bad in ({k: v for k, v in form.items() if k != "csrf_token"}, form | {"csrf_token": "0" * 64},
                form | {"csrf_token": hidden_field(b.page(b.open_task()[0]), "csrf_token")}):  # another browser's
        r = a.post(task_a, "ratings", bad)
        assert r.status_code == 403 and "CSRF" in r.text
    assert count(app.state.db, Rating) == 0 and count(app.state.db, Submission) == 0
    # a cross-site form cannot carry the cookie-bound token: same token, other cookie jar
    stranger = TestClient(app, follow_redirects=False)
    stranger.cookies.set("morale_session", a.token)
    assert stranger.post(f"/task/{task_a}/ratings", data=form).status_code == 403
    assert stranger.post("/consent", data={"agree": "yes", "csrf_token": form["csrf_token"]}).status_code == 403
    assert stranger.post("/login", data={"token": a.token}).status_code == 403
    # admin forms authenticated by cookie need it too (Bearer calls are exempt: browsers never send that header)
    admin = TestClient(app, follow_redirects=False)
    page = admin.get("/admin/login").text
    admin.post("/admin/login", data={"token": ADMIN_TOKEN, "csrf_token": hidden_field(page, "csrf_token")})
    assert admin.post("/admin/invite", data={"names": "eve"}).status_code == 403
    assert a.post(task_a, "ratings", form).status_code == 303  # the genuine form still works


# --------------------------------------------------------------------------- XSS

def test_text_is_escaped_everywhere(tmp_path):
    payload = "<script>alert('x')</script>"
    texts = {f"img0-s{j}": f"{payload} action {j}" for j in range(3)}
    app, _, _ = make_app(tmp_path, n_images=1, per_image=3, scores={"img0-s0": 3.0, "img0-s1": 3.0, "img0-s2": 3.0},
                         dataset_kwargs={"texts": texts, "setting": '"><img src=x onerror=alert(1)>'})
    writer = Annotator(app, "writer").login_and_consent()
    task_id, page = writer.open_task()
    assert "<script>" not in page and "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; action 0" in page
    assert "<img src=x" not in page and "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in page
    csp = writer.client.get(f"/task/{task_id}").headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp  # no script may run at all
    writer.finish_task(task_id, page, add="<b onmouseover=alert(2)>stored</b> attack on the next rater")
    reader = Annotator(app, "reader").login_and_consent()
    _, page = reader.open_task()
    assert "&lt;b onmouseover=alert(2)&gt;stored&lt;/b&gt;" in page and "<b onmouseover" not in page
    admin = TestClient(app).get("/admin", headers=ADMIN).text
    assert "<script>" not in admin


def test_security_headers_and_cookie_flags(round_):
    app, a, *_ = round_
    r = TestClient(app, follow_redirects=False).get("/")
    assert r.headers["x-frame-options"] == "DENY" and r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"
    login = TestClient(app, follow_redirects=False).get(f"/login/{a.token}")
    cookie = login.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
    with app.state.db.read() as s:  # only a hash of the token is stored
        assert a.token not in set(s.scalars(select(AnnotatorRow.token_hash)))


# --------------------------------------------------------------------------- validation

@pytest.mark.parametrize("field, value, message", [
    ("rating", "6", "is not an integer from 1 to 5"), ("rating", "0", "is not an integer from 1 to 5"),
    ("rating", "2.5", "is not an integer from 1 to 5"), ("rating", "abc", "is not an integer from 1 to 5"),
    ("rating", "", "choose a rating from 1"), ("rating", None, "choose a rating from 1"),
    ("modality", "video", "is not one of text, image, both"), ("modality", None, "choose the modality"),
])
def test_ratings_and_modalities_are_validated_on_the_server(round_, field, value, message):
    app, a, _, (task_a, page_a), _ = round_
    form = Annotator.fill(page_a)
    key = f"{field}_{item_keys(page_a)[1]}"
    if value is None:
        del form[key]
    else:
        form[key] = value
    r = a.post(task_a, "ratings", form)
    assert r.status_code == 422 and "Scenario 2: " in r.text and message in r.text
    assert count(app.state.db, Rating) == 0 and count(app.state.db, Submission) == 0
    assert a.post(task_a, "ratings", Annotator.fill(page_a)).status_code == 303  # fixed form is accepted


def test_client_token_and_new_scenario_are_validated(round_):
    app, a, _, (task_a, page_a), _ = round_
    form = Annotator.fill(page_a)
    assert a.post(task_a, "ratings", {k: v for k, v in form.items() if k != "client_token"}).status_code == 400
    assert a.post(task_a, "ratings", form | {"client_token": "x"}).status_code == 400
    # get to the add step: every item agrees with the model (scores 3, ratings 3)
    assert a.post(task_a, "ratings", form).status_code == 303
    page = a.page(task_a)
    assert 'id="add-form"' in page
    existing = re.search(r"<li>(action \d in scene \d)</li>", page).group(1)
    for text, message in (("", "at least 5 characters"), ("x" * 301, "under 300 characters"),
                          (existing.upper(), "already has that scenario")):
        r = a.post(task_a, "scenario", Annotator.fill(page, scenario=text))
        assert r.status_code == 422 and message in r.text
    assert count(app.state.db, Scenario, Scenario.created_by.is_not(None)) == 0


# --------------------------------------------------------------------------- idempotency and atomicity

def test_a_retried_submission_is_stored_once(round_):
    app, a, _, (task_a, page_a), _ = round_
    form = Annotator.fill(page_a)
    first, again = a.post(task_a, "ratings", form), a.post(task_a, "ratings", form)
    assert first.status_code == again.status_code == 303 and first.headers["location"] == again.headers["location"]
    db = app.state.db
    n_items = len(set(item_keys(page_a)) - set(canary_answers(page_a)))
    assert count(db, Rating) == n_items and count(db, Submission) == 1
    # the same post racing itself from 8 threads: still one submission
    assert a.post(task_a, "scenario", Annotator.fill(a.page(task_a), skip="1")).status_code == 303
    task_id, page = a.open_task()
    form = Annotator.fill(page)
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda _: a.post(task_id, "ratings", form).status_code, range(8)))
    assert codes == [303] * 8
    assert count(db, Submission) == 3 and count(db, Rating, Rating.task_id == task_id) == len(item_keys(page))
    # a reused token on a different step is refused, not silently applied
    r = a.post(task_id, "scenario", Annotator.fill(a.page(task_id)) | {"client_token": form["client_token"],
                                                                      "scenario": "a totally new action here"})
    assert r.status_code == 409


def test_a_submission_is_one_transaction(round_, monkeypatch):
    app, a, _, (task_a, page_a), _ = round_
    calls = []

    def failing(*args, **kw):  # fail while writing the second rating of the submission
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk on fire")
        return False

    monkeypatch.setattr(workflow, "is_flagged", failing)
    form = Annotator.fill(page_a)
    assert a.post(task_a, "ratings", form).status_code == 500
    db = app.state.db
    assert count(db, Rating) == 0 and count(db, Submission) == 0
    with db.read() as s:
        assert s.get(Task, task_a).stage == "rate"
    monkeypatch.undo()
    assert a.post(task_a, "ratings", form).status_code == 303  # the same post, retried, now succeeds
    assert count(db, Rating) == len(item_keys(page_a))


# --------------------------------------------------------------------------- durability

def _annotate_until_stopped(base_url: str, token: str, acked: list, stop: threading.Event,
                            max_images: int = 1000) -> None:
    """Rate image after image; record ((task id, item key), rating) only once the server answered 303."""
    with httpx.Client(base_url=base_url, trust_env=False, timeout=10) as client:
        try:
            r = client.get(f"/login/{token}", follow_redirects=True)
            client.post("/consent", data={"agree": "yes", "csrf_token": hidden_field(r.text, "csrf_token")})
            n = 0
            while not stop.is_set() and n < max_images:
                r = client.get("/task", follow_redirects=True)
                path, page = r.url.path, r.text
                if 'id="rate-form"' in page:
                    n += 1
                    form = Annotator.fill(page, lambda key: (1 + (n + int(key[1:])) % 5, "image"))
                    if client.post(f"{path}/ratings", data=form).status_code != 303:
                        return
                    canaries = canary_answers(page)
                    task_id = int(path.rsplit("/", 1)[-1])
                    acked.extend(((task_id, k[len("rating_"):]), int(v)) for k, v in form.items()
                                 if k.startswith("rating_") and k[len("rating_"):] not in canaries)
                    page = client.get(path).text
                elif 'id="add-form"' not in page and 'id="reconfirm-form"' not in page:
                    return  # nothing left
                while 'id="add-form"' in page or 'id="reconfirm-form"' in page:  # a pending step
                    step = "scenario" if 'id="add-form"' in page else "reconfirm"
                    client.post(f"{path}/{step}", data=Annotator.fill(page) | {"skip": "1"})
                    page = client.get(path).text
        except httpx.TransportError:
            return  # the server was killed under us


def assignments_by_item_key(db) -> dict[tuple[int, str], int]:
    """(task id, form key) -> assignment id: what an acknowledged form answered, in rows."""
    with db.read() as s:
        return {(task.id, item.key): item.assignment_id
                for task in s.scalars(select(Task)) for item in workflow.task_items(s, task)}


def test_acknowledged_submissions_survive_a_killed_server(tmp_path):
    data = make_dataset(tmp_path / "data", n_images=60, per_image=3)
    pred = write_predictions(tmp_path / "pred.parquet", uniform_scores(60, 3))
    db_path = tmp_path / "morale.sqlite"
    server = ServerProcess(data, pred, str(db_path), ADMIN_TOKEN, "--canary-rate", "0.3",
                           log=tmp_path / "server.log").start()
    db = Database(f"sqlite:///{db_path}")
    tokens = [workflow.invite(db, f"ann{i}") for i in range(4)]
    acked: list[tuple[int, int]] = []
    stop = threading.Event()
    threads = [threading.Thread(target=_annotate_until_stopped, args=(server.base_url, t, acked, stop))
               for t in tokens]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while len(acked) < 40 and time.monotonic() < deadline:
        time.sleep(0.02)
    server.kill()  # SIGKILL mid-round: requests are in flight
    stop.set()
    for t in threads:
        t.join(15)
    assert len(acked) >= 40, (tmp_path / "server.log").read_text()[-2000:]
    with db.read() as s:
        stored = dict(s.execute(select(Rating.assignment_id, Rating.initial_rating)).all())
        assert s.connection().exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
    assignment_of = assignments_by_item_key(db)
    lost = [pair for pair in acked if stored.get(assignment_of.get(pair[0])) != pair[1]]
    assert lost == []  # nothing acknowledged was lost
    db.dispose()
    # the restarted server carries on with the same DB, sessions and forms
    server2 = ServerProcess(data, pred, str(db_path), ADMIN_TOKEN, port=None, log=tmp_path / "server2.log").start()
    try:
        more: list[tuple[int, int]] = []
        _annotate_until_stopped(server2.base_url, tokens[1], more, threading.Event(), max_images=2)
        assert len(more) >= 3
        with httpx.Client(base_url=server2.base_url, trust_env=False, timeout=10) as client:
            stats = client.get("/admin/stats.json", headers=ADMIN).json()
        assert stats["progress"]["ratings"] == len(stored) + len(more)
    finally:
        server2.stop()
