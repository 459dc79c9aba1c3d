"""The MORALE web app: server-rendered pages for annotators and the admin (FastAPI + Jinja2).

Security model, each rule tested in ``tests/test_morale_security.py``:

* annotators authenticate with a per-annotator secret token (invitation link
  ``/login/<token>`` or the login form), kept in an HttpOnly SameSite cookie;
  the DB stores only its SHA-256. Every task, image and submission is looked
  up *through* the annotator, so another annotator's task is a 404;
* the admin authenticates with the admin token (``Authorization: Bearer`` or
  the login form, which starts a server-side session: the HttpOnly cookie holds a
  random token, the DB its hash and expiry, logout deletes it): no credential is
  401, a wrong one 403; failed attempts are throttled per client and overall
  (429), and a low-entropy admin token is refused at start;
* every form carries a CSRF token, HMAC(secret, csrf cookie); a post without
  it or with a wrong one is 403 (Bearer-authenticated admin calls are exempt:
  browsers never attach that header on their own);
* Jinja2 autoescaping on every template, and a Content-Security-Policy with no
  script source at all (the pages need no JavaScript);
* ratings, modalities and new scenarios are validated on the server (422 with
  a message per field); submissions are single transactions with idempotent
  client tokens (see :mod:`mmscale_core.morale.workflow`);
* every error, a malformed URL or a database that cannot write included, is the
  error page with the security headers (a database fault is a 503 that says the
  answer was not recorded); invitation links are built from the configured
  public URL, never from the request's Host header; a link opened while signed
  in as someone else asks before switching.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import logging
import math
import os
import random
import secrets
import shutil
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Mapping
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import delete, func, select
from sqlalchemy.exc import OperationalError
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.staticfiles import StaticFiles

from mmscale_core.errors import MmscaleError
from mmscale_core.morale.assignment import LIKERT_LABELS, AssignmentPolicy, assign_next
from mmscale_core.morale.db import AdminSession, Annotator, Database, Task, annotator_by_token_hash, utcnow
from mmscale_core.morale.discrepancy import DEFAULT_DELTA, reconfirmation_stats
from mmscale_core.morale.pool import (
    DEFAULT_MIN_COVERAGE, check_coverage, check_scores, load_pool, read_predictions, sync_pool,
)
from mmscale_core.morale.queries import annotators_frame, canaries_frame, progress, ratings_frame
from mmscale_core.morale.screening import HIGH_VARIANCE_SD, ScreeningRules, high_variance_items, screen_annotators
from mmscale_core.morale import workflow
from mmscale_core.morale.workflow import Conflict, FormError, NotFound

PACKAGE_DIR = Path(__file__).resolve().parent
TEMPLATE_DIR = PACKAGE_DIR / "templates"
STATIC_DIR = PACKAGE_DIR / "static"

SESSION_COOKIE = "morale_session"
ADMIN_COOKIE = "morale_admin"
CSRF_COOKIE = "morale_csrf"
MAX_FORM_FIELDS = 200
MIN_ADMIN_TOKEN_CHARS, MIN_ADMIN_TOKEN_BITS = 16, 64
DEFAULT_PUBLIC_URL = "http://127.0.0.1:8000"
DB_FAULT = ("The server cannot save right now; your answer was not recorded. Please try again in a minute "
            "(go back: your page still holds your answers).")
log = logging.getLogger("mmscale.morale")

MODALITY_DEFINITIONS = {  # paper sec 11, shown to annotators verbatim
    "text": "Your decision is mainly based on the written scenario; the image provides little or no "
            "relevant moral information.",
    "image": "Your decision is mainly based on visual cues.",
    "both": "Your decision depends on how the text scenario interacts with the visual scene; removing "
            "either modality would change your judgment.",
}

SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'none'; img-src 'self'; style-src 'self'; form-action 'self'; "
                                 b"frame-ancestors 'none'; base-uri 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]


@dataclass(frozen=True)
class MoraleSettings:
    """Knobs of a round: the discrepancy threshold, the assignment policy, the screening rules."""

    delta: float = DEFAULT_DELTA
    policy: AssignmentPolicy = field(default_factory=AssignmentPolicy)
    rules: ScreeningRules = field(default_factory=ScreeningRules)
    seed: int | None = None
    secure_cookies: bool = False
    title: str = "MORALE"
    min_prediction_coverage: float = DEFAULT_MIN_COVERAGE
    public_url: str = DEFAULT_PUBLIC_URL  # where annotators reach the server; invitation links use it
    admin_session_hours: float = 12.0
    admin_failures_per_client: int = 5  # failed admin logins per client within the window, then 429
    admin_failures_overall: int = 50  # ... and from all clients together (a distributed guess)
    admin_failure_window_s: float = 600.0


class PageError(Exception):
    """An error shown as a page with a status code (and, for 401 on admin pages, a login form)."""

    def __init__(self, status: int, message: str, template: str = "error.html"):
        self.status, self.message, self.template = status, message, template
        super().__init__(message)


class SecurityHeaders:
    """Pure ASGI middleware adding the security headers to every HTTP response.

    An exception no handler took (a bug) still gets the error page and the headers here, then
    propagates so that the server logs it.
    """

    def __init__(self, app, error_page: Callable[[], str] | None = None):
        self.app, self.error_page = app, error_page

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def send_with_headers(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + SECURITY_HEADERS
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            if not started and self.error_page is not None:
                body = self.error_page().encode()
                await send_with_headers({"type": "http.response.start", "status": 500, "headers": [
                    (b"content-type", b"text/html; charset=utf-8"), (b"content-length", str(len(body)).encode()),
                    (b"cache-control", b"no-store")]})
                await send({"type": "http.response.body", "body": body})
            raise


class FailureThrottle:
    """Failed admin logins in a sliding window, per client and overall; blocks further tries when full."""

    def __init__(self, per_client: int, overall: int, window_s: float, clock: Callable[[], float] = time.monotonic):
        self.per_client, self.overall, self.window_s, self.clock = per_client, overall, window_s, clock
        self._events: collections.deque[tuple[float, str]] = collections.deque()
        self._lock = threading.Lock()

    def _prune(self, now: float) -> None:
        while self._events and self._events[0][0] <= now - self.window_s:
            self._events.popleft()

    def retry_after(self, client: str) -> float | None:
        """Seconds until ``client`` may try again, or None when it may try now."""
        with self._lock:
            now = self.clock()
            self._prune(now)
            mine = [t for t, c in self._events if c == client]
            if len(mine) >= self.per_client:
                return mine[0] + self.window_s - now
            if len(self._events) >= self.overall:
                return self._events[0][0] + self.window_s - now
            return None

    def failed(self, client: str) -> None:
        with self._lock:
            self._events.append((self.clock(), client))


def token_bits(token: str) -> float:
    """A crude entropy estimate: length x Shannon entropy of the token's own character distribution."""
    counts = collections.Counter(token)
    n = len(token)
    return -n * sum(c / n * math.log2(c / n) for c in counts.values()) if n else 0.0


def check_admin_token(token: str | None) -> str:
    if not token or len(token) < MIN_ADMIN_TOKEN_CHARS:
        raise MmscaleError(f"the admin token must have at least {MIN_ADMIN_TOKEN_CHARS} characters")
    if token_bits(token) < MIN_ADMIN_TOKEN_BITS:
        raise MmscaleError(f"the admin token is too easy to guess (about {token_bits(token):.0f} bits, needs "
                           f"{MIN_ADMIN_TOKEN_BITS}); use a random one, e.g. from "
                           "`python -c 'import secrets; print(secrets.token_urlsafe(24))'`")
    return token


def _hmac(secret: str, message: str) -> str:
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def _template_env() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATE_DIR), autoescape=select_autoescape(["html"],
                      default_for_string=True, default=True), trim_blocks=True, lstrip_blocks=True)
    env.filters["score"] = lambda x: "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2f}"
    env.filters["pct"] = lambda x: "n/a" if x is None else f"{100 * x:.1f}%"
    env.filters["path"] = lambda s: quote(str(s), safe="")
    env.filters["num"] = lambda x: f"{x:g}"
    env.filters["signed"] = lambda x: "n/a" if x is None else f"{x:+.3f}"
    return env


def create_app(data_dir: str | os.PathLike, predictions: str | os.PathLike | Mapping[str, float] | None,
               db_url: str, admin_token: str, *, settings: MoraleSettings | None = None,
               accept_dataset_change: bool = False) -> FastAPI:
    """Build the app: validate the dataset and predictions, sync them into the DB, wire the pages.

    ``predictions`` None serves without the discrepancy step on purpose; a file or mapping must
    cover ``settings.min_prediction_coverage`` of the pool. ``app.state.sync`` holds the counts
    (scenarios, with_prediction, added, retired) for the operator.
    """
    settings = settings or MoraleSettings()
    check_admin_token(admin_token)
    pool = load_pool(data_dir)
    if predictions is None:
        scores = None
    else:
        where = "predictions" if isinstance(predictions, Mapping) else str(predictions)
        scores = (check_scores(dict(predictions), where) if isinstance(predictions, Mapping)
                  else read_predictions(predictions))
        check_coverage(pool, scores, settings.min_prediction_coverage, where)
    db = Database(db_url)
    try:
        db.check_writable()
        sync = sync_pool(db, pool, scores, accept_dataset_change=accept_dataset_change)
        db.set_meta("public_url", settings.public_url.rstrip("/"))
    except BaseException:
        db.dispose()
        raise
    secret = db.secret()
    env = _template_env()
    rng: random.Random = random.Random(settings.seed) if settings.seed is not None else random.SystemRandom()
    throttle = FailureThrottle(settings.admin_failures_per_client, settings.admin_failures_overall,
                               settings.admin_failure_window_s)
    public_url = settings.public_url.rstrip("/")

    app = FastAPI(title=settings.title, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.db, app.state.pool, app.state.settings, app.state.sync = db, pool, settings, sync
    app.add_middleware(SecurityHeaders, error_page=lambda: env.get_template("error.html").render(
        status=500, title=settings.title, csrf_token="", message="Something went wrong on the server; "
        "what you just sent may not have been recorded. Go back to your task and check."))
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    # ------------------------------------------------------------------ helpers

    def render(request: Request, name: str, code: int = 200, **ctx: Any) -> HTMLResponse:
        cookie = request.cookies.get(CSRF_COOKIE, "")
        fresh = None
        if len(cookie) < 32:
            fresh = cookie = secrets.token_urlsafe(32)
        ctx.update(csrf_token=_hmac(secret, "csrf:" + cookie), title=settings.title,
                   likert=LIKERT_LABELS, modalities=MODALITY_DEFINITIONS)
        response = HTMLResponse(env.get_template(name).render(**ctx), status_code=code,
                                headers={"cache-control": "no-store"})
        if fresh:
            response.set_cookie(CSRF_COOKIE, fresh, httponly=True, samesite="lax", secure=settings.secure_cookies)
        return response

    def verify_csrf(request: Request, form: Mapping[str, str]) -> None:
        cookie = request.cookies.get(CSRF_COOKIE, "")
        sent = form.get("csrf_token") or ""
        if not cookie or not hmac.compare_digest(str(sent), _hmac(secret, "csrf:" + cookie)):
            raise PageError(403, "CSRF check failed: the form is missing its security token or it does not match "
                                 "this browser session. Reload the page and submit again.")

    def annotator_or_none(request: Request) -> Annotator | None:
        token = request.cookies.get(SESSION_COOKIE)
        if not token:
            return None
        with db.read() as session:
            return annotator_by_token_hash(session, workflow.hash_token(token))

    def require_annotator(request: Request, consented: bool = True) -> Annotator:
        ann = annotator_or_none(request)
        if ann is None:
            raise PageError(401, "Please open the personal link your study coordinator sent you, "
                                 "or enter your access token.", "login.html")
        if ann.excluded_at is not None:
            raise PageError(403, "Your access to this study has ended. Thank you for your participation.")
        if consented and ann.consented_at is None:
            raise PageError(403, "Please read and accept the content notice first: go to /consent.")
        return ann

    def client_of(request: Request) -> str:
        return request.client.host if request.client else "unknown"

    def throttled(request: Request) -> None:
        wait = throttle.retry_after(client_of(request))
        if wait is not None:
            raise PageError(429, f"Too many failed admin logins; try again in {math.ceil(wait / 60)} minute(s).")

    def admin_failed(request: Request, message: str, template: str = "error.html") -> PageError:
        throttle.failed(client_of(request))
        log.warning("failed admin authentication from %s", client_of(request))
        return PageError(403, message, template)

    def admin_auth(request: Request) -> str:
        """'bearer' or 'cookie' for a valid admin; 401 without credentials, 403 wrong, 429 throttled."""
        header = request.headers.get("authorization", "")
        if header:
            throttled(request)
            scheme, _, value = header.partition(" ")
            if scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), admin_token.encode()):
                return "bearer"
            raise admin_failed(request, "Wrong admin token.")
        cookie = request.cookies.get(ADMIN_COOKIE)
        if cookie is None:
            raise PageError(401, "The admin pages need the admin token.", "admin_login.html")
        throttled(request)
        with db.read() as session:
            row = session.get(AdminSession, workflow.hash_token(cookie))
        if row is None or row.expires_at <= utcnow():
            raise admin_failed(request, "Wrong or expired admin session; log in again at /admin/login.")
        return "cookie"

    async def read_form(request: Request) -> dict[str, str]:
        form = await request.form(max_fields=MAX_FORM_FIELDS, max_files=0)
        return {k: v for k, v in form.items() if isinstance(v, str)}

    def login_response(request: Request, token: str, confirm_switch: bool = False) -> Response:
        with db.read() as session:
            ann = annotator_by_token_hash(session, workflow.hash_token(token.strip()))
        if ann is None:
            raise PageError(401, "This access token is not valid. Check the link your coordinator sent you.",
                            "login.html")
        if ann.excluded_at is not None:
            raise PageError(403, "Your access to this study has ended. Thank you for your participation.")
        current = annotator_or_none(request) if confirm_switch else None
        if current is not None and current.id != ann.id:
            # a link of someone else's (perhaps planted by them): switching must be the user's choice
            return render(request, "switch.html", current=current.name, other=ann.name, token=token.strip())
        target = "/task" if ann.consented_at else "/consent"
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(SESSION_COOKIE, token.strip(), httponly=True, samesite="lax",
                            secure=settings.secure_cookies, max_age=180 * 24 * 3600)
        return response

    def task_page(request: Request, ann: Annotator, task_id: int, status: int = 200,
                  errors: Mapping[str, str] | None = None, values: Mapping[str, str] | None = None) -> Response:
        with db.read() as session:
            task = workflow.owned_task(session, ann.id, task_id)
            items = workflow.task_items(session, task)
            setting = workflow.task_setting(session, task)
            n_done = session.scalar(select(func.count()).select_from(Task)
                                    .where(Task.annotator_id == ann.id, Task.stage == "done"))
        ctx = dict(annotator=ann.name, task=task, items=items, setting=setting, errors=errors or {},
                   values=values or {}, client_token=workflow.new_client_token(), n_done=n_done,
                   delta=settings.delta)
        if task.stage == "rate":
            return render(request, "rate.html", status, **ctx)
        if task.stage == "reconfirm":
            return render(request, "reconfirm.html", status, flagged=workflow.flagged_items(items), **ctx)
        if task.stage == "add":
            agreed = [it for it in items if not it.is_canary and it.extra["rating"] is not None
                      and it.extra["rating"].flagged is False]
            return render(request, "add.html", status, agreed=agreed, **ctx)
        if task.stage == "expired":
            raise PageError(409, "This image was handed to someone else after its lease ran out.")
        return render(request, "done.html", status, **ctx)

    def submit(request: Request, task_id: int, form: dict[str, str],
               action: Callable[..., workflow.Outcome]) -> Response:
        verify_csrf(request, form)
        ann = require_annotator(request)
        try:
            action(db, ann.id, task_id, form)
        except FormError as err:
            if "client_token" in err.errors:
                raise PageError(400, err.errors["client_token"]) from None
            return task_page(request, ann, task_id, 422, errors=err.errors, values=form)
        return RedirectResponse(f"/task/{task_id}", status_code=303)

    # ------------------------------------------------------------------ errors

    @app.exception_handler(PageError)
    async def page_error(request: Request, exc: PageError):
        return render(request, exc.template, exc.status, message=exc.message, status=exc.status)

    @app.exception_handler(NotFound)
    async def not_found(request: Request, exc: NotFound):
        return render(request, "error.html", 404, message="There is no such task for you.", status=404)

    @app.exception_handler(Conflict)
    async def conflict(request: Request, exc: Conflict):
        return render(request, "error.html", 409, message=str(exc), status=409)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        return render(request, "error.html", exc.status_code, message=str(exc.detail), status=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        problems = exc.errors()
        if any(p.get("loc", ("",))[0] == "path" for p in problems):
            return render(request, "error.html", 404, status=404, message="There is no such page: the address "
                          "has a malformed number in it. Go back to the start to continue with your task.")
        shown = "; ".join(f"{p['loc'][-1]}: {str(p.get('input'))[:40]!r} is not valid ({p.get('msg', '')})"
                          for p in problems)
        return render(request, "error.html", 422, status=422, message=f"{shown}. Correct the address and reload.")

    @app.exception_handler(OperationalError)
    async def database_fault(request: Request, exc: OperationalError):
        log.error("database fault on %s %s: %s", request.method, request.url.path, " ".join(str(exc.orig).split()))
        return render(request, "error.html", 503, status=503, message=DB_FAULT)

    # ------------------------------------------------------------------ annotator pages

    @app.get("/healthz")
    def healthz():
        try:
            db.check_writable()  # a database that answers reads but refuses writes is not healthy
        except MmscaleError as err:
            return JSONResponse({"ok": False, "error": str(err)}, status_code=503)
        return {"ok": True}

    @app.get("/", response_class=HTMLResponse)
    def index(request: Request):
        ann = annotator_or_none(request)
        if ann is not None and ann.excluded_at is None:
            return RedirectResponse("/task" if ann.consented_at else "/consent", status_code=303)
        return render(request, "login.html", message=None)

    @app.get("/login/{token}")
    def login_link(request: Request, token: str):
        return login_response(request, token, confirm_switch=True)

    @app.post("/login")
    async def login_form(request: Request):
        form = await read_form(request)
        verify_csrf(request, form)
        return await run_in_threadpool(login_response, request, form.get("token", ""))

    @app.post("/logout")
    async def logout(request: Request):
        verify_csrf(request, await read_form(request))
        response = render(request, "login.html", message="You have signed out; nothing more is recorded. "
                                                         "Come back any time with your personal link.")
        response.delete_cookie(SESSION_COOKIE)
        return response

    @app.get("/consent", response_class=HTMLResponse)
    def consent_page(request: Request):
        ann = require_annotator(request, consented=False)
        return render(request, "consent.html", annotator=ann.name)

    @app.post("/consent")
    async def consent(request: Request):
        form = await read_form(request)
        verify_csrf(request, form)
        ann = await run_in_threadpool(require_annotator, request, False)
        if form.get("agree") != "yes":
            raise PageError(422, "To take part, tick the box confirming you have read the notice.")
        await run_in_threadpool(workflow.record_consent, db, ann.id)
        return RedirectResponse("/task", status_code=303)

    @app.get("/task")
    def next_task(request: Request):
        ann = require_annotator(request)
        with db.write() as session:
            task = assign_next(session, session.get(Annotator, ann.id), settings.policy, rng)
            task_id = task.id if task is not None else None
        if task_id is None:
            return render(request, "finished.html", annotator=ann.name)
        return RedirectResponse(f"/task/{task_id}", status_code=303)

    @app.get("/task/{task_id}", response_class=HTMLResponse)
    def show_task(request: Request, task_id: int):
        return task_page(request, require_annotator(request), task_id)

    @app.post("/task/{task_id}/ratings")
    async def post_ratings(request: Request, task_id: int):
        form = await read_form(request)
        action = lambda db_, a, t, f: workflow.submit_ratings(db_, a, t, f, settings.delta)  # noqa: E731
        return await run_in_threadpool(submit, request, task_id, form, action)

    @app.post("/task/{task_id}/reconfirm")
    async def post_reconfirm(request: Request, task_id: int):
        form = await read_form(request)
        return await run_in_threadpool(submit, request, task_id, form, workflow.submit_reconfirm)

    @app.post("/task/{task_id}/scenario")
    async def post_scenario(request: Request, task_id: int):
        form = await read_form(request)
        return await run_in_threadpool(submit, request, task_id, form, workflow.submit_scenario)

    @app.get("/images/{image_id}")
    def image(request: Request, image_id: str):
        path = pool.images.get(image_id)
        try:
            admin_auth(request)
        except PageError:
            ann = require_annotator(request)
            with db.read() as session:
                mine = session.scalar(select(func.count()).select_from(Task)
                                      .where(Task.annotator_id == ann.id, Task.image_id == image_id))
            if not mine:
                path = None
        if path is None:
            raise PageError(404, "No such image for you.")
        return FileResponse(path, headers={"cache-control": "private, max-age=3600"})

    # ------------------------------------------------------------------ admin pages

    def admin_summary() -> dict[str, Any]:
        ratings = ratings_frame(db)
        screening = screen_annotators(annotators_frame(db), ratings, canaries_frame(db), settings.rules)
        return {
            "progress": progress(db, settings.policy.ratings_per_item),
            "reconfirmation": reconfirmation_stats(ratings),
            "annotators": [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
                           for row in screening.to_dict(orient="records")],
            "high_variance_items": high_variance_items(ratings),
            "settings": {"delta": settings.delta, "ratings_per_item": settings.policy.ratings_per_item,
                         "canary_rate": settings.policy.canary_rate, "high_variance_sd": HIGH_VARIANCE_SD},
        }

    @app.get("/admin/login", response_class=HTMLResponse)
    def admin_login_page(request: Request):
        return render(request, "admin_login.html", message=None)

    def start_admin_session() -> str:
        token = secrets.token_urlsafe(32)
        with db.write() as session:
            session.execute(delete(AdminSession).where(AdminSession.expires_at <= utcnow()))
            session.add(AdminSession(token_hash=workflow.hash_token(token),
                                     expires_at=utcnow() + timedelta(hours=settings.admin_session_hours)))
        return token

    def end_admin_session(token: str | None) -> None:
        if token:
            with db.write() as session:
                session.execute(delete(AdminSession).where(AdminSession.token_hash == workflow.hash_token(token)))

    @app.post("/admin/login")
    async def admin_login(request: Request):
        form = await read_form(request)
        verify_csrf(request, form)
        throttled(request)
        if not hmac.compare_digest(form.get("token", "").strip().encode(), admin_token.encode()):
            raise admin_failed(request, "Wrong admin token.", "admin_login.html")
        token = await run_in_threadpool(start_admin_session)
        response = RedirectResponse("/admin", status_code=303)
        response.set_cookie(ADMIN_COOKIE, token, httponly=True, samesite="strict", secure=settings.secure_cookies,
                            max_age=int(settings.admin_session_hours * 3600))
        return response

    @app.post("/admin/logout")
    async def admin_logout(request: Request):
        verify_csrf(request, await read_form(request))
        await run_in_threadpool(end_admin_session, request.cookies.get(ADMIN_COOKIE))
        response = RedirectResponse("/admin/login", status_code=303)
        response.delete_cookie(ADMIN_COOKIE)
        return response

    @app.get("/admin", response_class=HTMLResponse)
    def admin_page(request: Request):
        admin_auth(request)
        return render(request, "admin.html", **admin_summary())

    @app.get("/admin/stats.json")
    def admin_stats(request: Request):
        admin_auth(request)
        return JSONResponse(admin_summary())

    async def admin_form(request: Request) -> dict[str, str]:
        form = await read_form(request)
        if admin_auth(request) == "cookie":
            verify_csrf(request, form)
        return form

    @app.post("/admin/invite")
    async def admin_invite(request: Request):
        form = await admin_form(request)
        names = [n.strip() for n in form.get("names", "").replace(",", "\n").splitlines() if n.strip()]
        if not names:
            raise PageError(422, "Give at least one annotator name (one per line).")
        invited, errors = [], []
        for name in names:
            try:
                token = await run_in_threadpool(workflow.invite, db, name)
            except MmscaleError as err:
                errors.append(str(err))
                continue
            invited.append({"name": name, "token": token, "link": f"{public_url}/login/{token}"})
        return invitations(request, invited, errors)

    def invitations(request: Request, invited: list[dict], errors: list[str]) -> Response:
        if request.headers.get("accept", "").startswith("application/json"):
            return JSONResponse({"invited": invited, "errors": errors}, status_code=422 if errors else 200)
        return render(request, "invited.html", 422 if errors and not invited else 200, invited=invited, errors=errors)

    @app.post("/admin/annotators/{annotator_id}/reissue")
    async def admin_reissue(request: Request, annotator_id: int):
        """A new link for an annotator who lost theirs; the old one stops working."""
        await admin_form(request)
        with db.read() as session:
            ann = session.get(Annotator, annotator_id) if workflow.valid_id(annotator_id) else None
        if ann is None:
            raise PageError(404, f"No annotator {annotator_id}.")
        try:
            token = await run_in_threadpool(workflow.reissue, db, ann.name)
        except MmscaleError as err:
            raise PageError(409, str(err)) from None
        return invitations(request, [{"name": ann.name, "token": token, "link": f"{public_url}/login/{token}"}], [])

    @app.post("/admin/annotators/{annotator_id}/exclude")
    async def admin_exclude(request: Request, annotator_id: int):
        await admin_form(request)
        try:
            await run_in_threadpool(workflow.exclude, db, annotator_id)
        except NotFound:
            raise PageError(404, f"No annotator {annotator_id}.") from None
        return RedirectResponse("/admin", status_code=303)

    @app.get("/admin/export.zip")
    def admin_export(request: Request, min_ratings: int = 3, include_existing: bool = False):
        from mmscale_core.morale.export import export_dataset

        admin_auth(request)
        tmp = Path(tempfile.mkdtemp(prefix="morale-export-"))
        try:
            export_dataset(db, pool.root, tmp / "dataset", min_ratings=min_ratings,
                           include_existing=include_existing, ratings_per_item=settings.policy.ratings_per_item)
        except MmscaleError as err:
            shutil.rmtree(tmp, ignore_errors=True)
            raise PageError(409, str(err)) from None
        archive = tmp / "morale-export.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in sorted((tmp / "dataset").rglob("*")):
                if path.is_file():
                    zf.write(path, Path("morale-export") / path.relative_to(tmp / "dataset"))
        return FileResponse(archive, media_type="application/zip", filename="morale-export.zip",
                            background=BackgroundTask(shutil.rmtree, tmp, ignore_errors=True))

    return app


__all__ = ["MoraleSettings", "create_app", "MODALITY_DEFINITIONS"]
