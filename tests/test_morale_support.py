"""Shared helpers of the MORALE tests (this module holds no tests): a small dataset and
predictions, an app on a fresh SQLite file, and an annotator driving the real pages."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
from PIL import Image
from starlette.testclient import TestClient

from mmscale_core.morale.app import MoraleSettings, create_app
from mmscale_core.morale.assignment import AssignmentPolicy
from mmscale_core.morale.client import canary_answers, hidden_field, item_keys
from mmscale_core.morale.workflow import invite

ADMIN_TOKEN = "admin-token-for-tests-0123456789"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def make_dataset(root: Path, n_images: int = 3, per_image: int = 3, *, rated: bool = False,
                 texts: dict[str, str] | None = None, setting: str | None = None, split: bool = True) -> Path:
    """Images img0..; scenarios img<i>-s<j> (text 'action j in scene i' unless ``texts`` says otherwise)."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    texts = texts or {}
    with open(root / "scenarios.jsonl", "w", encoding="utf-8") as fh:
        for i in range(n_images):
            image_id = f"img{i}"
            Image.new("RGB", (64, 48), (40 * i % 255, 120, 200)).save(root / "images" / f"{image_id}.png")
            for j in range(per_image):
                sid = f"{image_id}-s{j}"
                rec = {"image_id": image_id, "scenario_id": sid, "setting": setting or f"a kitchen number {i}",
                       "scenario": texts.get(sid, f"action {j} in scene {i}"), "normbank_label": [-1, 0, 1][j % 3],
                       "ratings": [2, 4] if rated else [], "modalities": ["text", "both"] if rated else [],
                       "annotators": ["old1", "old2"] if rated else [], "image_source": "synthetic", "qc": "ok"}
                if split:
                    rec["split"] = "test" if i == 0 else "train"
                fh.write(json.dumps(rec) + "\n")
    return root


def write_predictions(path: Path, scores: dict[str, float]) -> Path:
    frame = pd.DataFrame({"scenario_id": list(scores), "image_id": [s.split("-")[0] for s in scores],
                          "split": "train", "score": [v - 3 for v in scores.values()],
                          "calibrated_score": list(scores.values()), "modality_pred": "both"})
    frame.to_parquet(path, index=False)
    return path


def uniform_scores(n_images: int = 3, per_image: int = 3, value: float = 3.0) -> dict[str, float]:
    return {f"img{i}-s{j}": value for i in range(n_images) for j in range(per_image)}


def make_app(tmp: Path, *, scores: dict[str, float] | None = None, n_images: int = 3, per_image: int = 3,
             canary_rate: float = 0.0, dataset_kwargs: dict | None = None, **settings):
    """(app, data_dir, db_url) for a fresh round; ``settings`` go to MoraleSettings / AssignmentPolicy."""
    data = tmp / "data"
    if not (data / "scenarios.jsonl").exists():
        make_dataset(data, n_images, per_image, **(dataset_kwargs or {}))
    pred = write_predictions(tmp / "pred.parquet", scores if scores is not None
                             else uniform_scores(n_images, per_image))
    policy_keys = {"ratings_per_item", "min_items", "max_items", "lease_hours"}
    accept = settings.pop("accept_dataset_change", False)
    policy = AssignmentPolicy(canary_rate=canary_rate, **{k: v for k, v in settings.items() if k in policy_keys})
    rest = {k: v for k, v in settings.items() if k not in policy_keys}
    db_url = f"sqlite:///{tmp / 'morale.sqlite'}"
    app = create_app(data, pred, db_url, ADMIN_TOKEN, settings=MoraleSettings(policy=policy, seed=0, **rest),
                     accept_dataset_change=accept)
    return app, data, db_url


class Annotator:
    """One annotator's browser session on the real pages (cookies included)."""

    def __init__(self, app, name: str, *, client=None, token: str | None = None):
        self.name = name
        self.token = token or invite(app.state.db, name)
        self.client = client or TestClient(app, raise_server_exceptions=False, follow_redirects=False)

    def login_and_consent(self) -> "Annotator":
        r = self.client.get(f"/login/{self.token}", follow_redirects=True)
        assert r.status_code == 200, r.text
        if str(r.url).endswith("/consent"):
            r = self.client.post("/consent", data={"agree": "yes", "csrf_token": hidden_field(r.text, "csrf_token")})
            assert r.status_code == 303, r.text
        return self

    def open_task(self) -> tuple[int | None, str]:
        """(task id, page html); task id None when nothing is left for this annotator."""
        r = self.client.get("/task", follow_redirects=True)
        assert r.status_code == 200, r.text
        match = re.search(r"/task/(\d+)$", str(r.url))
        return (int(match.group(1)) if match else None), r.text

    def page(self, task_id: int) -> str:
        r = self.client.get(f"/task/{task_id}")
        assert r.status_code == 200, r.text
        return r.text

    @staticmethod
    def fill(page: str, answers=None, **fields) -> dict[str, str]:
        """The form of ``page`` with tokens, every item answered (``answers(key)`` -> (rating, modality);
        default 3/both; canaries as instructed) and ``fields`` added or overriding."""
        data = {"csrf_token": hidden_field(page, "csrf_token"), "client_token": hidden_field(page, "client_token")}
        canaries = canary_answers(page)
        for key in item_keys(page):
            rating, modality = canaries.get(key) or (answers(key) if answers else (3, "both"))
            data[f"rating_{key}"], data[f"modality_{key}"] = str(rating), modality
        data.update(fields)
        return data

    def post(self, task_id: int, step: str, data: dict):
        return self.client.post(f"/task/{task_id}/{step}", data=data)

    def finish_task(self, task_id: int, page: str, answers=None, add: str | None = None) -> None:
        """Rate, keep every flagged rating, add ``add`` (or skip): the whole round for one image."""
        r = self.post(task_id, "ratings", self.fill(page, answers))
        assert r.status_code == 303, r.text
        page = self.page(task_id)
        if 'id="reconfirm-form"' in page:
            assert self.post(task_id, "reconfirm", self.fill(page, answers)).status_code == 303
            page = self.page(task_id)
        if 'id="add-form"' in page:
            fields = {"scenario": add} if add else {"skip": "1"}
            assert self.post(task_id, "scenario", {**self.fill(page), **fields}).status_code == 303
            page = self.page(task_id)
        assert 'id="done"' in page

    def work_until_finished(self, max_tasks: int = 50, answers=None) -> list[int]:
        done = []
        for _ in range(max_tasks):
            task_id, page = self.open_task()
            if task_id is None:
                return done
            self.finish_task(task_id, page, answers)
            done.append(task_id)
        raise AssertionError("annotator never ran out of work")
