"""The dataset release format: every rule, each bad case with its own message."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from mmscale_core.cli import main as cli_main
from mmscale_core.data import (
    DatasetError,
    load_dataset,
    majority_modality,
    split_by_image,
    write_dataset,
)


def make_records(n_images: int = 6, per_image: int = 3, with_split: bool = False) -> list[dict]:
    recs = []
    for i in range(n_images):
        for j in range(per_image):
            recs.append({
                "image_id": f"img{i:03d}",
                "scenario_id": f"s{i:03d}_{j}",
                "setting": f"a child crossing a street #{i}",
                "scenario": f"holding the child's hand ({j})",
                "normbank_label": [-1, 0, 1, None][(i + j) % 4],
                "ratings": [1 + (i + j) % 5, 2, 3 + j % 3],
                "modalities": ["text", "image", "both"][: 3],
                "annotators": [f"a{k}" for k in range(3)],
                **({"split": "test" if i == 0 else "train"} if with_split else {}),
            })
    return recs


def write_images(root: Path, ids, size: int = 8) -> None:
    (root / "images").mkdir(parents=True, exist_ok=True)
    for k, image_id in enumerate(sorted(set(ids))):
        Image.new("RGB", (size, size), (k * 30 % 255, 80, 120)).save(root / "images" / f"{image_id}.png")


def write_jsonl(root: Path, recs: list[dict], images: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "scenarios.jsonl", "w", encoding="utf-8") as fh:
        for r in recs:
            fh.write(json.dumps(r) + "\n")
    if images:
        usable = [r["image_id"] for r in recs if isinstance(r.get("image_id"), str) and r["image_id"].isalnum()]
        write_images(root, usable)
    return root


def problems_of(root: Path) -> list[str]:
    with pytest.raises(DatasetError) as info:
        load_dataset(root)
    return [str(p) for p in info.value.problems]


def test_good_dataset_derives_columns(tmp_path):
    ds = load_dataset(write_jsonl(tmp_path / "d", make_records()))
    s = ds.scenarios
    assert len(s) == 18 and s["image_id"].nunique() == 6
    first = s.iloc[0]
    assert first["score"] == pytest.approx(np.mean(first["ratings"]))
    assert first["modality"] == "both"  # text/image/both: a three-way tie -> both
    assert set(s["list_size"]) == {3}
    assert set(s["split"]) <= {"train", "test"}
    assert str(s["normbank_label"].dtype) == "Int8" and s["normbank_label"].isna().sum() > 0
    assert ds.image_path("img001").name == "img001.png"
    assert ds.load_image("img001").size == (8, 8)
    assert [k for k, _ in ds.lists()] == [f"img{i:03d}" for i in range(6)]


@pytest.mark.parametrize("labels, expected", [
    (["text", "text", "image"], "text"),
    (["image", "both", "image"], "image"),
    (["text", "image"], "both"),
    (["text", "image", "both"], "both"),
    (["image"], "image"),
])
def test_majority_modality(labels, expected):
    assert majority_modality(labels) == expected


def test_parquet_and_jsonl_round_trip_identically(tmp_path):
    recs = make_records(with_split=True)
    a = load_dataset(write_jsonl(tmp_path / "a", recs))
    write_images(tmp_path / "b", [r["image_id"] for r in recs])
    write_dataset(a.scenarios, tmp_path / "b", fmt="parquet")
    b = load_dataset(tmp_path / "b")
    write_images(tmp_path / "c", [r["image_id"] for r in recs])
    write_dataset(b.scenarios, tmp_path / "c", fmt="jsonl")
    c = load_dataset(tmp_path / "c")
    assert b.source_file == "scenarios.parquet" and c.source_file == "scenarios.jsonl"
    pd.testing.assert_frame_equal(a.scenarios, b.scenarios)
    pd.testing.assert_frame_equal(a.scenarios, c.scenarios)


def test_write_dataset_replaces_the_other_format(tmp_path):
    ds = load_dataset(write_jsonl(tmp_path / "d", make_records()))
    write_dataset(ds.scenarios, tmp_path / "d", fmt="parquet")
    assert not (tmp_path / "d" / "scenarios.jsonl").exists()
    assert load_dataset(tmp_path / "d").source_file == "scenarios.parquet"


def test_split_is_deterministic_image_disjoint_and_nine_to_one():
    ids = [f"img{i}" for i in range(1000)]
    a = split_by_image(ids, seed=3)
    assert a == split_by_image(list(reversed(ids)), seed=3)  # order-independent
    assert sum(v == "test" for v in a.values()) == 100
    assert a != split_by_image(ids, seed=4)


def test_derived_split_is_image_disjoint(tmp_path):
    ds = load_dataset(write_jsonl(tmp_path / "d", make_records(n_images=40)))
    per_image = ds.scenarios.groupby("image_id")["split"].nunique()
    assert (per_image == 1).all()
    assert ds.scenarios.groupby("split")["image_id"].nunique()["test"] == 4


def test_given_split_is_kept(tmp_path):
    ds = load_dataset(write_jsonl(tmp_path / "d", make_records(with_split=True)))
    assert set(ds.scenarios.loc[ds.scenarios.image_id == "img000", "split"]) == {"test"}


# ---------------------------------------------------------------- every bad case, its own message

def _mutate(field, value):
    def f(recs):
        recs[1][field] = value
    return f


def _drop(field):
    def f(recs):
        del recs[1][field]
    return f


BAD_CASES = {
    "rating above 5": (_mutate("ratings", [3, 6, 2]), ["scenario_id=s000_1", "'ratings'", "rating #2 is 6, outside 1..5"]),
    "rating 0": (_mutate("ratings", [0, 3, 2]), ["'ratings'", "rating #1 is 0, outside 1..5"]),
    "non-integer rating": (_mutate("ratings", [3, 2.5, 2]), ["'ratings'", "rating #2 is 2.5, not an integer"]),
    "string rating": (_mutate("ratings", [3, "4", 2]), ["'ratings'", "not an integer"]),
    "boolean rating": (_mutate("ratings", [True, 4, 2]), ["'ratings'", "rating #1 is True, not an integer"]),
    "empty ratings": (_mutate("ratings", []), ["'ratings'", "at least one rating"]),
    "ratings not a list": (_mutate("ratings", 4), ["'ratings'", "must be a list"]),
    "unknown modality": (_mutate("modalities", ["text", "sound", "both"]), ["'modalities'", "entry #2 is 'sound'"]),
    "modalities length": (_mutate("modalities", ["text", "image"]), ["'modalities'", "has 2 entries but ratings has 3"]),
    "annotators length": (_mutate("annotators", ["a0"]), ["'annotators'", "has 1 entries but ratings has 3"]),
    "annotator twice": (_mutate("annotators", ["a0", "a1", "a0"]), ["'annotators'", "a0 rated this scenario more than once"]),
    "empty scenario": (_mutate("scenario", "   "), ["'scenario'", "non-empty string"]),
    "NUL in scenario": (_mutate("scenario", "climb\x00 the fence"), ["'scenario'", "U+0000"]),
    "direction override in setting": (_mutate("setting", "a park \u202e"), ["'setting'", "U+202E"]),
    "empty image id": (_mutate("image_id", ""), ["'image_id'", "non-empty string"]),
    "image id with slash": (_mutate("image_id", "../x"), ["'image_id'", "not usable as a file name"]),
    "bad normbank": (_mutate("normbank_label", 2), ["'normbank_label'", "must be -1, 0, 1 or null, got 2"]),
    "bad split": (_mutate("split", "validation"), ["'split'", "'validation' is not one of train, val, test"]),
    "bad qc": (_mutate("qc", "blurry"), ["'qc'", "'blurry' is not one of"]),
    "bad image source": (_mutate("image_source", "midjourney"), ["'image_source'", "not one of"]),
    "bad origin": (_mutate("origin", "annotator"), ["'origin'", "'annotator' is not one of source, expansion"]),
    "missing field": (_drop("modalities"), ["scenario_id=s000_1", "'modalities'", "missing field"]),
    "stored score out of range": (_mutate("score", 5.5), ["'score'", "must be a number from 1 to 5"]),
    "stored modality unknown": (_mutate("modality", "sound"), ["'modality'", "'sound' is not one of"]),
    "duplicate id": (_mutate("scenario_id", "s000_0"), ["scenario_id=s000_0", "duplicate id (first at line 1)"]),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_each_bad_record_has_its_specific_message(tmp_path, case):
    mutate, expected = BAD_CASES[case]
    recs = make_records()
    mutate(recs)
    probs = problems_of(write_jsonl(tmp_path / "d", recs))
    assert any(all(e in p for e in expected) for p in probs), probs
    assert all(p.startswith("scenarios.jsonl") or p.startswith("images/") for p in probs)


def test_nan_rating_in_parquet(tmp_path):
    recs = make_records()
    frame = pd.DataFrame(recs)
    frame.at[2, "ratings"] = [3.0, float("nan"), 2.0]
    root = tmp_path / "d"
    root.mkdir()
    frame.to_parquet(root / "scenarios.parquet")
    write_images(root, frame["image_id"])
    probs = problems_of(root)
    assert any("scenario_id=s000_2" in p and "rating #2 is missing (null or NaN)" in p for p in probs), probs


def test_nan_rating_in_jsonl(tmp_path):
    root = write_jsonl(tmp_path / "d", make_records())
    lines = (root / "scenarios.jsonl").read_text().splitlines()
    lines[3] = lines[3].replace('"ratings": [', '"ratings": [NaN, ')
    lines[3] = lines[3].replace('"modalities": [', '"modalities": ["text", ').replace('"annotators": [', '"annotators": ["z", ')
    (root / "scenarios.jsonl").write_text("\n".join(lines) + "\n")
    assert problems_of(root) == [
        "scenarios.jsonl [scenario_id=s001_0] field 'ratings': rating #1 is missing (null or NaN)"]


def test_invalid_utf8_and_json_lines_report_line_numbers(tmp_path):
    root = write_jsonl(tmp_path / "d", make_records())
    with open(root / "scenarios.jsonl", "ab") as fh:
        fh.write(b'{"image_id": "img000", "scenario": "caf\xe9"}\n')
        fh.write(b"{not json}\n")
        fh.write(b"[1, 2]\n")
    probs = problems_of(root)
    assert any("[line 19]" in p and "not valid UTF-8" in p for p in probs), probs
    assert any("[line 20]" in p and "not valid JSON" in p for p in probs), probs
    assert any("[line 21]" in p and "expected a JSON object, got list" in p for p in probs), probs


def test_missing_and_undecodable_images(tmp_path):
    root = write_jsonl(tmp_path / "d", make_records())
    (root / "images" / "img002.png").unlink()
    (root / "images" / "img003.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    probs = problems_of(root)
    assert any("image_id=img002" in p and "no image file img002" in p for p in probs), probs
    assert any("images/img003.png" in p and "cannot decode image" in p for p in probs), probs


def test_truncated_image_is_caught(tmp_path):
    root = write_jsonl(tmp_path / "d", make_records())
    Image.new("RGB", (64, 64), (1, 2, 3)).save(root / "images" / "img004.png")
    data = (root / "images" / "img004.png").read_bytes()
    (root / "images" / "img004.png").write_bytes(data[: len(data) // 2])
    assert any("img004" in p and "cannot decode" in p for p in problems_of(root))


def test_ambiguous_image_files(tmp_path):
    root = write_jsonl(tmp_path / "d", make_records())
    Image.new("RGB", (4, 4)).save(root / "images" / "img001.jpg")
    assert any("img001 has more than one file" in p for p in problems_of(root))


def test_empty_dataset_and_missing_files(tmp_path):
    root = write_jsonl(tmp_path / "empty", [])
    assert any("no records" in p for p in problems_of(root))
    (tmp_path / "nothing").mkdir()
    assert any("no scenarios.parquet or scenarios.jsonl" in p for p in problems_of(tmp_path / "nothing"))
    assert any("no such dataset directory" in p for p in problems_of(tmp_path / "absent"))
    both = write_jsonl(tmp_path / "both", make_records())
    pd.DataFrame(make_records()).to_parquet(both / "scenarios.parquet")
    assert any("keep exactly one" in p for p in problems_of(both))
    noimg = write_jsonl(tmp_path / "noimg", make_records(), images=False)
    assert any("missing images directory" in p for p in problems_of(noimg))


def test_mixed_and_leaking_splits(tmp_path):
    recs = make_records(with_split=True)
    del recs[4]["split"]
    assert any("set it on all or none" in p for p in problems_of(write_jsonl(tmp_path / "a", recs)))
    recs = make_records(with_split=True)
    recs[1]["split"] = "train"  # img000 now in both
    assert any("image img000 has scenarios in both train and test" in p
               for p in problems_of(write_jsonl(tmp_path / "b", recs)))


def test_all_problems_are_listed_together(tmp_path):
    recs = make_records()
    recs[0]["ratings"] = [9, 9, 9]
    recs[5]["modalities"] = ["x", "text", "both"]
    recs[7]["scenario"] = ""
    probs = problems_of(write_jsonl(tmp_path / "d", recs))
    assert len(probs) == 5  # three rating problems + modality + scenario


# ---------------------------------------------------------------- the CLI

def test_cli_validate_success_summary(tmp_path, capsys):
    root = write_jsonl(tmp_path / "d", make_records())
    assert cli_main(["validate", str(root)]) == 0
    out = capsys.readouterr().out
    for needle in ("is valid", "images:      6", "scenarios:   18", "list sizes:  3: 6", "annotators:  3", "ratings:"):
        assert needle in out, out


def test_cli_validate_failure_lists_problems_without_traceback_and_writes_nothing(tmp_path):
    recs = make_records()
    recs[3]["ratings"] = [1, 7, 2]
    recs[8]["modalities"] = ["text"]
    root = write_jsonl(tmp_path / "d", recs)
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    proc = subprocess.run([sys.executable, "-m", "mmscale_core.cli", "validate", str(root)],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "scenario_id=s001_0" in proc.stderr and "outside 1..5" in proc.stderr
    assert "scenario_id=s002_2" in proc.stderr and "has 1 entries but ratings has 3" in proc.stderr
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before


def test_ci_runs_the_readme_test_command():
    repo = Path(__file__).resolve().parents[1]
    ci = (repo / ".ci" / "run").read_text()
    commands = [ln.strip() for ln in ci.splitlines() if ln.strip() and not ln.lstrip().startswith(("#", "set ", "cd "))]
    assert commands == ["make test"]
    readme = (repo / "README.md").read_text()
    assert "make test" in readme and "make repro" in readme
    makefile = (repo / "Makefile").read_text()
    assert "\ntest: $(STAMP)\n\t$(PY) -m pytest" in makefile


# --------------------------------------------------------------------------- origin (sec 3.2's expansion)

def _with_origin(recs: list[dict]) -> list[dict]:
    return [{**r, "origin": "expansion" if r["scenario_id"].endswith("_2") else "source"} for r in recs]


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_origin_is_read_and_written_in_our_layout(tmp_path, fmt):
    ds = load_dataset(write_jsonl(tmp_path / "d", _with_origin(make_records())))
    assert ds.has("origin") and set(ds.scenarios["origin"]) == {"source", "expansion"}
    write_dataset(ds.scenarios, tmp_path / "d", fmt=fmt)
    again = load_dataset(tmp_path / "d").scenarios
    assert again["origin"].tolist() == ds.scenarios["origin"].tolist()


def test_origin_is_left_out_when_no_record_has_it(tmp_path):
    ds = load_dataset(write_jsonl(tmp_path / "d", make_records()))
    assert not ds.has("origin")
    write_dataset(ds.scenarios, tmp_path / "d", fmt="jsonl")
    assert "origin" not in (tmp_path / "d" / "scenarios.jsonl").read_text()


def test_origin_on_some_records_only_is_an_error(tmp_path):
    recs = _with_origin(make_records())
    del recs[4]["origin"]
    probs = problems_of(write_jsonl(tmp_path / "d", recs))
    assert any("'origin'" in p and "set on 17 of 18 records; set it on all or none" in p for p in probs), probs
