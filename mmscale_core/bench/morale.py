"""``mmscale bench morale``: concurrent annotators against a real server on loopback, over SQLite.

The server is ``mmscale morale serve`` in a subprocess on 127.0.0.1 (free
port; nothing else is contacted). N annotators (default 50) run concurrently,
each through the real pages: log in, consent, then image after image: rate
every scenario (answering canaries as instructed), confirm flagged ratings,
skip or add a scenario; until each has at least R (default 20) acknowledged
ratings. A share of rating posts is sent twice with the same client token
(a retry after a lost response).

Checked afterwards against the database: every acknowledged rating is stored
with the acknowledged value (lost = 0), there is exactly one row per
acknowledged assignment and one submission per acknowledged client token
(duplicated = 0). Latency percentiles are per request, measured client-side.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mmscale_core.morale.client import checked_answers, hidden_field, rating_form, stage_of

MAX_ANNOTATORS, MAX_RATINGS = 200, 200


# --------------------------------------------------------------------------- the load

@dataclass
class LoadRecord:
    # (task id, form key) -> (who, rating, modality); ``verify`` maps keys to assignments
    acknowledged: dict[tuple[int, str], tuple[str, int, str]] = field(default_factory=dict)
    client_tokens: set[str] = field(default_factory=set)
    latencies: dict[str, list[float]] = field(default_factory=lambda: {"submit": [], "all": []})
    retries: int = 0
    retry_failures: int = 0
    errors: list[str] = field(default_factory=list)


async def _request(client, record: LoadRecord, kind: str, method: str, url: str, **kw):
    t0 = time.perf_counter()
    response = await client.request(method, url, **kw)
    dt = time.perf_counter() - t0
    record.latencies["all"].append(dt)
    if kind == "submit":
        record.latencies["submit"].append(dt)
    return response


async def run_annotator(base_url: str, name: str, token: str, target: int, record: LoadRecord,
                        rng: random.Random, retry_share: float = 0.1, add_share: float = 0.1) -> int:
    import httpx

    got = 0
    async with httpx.AsyncClient(base_url=base_url, trust_env=False, timeout=120) as client:
        r = await _request(client, record, "page", "GET", f"/login/{token}", follow_redirects=True)
        if stage_of(r.text) != "finished" and "/consent" in str(r.url):
            await _request(client, record, "page", "POST", "/consent", data={
                "agree": "yes", "csrf_token": hidden_field(r.text, "csrf_token")})
        while got < target:
            r = await _request(client, record, "page", "GET", "/task", follow_redirects=True)
            stage = stage_of(r.text)
            if stage == "finished":
                record.errors.append(f"{name}: pool exhausted after {got} ratings")
                break
            task_url = str(r.url.path)
            while stage in ("rate", "reconfirm", "add"):
                page = r.text
                if stage == "rate":
                    data, answers = rating_form(page, rng)
                    post = await _request(client, record, "submit", "POST", f"{task_url}/ratings", data=data)
                    if post.status_code != 303:
                        record.errors.append(f"{name}: rating post answered {post.status_code}")
                        return got
                    record.client_tokens.add(data["client_token"])
                    task_id = int(task_url.rsplit("/", 1)[-1])
                    for key, (rating, modality) in answers.items():
                        record.acknowledged[(task_id, key)] = (name, rating, modality)
                    got += len(answers)
                    if rng.random() < retry_share:  # the response was "lost": send the same post again
                        record.retries += 1
                        again = await _request(client, record, "submit", "POST", f"{task_url}/ratings", data=data)
                        record.retry_failures += again.status_code != 303
                elif stage == "reconfirm":
                    data = {"csrf_token": hidden_field(page, "csrf_token"),
                            "client_token": hidden_field(page, "client_token")}
                    for key, (rating, modality) in checked_answers(page).items():
                        data[f"rating_{key}"], data[f"modality_{key}"] = rating, modality
                    post = await _request(client, record, "submit", "POST", f"{task_url}/reconfirm", data=data)
                else:
                    data = {"csrf_token": hidden_field(page, "csrf_token"),
                            "client_token": hidden_field(page, "client_token")}
                    if rng.random() < add_share:
                        data["scenario"] = f"{name} proposes action {secrets.token_hex(4)} in this scene"
                    else:
                        data["skip"] = "1"
                    post = await _request(client, record, "submit", "POST", f"{task_url}/scenario", data=data)
                if post.status_code != 303:
                    record.errors.append(f"{name}: {stage} post answered {post.status_code}")
                    return got
                r = await _request(client, record, "page", "GET", task_url)
                stage = stage_of(r.text)
    return got


def make_bench_dataset(root: Path, n_images: int, per_image: int, seed: int = 0) -> tuple[Path, Path]:
    """A synthetic release-format pool (unrated) and a predictions parquet for it."""
    import json

    import pandas as pd
    from PIL import Image

    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows, preds = [], []
    for i in range(n_images):
        image_id = f"bench{i:04d}"
        Image.new("RGB", (32, 32), tuple(int(c) for c in rng.integers(0, 255, 3))).save(
            root / "images" / f"{image_id}.png")
        for j in range(per_image):
            sid = f"{image_id}-{j}"
            rows.append({"image_id": image_id, "scenario_id": sid, "setting": f"scene {i}",
                         "scenario": f"action {j} in scene {i}", "normbank_label": None,
                         "ratings": [], "modalities": [], "annotators": []})
            preds.append({"scenario_id": sid, "image_id": image_id, "split": "train",
                          "score": 0.0, "calibrated_score": float(rng.uniform(1, 5)), "modality_pred": "both"})
    (root / "scenarios.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    pred_path = root.parent / "predictions.parquet"
    pd.DataFrame(preds).to_parquet(pred_path, index=False)
    return root, pred_path


def verify(db_url: str, record: LoadRecord) -> dict[str, int]:
    """Lost / duplicated counts: acknowledged answers against the rows in the database."""
    from sqlalchemy import func, select

    from mmscale_core.morale.db import Annotator, Database, Rating, Submission, Task
    from mmscale_core.morale.workflow import task_items

    db = Database(db_url)
    try:
        with db.read() as session:
            rows = session.execute(select(Rating.assignment_id, Annotator.name, Rating.initial_rating,
                                          Rating.initial_modality)
                                   .join(Annotator, Annotator.id == Rating.annotator_id)).all()
            submissions = session.scalar(select(func.count()).select_from(Submission)
                                         .where(Submission.kind == "ratings"))
            assignment_of = {}
            for task in session.scalars(select(Task).where(Task.id.in_({t for t, _ in record.acknowledged}))):
                for item in task_items(session, task):
                    assignment_of[(task.id, item.key)] = item.assignment_id
    finally:
        db.dispose()
    acknowledged = {assignment_of.get(k, -1): v for k, v in record.acknowledged.items()}
    stored: dict[int, list[tuple]] = {}
    for assignment_id, name, rating, modality in rows:
        stored.setdefault(assignment_id, []).append((name, rating, modality))
    lost = sum(1 for aid, ans in acknowledged.items() if ans not in stored.get(aid, []))
    duplicated = sum(len(v) - 1 for v in stored.values()) + max(0, submissions - len(record.client_tokens))
    unacknowledged = len(set(stored) - set(acknowledged))
    return {"acknowledged": len(record.acknowledged), "stored": len(rows), "lost": lost,
            "duplicated": duplicated, "stored_unacknowledged": unacknowledged,
            "submissions": int(submissions)}


def _percentiles(values: list[float]) -> str:
    if not values:
        return "n/a"
    ms = np.asarray(values) * 1000
    return (f"p50 {np.percentile(ms, 50):7.1f} ms   p95 {np.percentile(ms, 95):7.1f} ms   "
            f"max {ms.max():7.1f} ms   (n={ms.size})")


async def _load(base_url: str, people: list[tuple[str, str]], target: int, seed: int,
                record: LoadRecord) -> list[int]:
    tasks = [run_annotator(base_url, name, token, target, record, random.Random(seed * 1000 + i))
             for i, (name, token) in enumerate(people)]
    return await asyncio.gather(*tasks)


def run_bench(annotators: int = 50, ratings: int = 20, per_image: int = 4, time_limit: float = 300.0,
              seed: int = 0, workdir: str | None = None) -> dict:
    from mmscale_core.morale.db import Database
    from mmscale_core.morale.server import ServerProcess
    from mmscale_core.morale.workflow import invite

    annotators = max(1, min(annotators, MAX_ANNOTATORS))
    ratings = max(1, min(ratings, MAX_RATINGS))
    with tempfile.TemporaryDirectory(prefix="morale-bench-", dir=workdir) as tmp:
        tmp_path = Path(tmp)
        # Enough pool that the 3-per-scenario cap never starves the run: 2x the ratings needed.
        n_images = max(10, -(-2 * annotators * ratings // (3 * per_image)))
        data, predictions = make_bench_dataset(tmp_path / "data", n_images, per_image, seed)
        db_url = f"sqlite:///{tmp_path / 'morale.sqlite'}"
        admin_token = secrets.token_urlsafe(24)
        server = ServerProcess(data, predictions, db_url, admin_token, "--seed", str(seed),
                               "--max-items", str(per_image), log=tmp_path / "server.log")
        server.start()
        try:
            db = Database(db_url)
            people = [(f"bench{i:03d}", invite(db, f"bench{i:03d}")) for i in range(annotators)]
            db.dispose()
            record = LoadRecord()
            t0 = time.perf_counter()
            try:
                got = asyncio.run(asyncio.wait_for(_load(server.base_url, people, ratings, seed, record),
                                                   time_limit))
            except asyncio.TimeoutError:
                got = []
                record.errors.append(f"time limit of {time_limit:.0f} s reached")
            wall = time.perf_counter() - t0
        finally:
            server.stop()
        result = verify(db_url, record)
    result.update(annotators=annotators, target=ratings, wall_s=wall, retries=record.retries,
                  retry_failures=record.retry_failures, errors=record.errors,
                  reached_target=sum(1 for g in got if g >= ratings), latencies=record.latencies,
                  port=server.port)
    return result


def format_report(res: dict) -> str:
    ok = res["lost"] == 0 and res["duplicated"] == 0 and not res["errors"] and res["retry_failures"] == 0
    lines = [
        f"MORALE load test: {res['annotators']} concurrent annotators x {res['target']} ratings, "
        f"SQLite (WAL, synchronous=FULL), server on 127.0.0.1:{res['port']}",
        "  closed loop: every annotator posts again as soon as answered (no reading time), so latency "
        "includes queueing",
        f"  annotators reaching {res['target']} ratings: {res['reached_target']}/{res['annotators']}",
        f"  acknowledged ratings:  {res['acknowledged']:6d}   (rating submissions {res['submissions']}, "
        f"same-token retries {res['retries']}, retries not acknowledged {res['retry_failures']})",
        f"  stored ratings:        {res['stored']:6d}",
        f"  lost:                  {res['lost']:6d}   (target 0)",
        f"  duplicated:            {res['duplicated']:6d}   (target 0)",
        f"  rating/reconfirm/add posts: {_percentiles(res['latencies']['submit'])}",
        f"  all requests:               {_percentiles(res['latencies']['all'])}",
        f"  wall {res['wall_s']:.1f} s, {res['acknowledged'] / max(res['wall_s'], 1e-9):.0f} ratings/s, "
        f"{len(res['latencies']['all']) / max(res['wall_s'], 1e-9):.0f} requests/s",
    ]
    lines += [f"  error: {e}" for e in res["errors"][:10]]
    lines.append("  result: " + ("PASS (zero lost, zero duplicated)" if ok else "FAIL"))
    return "\n".join(lines)


def _cmd(args: argparse.Namespace) -> int:
    res = run_bench(args.annotators, args.ratings, time_limit=args.time_limit, seed=args.seed)
    print(format_report(res))
    ok = res["lost"] == 0 and res["duplicated"] == 0 and not res["errors"] and res["retry_failures"] == 0
    return 0 if ok else 1


def register_bench(subparsers) -> None:
    p = subparsers.add_parser("morale", help="MORALE load test: concurrent annotators on loopback, SQLite",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--annotators", type=int, default=50, help=f"concurrent annotators (max {MAX_ANNOTATORS})")
    p.add_argument("--ratings", type=int, default=20, help=f"ratings per annotator (max {MAX_RATINGS})")
    p.add_argument("--time-limit", type=float, default=300.0, help="stop the load after this many seconds")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd)
