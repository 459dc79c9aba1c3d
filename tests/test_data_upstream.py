"""The authors' release layout read natively, optional annotators / NormBank labels, export
between the layouts, and the val split's consequences (calibration fitted on it)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from mmscale_core import dataset_stats
from mmscale_core import modality_shifts as shifts
from mmscale_core.cli import main as cli_main
from mmscale_core.data import NotInRelease, dataset_fingerprint, format_summary, load_dataset
from test_data import problems_of

FLAT = "mmscale_clean_flat.jsonl"
# (image, ratings, votes): lists of 1 to 5 ratings; image 3 is the val image, 4-5 the test images
SHAPES = [
    (0, [4], ["image"]), (0, [2, 3], ["text", "text"]), (0, [5, 5, 4], ["image", "both", "image"]),
    (1, [1, 2, 1, 2, 1], ["text"] * 5), (1, [3, 3, 3], ["both", "both", "image"]),
    (2, [2, 4], ["image", "image"]), (2, [4, 4, 5], ["image", "image", "image"]),
    (3, [3, 4, 3], ["text", "image", "text"]), (3, [1], ["both"]),
    (4, [5, 4], ["image", "both"]), (4, [2, 2, 2], ["text", "text", "both"]),
    (5, [3], ["image"]), (5, [4, 5], ["both", "both"]),
]
SPLIT_OF_IMAGE = {0: "train", 1: "train", 2: "train", 3: "val", 4: "test", 5: "test"}


def _majority(votes):
    counts = pd.Series(votes).value_counts()
    return counts.index[0] if (counts == counts.iloc[0]).sum() == 1 else "both"


def flat_rows() -> list[dict]:
    rows, slot = [], {}
    for image, ratings, votes in SHAPES:
        image_id = f"{3480 + image:05d}.png"
        n = slot[image] = slot.get(image, -1) + 1
        rows.append({
            "image_id": image_id, "target_setting": f"a kitchen at night #{image}",
            "scenario_id": f"{image_id}_s{n:02d}", "text": f"leaving the stove on ({n})",
            "mean_rating": float(np.mean(ratings)), "ratings": ratings,
            "rating_std": float(np.std(ratings, ddof=1)) if len(ratings) > 1 else None,
            "modality": _majority(votes), "modality_votes": votes,
            "source_slots": [n, n + 3][: 1 + n % 2], "dedupe_group_size": 1 + n % 2,
        })
    return rows


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def write_release(root: Path, rows: list[dict] | None = None, split_files: dict[str, list[dict]] | None = None,
                  images: bool = True) -> Path:
    """A release in the authors' layout: flat file, contexts file, split files, images/<image_id>."""
    rows = flat_rows() if rows is None else rows
    _jsonl(root / FLAT, rows)
    by_image: dict[str, dict] = {}
    for r in rows:
        by_image.setdefault(r["image_id"], {"image_id": r["image_id"], "image_url": "https://example.invalid/x",
                                            "scenarios": []})["scenarios"].append(r)
    _jsonl(root / "mmscale_clean_contexts.jsonl", list(by_image.values()))
    if split_files is None:
        split_files = {s: [] for s in ("train", "val", "test")}
        for image_id, ctx in by_image.items():
            split_files[SPLIT_OF_IMAGE[int(image_id[:5]) - 3480]].append(ctx)
    for split, contexts in split_files.items():
        _jsonl(root / "splits" / f"{split}.jsonl", contexts)
    _jsonl(root / "splits" / "train_pairwise.jsonl", [{"pair": ["whatever", None]}])  # ignored
    (root / "splits" / "README").write_text("not a split file")
    if images:
        (root / "images").mkdir(exist_ok=True)
        for k, image_id in enumerate(by_image):
            Image.new("RGB", (6, 5), (40 * k % 255, 90, 30)).save(root / "images" / image_id)
    return root


# --------------------------------------------------------------------------- reading

def test_release_loads_with_its_fields_mapped(tmp_path):
    ds = load_dataset(write_release(tmp_path / "r"))
    s = ds.scenarios.set_index("scenario_id")
    assert ds.layout == "upstream" and ds.warnings == [] and set(ds.given) == {"score", "modality"}
    assert len(s) == len(SHAPES) and sorted(s["n_ratings"].unique()) == [1, 2, 3, 5]
    first = s.loc["03480.png_s02"]
    assert first["image_id"] == "03480.png" and first["setting"] == "a kitchen at night #0"
    assert first["scenario"] == "leaving the stove on (2)" and first["ratings"] == [5, 5, 4]
    assert first["modalities"] == ["image", "both", "image"] and first["modality"] == "image"
    assert first["score"] == pytest.approx(14 / 3) and first["source_slots"] == [2]
    assert first["dedupe_group_size"] == 1 and first["rating_std"] == pytest.approx(np.std([5, 5, 4], ddof=1))
    assert pd.isna(s.loc["03480.png_s00", "rating_std"])  # a single rating has no SD
    assert s["annotators"].isna().all() and s["normbank_label"].isna().all()
    assert not ds.has("annotators") and not ds.has("normbank_label") and ds.has("ratings")
    by_image = s.groupby("image_id")["split"].agg(set).to_dict()
    assert by_image == {f"{3480 + i:05d}.png": {sp} for i, sp in SPLIT_OF_IMAGE.items()}
    assert ds.image_path("03483.png").name == "03483.png" and ds.load_image("03483.png").size == (6, 5)
    summary = ds.summary()
    assert summary["annotators"] is None and summary["split"] == {"test": 2, "train": 3, "val": 1}


def test_stored_mean_and_modality_are_used_as_given_with_warnings(tmp_path):
    rows = flat_rows()
    rows[2]["mean_rating"] = 4.5                      # mean of [5, 5, 4] is 4.667
    rows[3]["mean_rating"] = rows[3]["mean_rating"] + 5e-7   # within 1e-6: no warning
    rows[4]["modality"] = "text"                      # votes say both, both, image -> both
    rows[5]["modality_votes"] = ["image"]             # one vote for two ratings
    ds = load_dataset(write_release(tmp_path / "r", rows))
    s = ds.scenarios.set_index("scenario_id")
    assert s.loc["03480.png_s02", "score"] == 4.5 and s.loc["03481.png_s01", "modality"] == "text"
    kinds = sorted((w.field, w.record) for w in ds.warnings)
    assert kinds == [("mean_rating", "scenario_id=03480.png_s02"), ("modality", "scenario_id=03481.png_s01"),
                     ("modality_votes", "scenario_id=03482.png_s00")]
    assert all(w.file == FLAT for w in ds.warnings)


def test_validate_prints_warnings_with_counts_and_examples(tmp_path, capsys):
    rows = flat_rows()
    for r in rows[:5]:
        r["mean_rating"] = min(5.0, r["mean_rating"] + 0.25)
    root = write_release(tmp_path / "r", rows)
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    assert cli_main(["validate", str(root)]) == 0
    out = capsys.readouterr().out
    assert "the authors' layout) is valid" in out and "annotators:  not in this release" in out
    assert "5 warnings (not blocking)" in out
    assert "field 'mean_rating': 5 scenarios" in out and "e.g. scenario_id=03480.png_s00" in out and "2 more" in out
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before  # validate writes nothing


def test_without_split_files_the_split_is_derived(tmp_path):
    root = write_release(tmp_path / "r", split_files={})
    ds = load_dataset(root)
    assert set(ds.scenarios["split"]) <= {"train", "test"} and ds.scenarios["split"].notna().all()


def test_fingerprint_covers_the_split_files(tmp_path):
    root = write_release(tmp_path / "r")
    before = dataset_fingerprint(load_dataset(root))
    lines = (root / "splits" / "val.jsonl").read_text().splitlines()
    (root / "splits" / "test.jsonl").write_text((root / "splits" / "test.jsonl").read_text() + lines[0] + "\n")
    (root / "splits" / "val.jsonl").write_text("")
    assert dataset_fingerprint(load_dataset(root)) != before


# --------------------------------------------------------------------------- problems

def _edit_flat(index, **values):
    def edit(rows):
        rows[index].update(values)
    return edit


def _drop_flat(index, name):
    def edit(rows):
        del rows[index][name]
    return edit


FLAT_CASES = {
    "rating out of range": (_edit_flat(1, ratings=[2, 7]), ["scenario_id=03480.png_s01", "field 'ratings'",
                                                           "rating #2 is 7, outside 1..5"]),
    "empty text": (_edit_flat(0, text=" "), ["field 'text'", "non-empty string"]),
    "setting not a string": (_edit_flat(0, target_setting=3), ["field 'target_setting'", "must be a string"]),
    "mean rating out of range": (_edit_flat(0, mean_rating=0.5), ["field 'mean_rating'", "from 1 to 5"]),
    "unknown vote": (_edit_flat(0, modality_votes=["smell"]), ["field 'modality_votes'", "'smell'"]),
    "missing votes": (_drop_flat(0, "modality_votes"), ["field 'modality_votes'", "missing field"]),
    "missing modality": (_drop_flat(0, "modality"), ["field 'modality'", "missing field"]),
    "bad dedupe size": (_edit_flat(0, dedupe_group_size=0), ["field 'dedupe_group_size'", "integer >= 1"]),
    "bad source slots": (_edit_flat(0, source_slots="3"), ["field 'source_slots'", "list of integers"]),
    "duplicate id": (_edit_flat(1, scenario_id="03480.png_s00"), ["duplicate id (first at line 1)"]),
}


@pytest.mark.parametrize("case", sorted(FLAT_CASES))
def test_flat_file_problems_name_the_upstream_field(tmp_path, case):
    edit, expected = FLAT_CASES[case]
    rows = flat_rows()
    edit(rows)
    probs = problems_of(write_release(tmp_path / "r", rows))
    assert any(all(e in p for e in expected) and p.startswith(FLAT) for p in probs), probs


def _split_contexts(rows):
    out = {s: [] for s in ("train", "val", "test")}
    for r in rows:
        split = SPLIT_OF_IMAGE[int(r["image_id"][:5]) - 3480]
        if not out[split] or out[split][-1]["image_id"] != r["image_id"]:
            out[split].append({"image_id": r["image_id"], "scenarios": []})
        out[split][-1]["scenarios"].append({"scenario_id": r["scenario_id"]})
    return out


def test_scenario_in_two_split_files(tmp_path):
    splits = _split_contexts(flat_rows())
    splits["test"].append(splits["val"][0])
    probs = problems_of(write_release(tmp_path / "r", split_files=splits))
    assert "splits/test.jsonl [scenario_id=03483.png_s00] field 'scenario_id': also in splits/val.jsonl " \
           "(a scenario belongs to one split)" in probs


def test_split_scenario_missing_from_flat_file(tmp_path):
    splits = _split_contexts(flat_rows())
    splits["train"][0]["scenarios"].append({"scenario_id": "09999.png_s00"})
    probs = problems_of(write_release(tmp_path / "r", split_files=splits))
    assert "splits/train.jsonl [scenario_id=09999.png_s00] field 'scenario_id': scenario is not in " \
           "mmscale_clean_flat.jsonl" in probs


def test_flat_scenario_in_no_split_and_image_in_two_splits(tmp_path):
    splits = _split_contexts(flat_rows())
    splits["train"][0]["scenarios"].pop()                    # 03480.png_s02 in no split file
    splits["test"].append({"image_id": "03481.png", "scenarios": [splits["train"][1]["scenarios"].pop()]})
    probs = problems_of(write_release(tmp_path / "r", split_files=splits))
    assert any(p.startswith(f"{FLAT} [scenario_id=03480.png_s02]") and "in none of the split files" in p
               for p in probs), probs
    assert any("image 03481.png has scenarios in both train and test" in p for p in probs), probs


def test_split_file_rows_without_scenarios(tmp_path):
    splits = _split_contexts(flat_rows())
    splits["val"].append({"image_id": "x.png"})
    probs = problems_of(write_release(tmp_path / "r", split_files=splits))
    assert "splits/val.jsonl [line 2] field 'scenarios': must be a list of scenario records" in probs


def test_missing_and_undecodable_images(tmp_path):
    root = write_release(tmp_path / "r")
    (root / "images" / "03481.png").unlink()
    (root / "images" / "03482.png").write_bytes(b"\x89PNG not really")
    (root / "images" / "03483.png").rename(root / "images" / "03483.jpg")   # the name must match exactly
    probs = problems_of(root)
    assert "images/ [image_id=03481.png] field 'image_id': no image file images/03481.png" in probs
    assert "images/ [image_id=03483.png] field 'image_id': no image file images/03483.png" in probs
    assert any(p.startswith("images/03482.png [image_id=03482.png]: cannot decode image") for p in probs), probs


def test_cli_lists_problems_without_traceback(tmp_path, capsys):
    rows = flat_rows()
    rows[0]["ratings"] = []
    root = write_release(tmp_path / "r", rows)
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    assert cli_main(["validate", str(root)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "field 'ratings': must have at least one rating" in err
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before


def test_both_layouts_in_one_directory_is_an_error(tmp_path):
    root = write_release(tmp_path / "r")
    (root / "scenarios.jsonl").write_text("{}\n")
    assert any("keep one layout per directory" in p for p in problems_of(root))


# --------------------------------------------------------------------------- our layout: optional fields

def _our_records(annotators: str, labels: str) -> list[dict]:
    recs = []
    for i in range(4):
        for j in range(3):
            rec = {"image_id": f"img{i}", "scenario_id": f"s{i}_{j}", "setting": "a street", "scenario": f"x {j}",
                   "ratings": [1 + (i + j) % 5, 3], "modalities": ["image", "text"],
                   "split": ["train", "train", "val", "test"][i]}
            if annotators == "present":
                rec["annotators"] = ["a", "b"]
            elif annotators == "null":
                rec["annotators"] = None
            if labels == "present":
                rec["normbank_label"] = [-1, 0, 1][j]
            elif labels == "null":
                rec["normbank_label"] = None
            recs.append(rec)
    return recs


def _write_ours(root: Path, recs: list[dict]) -> Path:
    root.mkdir(parents=True)
    (root / "scenarios.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    (root / "images").mkdir()
    for i in range(4):
        Image.new("RGB", (4, 4)).save(root / "images" / f"img{i}.png")
    return root


@pytest.mark.parametrize("missing", ["absent", "null"])
def test_our_layout_without_annotators_or_labels(tmp_path, missing):
    ds = load_dataset(_write_ours(tmp_path / "d", _our_records(missing, missing)))
    frame = ds.scenarios
    assert set(frame["split"]) == {"train", "val", "test"} and ds.summary()["annotators"] is None
    for call in (lambda: dataset_stats.table2_vs_paper(frame, "c"), lambda: dataset_stats.table6_vs_paper(frame, "c"),
                 lambda: dataset_stats.shift_regression(frame), lambda: shifts.extreme_shift_rates(frame),
                 lambda: shifts.directional_by_label(frame)):
        with pytest.raises(NotInRelease, match="not available in this release .no scenario has 'normbank_label'"):
            call()
    quality = dataset_stats.quality_vs_paper(frame, None, "c")
    assert quality["statistic"].str.contains("not available in this release").any()
    assert np.isfinite(dataset_stats.alpha_with_ci(frame, n_boot=5)["value"].iloc[:2]).all()  # alpha needs no ids
    assert "annotators:  not in this release" in format_summary(ds.summary())


def test_our_layout_with_annotators_and_labels_keeps_every_analysis(tmp_path):
    ds = load_dataset(_write_ours(tmp_path / "d", _our_records("present", "present")))
    frame = ds.scenarios
    assert ds.summary()["annotators"] == 2
    assert dataset_stats.table2_vs_paper(frame, "c")["count"].sum() > 0
    quality = dataset_stats.quality_vs_paper(frame, None, "c")
    assert not quality["statistic"].str.contains("not available").any()


# --------------------------------------------------------------------------- export

def _split_membership(root: Path) -> dict[str, set]:
    return {s: {sc["scenario_id"] for line in (root / "splits" / f"{s}.jsonl").read_text().splitlines()
                for sc in json.loads(line)["scenarios"]} for s in ("train", "val", "test")}


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_upstream_to_ours_and_back_round_trips_every_field(tmp_path, fmt):
    rows = flat_rows()
    rows[2]["mean_rating"] = 4.5           # stored values that are not recomputable survive
    rows[4]["modality"] = "text"
    rows[5]["modality_votes"] = ["image"]
    src = write_release(tmp_path / "src", rows)
    ours_dir, back = tmp_path / "ours", tmp_path / "back"
    assert cli_main(["export", "--layout", "ours", "--format", fmt, str(src), str(ours_dir)]) == 0
    ours = load_dataset(ours_dir)
    assert ours.layout == "ours" and ours.image_path("03480").name == "03480.png"
    assert len(ours.warnings) == 3
    assert cli_main(["export", "--layout", "upstream", str(ours_dir), str(back)]) == 0
    again = [json.loads(line) for line in (back / FLAT).read_text().splitlines()]
    assert again == rows
    assert _split_membership(back) == _split_membership(src)
    assert sorted(p.name for p in (back / "images").iterdir()) == sorted({r["image_id"] for r in rows})
    assert (back / "mmscale_clean_contexts.jsonl").is_file()


def test_ours_to_upstream_reports_what_it_leaves_out(tmp_path, capsys):
    src = _write_ours(tmp_path / "d", _our_records("present", "present"))
    assert cli_main(["export", "--layout", "upstream", str(src), str(tmp_path / "up")]) == 0
    assert "left out (no place for them in the authors' layout): normbank_label, annotators" in capsys.readouterr().out
    up = load_dataset(tmp_path / "up")
    orig = load_dataset(src).scenarios.set_index("scenario_id")
    s = up.scenarios.set_index("scenario_id").loc[orig.index]
    assert (s["image_id"] == orig["image_id"] + ".png").all() and (s["split"] == orig["split"]).all()
    assert np.allclose(s["score"], orig["score"]) and (s["modality"] == orig["modality"]).all()
    assert s["ratings"].tolist() == orig["ratings"].tolist() and up.warnings == []


def test_origin_survives_export_to_the_authors_layout_and_back(tmp_path, capsys):
    recs = [{**r, "origin": "expansion" if i % 3 == 2 else "source"}
            for i, r in enumerate(_our_records("present", "present"))]
    src = _write_ours(tmp_path / "d", recs)
    assert cli_main(["export", "--layout", "upstream", str(src), str(tmp_path / "up")]) == 0
    assert "origin" not in capsys.readouterr().out.split("left out", 1)[-1]
    flat = [json.loads(line) for line in (tmp_path / "up" / FLAT).read_text().splitlines()]
    want = {r["scenario_id"]: r["origin"] for r in recs}
    assert {r["scenario_id"]: r["origin"] for r in flat} == want
    assert cli_main(["export", "--layout", "ours", str(tmp_path / "up"), str(tmp_path / "back")]) == 0
    back = load_dataset(tmp_path / "back").scenarios
    assert dict(zip(back["scenario_id"], back["origin"])) == want
    rows = flat_rows()
    rows[0]["origin"] = "expansion"   # the authors' layout: all records or none, like ours
    probs = problems_of(write_release(tmp_path / "partial", rows))
    assert any("'origin'" in p and "set it on all or none" in p for p in probs), probs


def test_export_refuses_a_non_empty_target(tmp_path, capsys):
    src = write_release(tmp_path / "src")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    assert cli_main(["export", "--layout", "ours", str(src), str(tmp_path / "out")]) != 0
    assert "not an empty directory" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["keep.txt"]


# --------------------------------------------------------------------------- simulate and calibrate

def test_simulate_writes_the_upstream_layout(tmp_path):
    from mmscale_core.simulator.generate import simulate

    simulate(tmp_path / "sim", n_images=40, image_size=16, photo_images=0, layout="upstream")
    ds = load_dataset(tmp_path / "sim")
    assert ds.layout == "upstream" and ds.warnings == []
    assert ds.summary()["split"] == {"train": 28, "val": 4, "test": 8}
    assert all(p.suffix == ".png" for p in ds.images.values()) and ds.scenarios["image_id"].str.endswith(".png").all()
    assert not (tmp_path / "sim" / "scenarios.parquet").exists()


def test_calibration_is_fitted_on_val_when_there_is_one():
    pytest.importorskip("torch")
    from mmscale_core.metrics import fit_score_calibrator
    from mmscale_core.training import apply_calibration, fit_calibration

    rng = np.random.default_rng(0)
    n = 60
    split = np.array(["train"] * 30 + ["val"] * 15 + ["test"] * 15)
    raw = rng.normal(size=n)
    true = np.clip(np.where(split == "val", 4 - raw, 3 + raw), 1, 5)  # val's map runs the other way
    predictions = pd.DataFrame({"split": split, "score": raw})
    frame = pd.DataFrame({"score": true})
    cal = fit_calibration(predictions, frame)
    val = split == "val"
    expected = fit_score_calibrator(raw[val], true[val]).predict(raw)
    assert cal["fitted_on"] == "val" and np.allclose(apply_calibration(cal, raw), expected)
    no_val = predictions.assign(split=np.where(val, "test", split))
    cal = fit_calibration(no_val, frame)
    train = split == "train"
    assert cal["fitted_on"] == "train"
    assert np.allclose(apply_calibration(cal, raw), fit_score_calibrator(raw[train], true[train]).predict(raw))


# --------------------------------------------------------------------------- the pipeline on it

def _outputs_text(notebook: Path) -> str:
    cells = json.loads(notebook.read_text())["cells"]
    return "\n".join("".join(out.get("text", "")) + "".join(out.get("data", {}).get("text/plain", ""))
                     for c in cells if c["cell_type"] == "code" for out in c.get("outputs", []))


@pytest.mark.slow
def test_smoke_pipeline_on_a_simulated_upstream_release(tmp_path):
    """`dvc repro` with `data.source: directory` pointing at a release in the authors' layout.

    The training matrix is cut to two objectives (one on the 1-5 scale, one through its
    isotonic map) and one seed, and each ablation axis to one value: every stage and every
    notebook still runs (8 training runs instead of 19), which is what this test is about;
    the full matrix runs in test_pipeline.py on our layout.
    """
    from smoke import copy_project, sh
    from test_pipeline import NOTEBOOKS

    from mmscale_core.simulator.generate import simulate

    release = tmp_path / "release"
    simulate(release, n_images=60, image_size=64, photo_images=0, layout="upstream")  # like the release: no photo/

    def edit(params):
        params["profiles"]["smoke"]["data"] = {"source": "directory", "dir": str(release)}
        params["train_matrix"].update(objective=["lipo", "bce"], seed=[0])
        params["ablations"].update(list_size=[2], train_fraction=[0.5])

    work = copy_project(tmp_path / "project", edit)
    sh(["dvc", "repro"], work)
    assert (work / "data" / "dataset").resolve() == release.resolve()  # linked, not converted
    for nb in NOTEBOOKS:
        assert (work / "reports" / "notebooks" / f"{nb}.ipynb").is_file(), nb
    shifts_page = _outputs_text(work / "reports" / "notebooks" / "02_modality_shifts.ipynb")
    assert "| data: data/dataset (companion, simulated data)" in shifts_page  # simulation.json: not "real"
    assert shifts_page.count("not available in this release") == 5, shifts_page
    assert not (work / "tables" / "02_modality_shifts" / "table2_shifts.csv").exists()
    summary = pd.read_csv(work / "tables" / "01_data_stats" / "table1_summary.csv")
    assert summary["statistic"].str.contains("validation images").any()
    quality = pd.read_csv(work / "tables" / "01_data_stats" / "quality_control.csv")
    assert quality["statistic"].str.contains("not available in this release").any()
    bce = json.loads((work / "runs" / "table3" / "minilm-effnet" / "bce" / "seed0" / "metrics.json").read_text())
    assert bce["calibration_split"] == "val"
    assert "Fig. 3 is not available for this data" in _outputs_text(work / "reports" / "notebooks" / "07_vg_validation.ipynb")
    assert not (work / "tables" / "07_vg_validation" / "fig3_deltas.csv").exists()
    assert "fitted on the val split" in _outputs_text(work / "reports" / "notebooks" / "06_calibration.ipynb")
    table = pd.read_csv(work / "tables" / "04_table3" / "table3_companion.csv")
    assert set(table["objective"]) == {"lipo", "bce"} and np.isfinite(table["value"].to_numpy(dtype=float)).all()
