"""The simulator writes a valid, deterministic dataset with its latent truth and a photo variant."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from mmscale_core.cli import main as cli_main
from mmscale_core.data import load_dataset
from mmscale_core.errors import MmscaleError
from mmscale_core.simulator import lexicon, quality, simulate
from mmscale_core.simulator.annotators import CANARIES
from mmscale_core.simulator.scenes import SceneSpec, render

N_IMAGES, SEED, SIZE, N_PHOTO = 40, 7, 48, 8
SIDECARS = ("latent.parquet", "annotators.parquet", "judgments_raw.parquet", "canaries.parquet",
            "qc_report.json", "simulation.json")


@pytest.fixture(scope="module")
def sim_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sim") / "data"
    simulate(out, n_images=N_IMAGES, seed=SEED, image_size=SIZE, photo_images=N_PHOTO, workers=2)
    return out


@pytest.fixture(scope="module")
def twin_dir(tmp_path_factory) -> Path:
    """Same seed, one worker: must be byte-identical to ``sim_dir``."""
    out = tmp_path_factory.mktemp("twin") / "data"
    simulate(out, n_images=N_IMAGES, seed=SEED, image_size=SIZE, photo_images=N_PHOTO, workers=1)
    return out


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


# --------------------------------------------------------------------------- validity

def test_release_validates_and_has_the_requested_images(sim_dir):
    ds = load_dataset(sim_dir)
    s = ds.scenarios
    assert s["image_id"].nunique() == N_IMAGES
    assert (s["n_ratings"] == 3).all()
    assert set(s["image_source"]) == {"synthetic"}
    assert set(s["qc"]) <= {"ok", "minor", "lighting", "severe"}
    assert s["list_size"].between(1, 5).all()
    assert set(s["split"]) <= {"train", "test"}
    with Image.open(ds.image_path(s["image_id"].iat[0])) as im:
        assert im.size == (SIZE, SIZE)
    assert cli_main(["validate", str(sim_dir)]) == 0


def test_photo_variant_is_a_valid_dataset_with_the_same_scenarios(sim_dir):
    main = load_dataset(sim_dir).scenarios.set_index("scenario_id")
    photo = load_dataset(sim_dir / "photo").scenarios.set_index("scenario_id")
    assert photo["image_id"].nunique() == N_PHOTO
    assert set(photo["image_source"]) == {"photo"}
    for col in ("image_id", "scenario", "ratings", "modalities", "annotators", "split", "normbank_label"):
        pd.testing.assert_series_equal(photo[col], main.loc[photo.index, col], check_names=False)
    # every scenario of a photo image is there, and test-split images come first
    assert set(photo["image_id"]) == set(main.loc[main["image_id"].isin(photo["image_id"]), "image_id"])
    n_test = main.groupby("image_id")["split"].first().eq("test").sum()
    assert photo.groupby("image_id")["split"].first().eq("test").sum() == min(n_test, N_PHOTO)
    assert cli_main(["validate", str(sim_dir / "photo")]) == 0


def _saturation(img: Image.Image) -> float:
    return float(np.asarray(img.convert("HSV"))[..., 1].mean())


def _roughness(img: Image.Image) -> float:
    a = np.asarray(img.convert("L"), dtype=float)
    return float(np.abs(np.diff(a, axis=1)).mean())


def test_photo_style_differs_from_the_synthetic_style(sim_dir):
    ids = sorted(p.stem for p in (sim_dir / "photo" / "images").iterdir())
    sat_syn, sat_photo, flat_syn, flat_photo = [], [], [], []
    for i in ids:
        with Image.open(sim_dir / "images" / f"{i}.png") as a, Image.open(sim_dir / "photo" / "images" / f"{i}.jpg") as b:
            sat_syn.append(_saturation(a))
            sat_photo.append(_saturation(b))
            flat_syn.append(np.mean(np.abs(np.diff(np.asarray(a.convert("L"), float), axis=0)) == 0))
            flat_photo.append(np.mean(np.abs(np.diff(np.asarray(b.convert("L"), float), axis=0)) == 0))
    assert np.mean(sat_photo) < 0.85 * np.mean(sat_syn)        # muted palette
    assert np.mean(flat_photo) < 0.5 * np.mean(flat_syn)       # texture and noise: few flat regions


def test_sidecars_hold_the_latent_truth(sim_dir):
    for name in SIDECARS:
        assert (sim_dir / name).is_file(), name
    release = pd.read_parquet(sim_dir / "scenarios.parquet")
    latent = pd.read_parquet(sim_dir / "latent.parquet")
    assert list(latent["scenario_id"]) == list(release["scenario_id"])
    assert {f"cue_{c}" for c in lexicon.CUES} <= set(latent.columns)
    assert set(latent["grounding"]) <= set(lexicon.KINDS)
    assert set(latent["relation"]) <= {"reinforce", "contradict", "neutral"}
    # text-grounded scenarios are not moved by the image; the others are, in the stated direction
    text = latent["grounding"] == "text"
    assert (latent.loc[text, "image_shift"] == 0).all()
    assert (latent.loc[latent["relation"] == "reinforce", "image_shift"] > 0).all()
    assert (latent.loc[latent["relation"] == "contradict", "image_shift"] < 0).all()
    assert np.allclose(latent["true_acceptability"],
                       np.clip(latent["base_acceptability"] + latent["image_shift"], 1, 5))
    # severely broken images: annotators cannot see the cues, so the text decides
    severe = latent["qc"] == "severe"
    assert (latent.loc[severe, "grounding"] == "text").all()
    assert (release["normbank_label"].to_numpy() == latent["normbank_label"].to_numpy()).all()
    annotators = pd.read_parquet(sim_dir / "annotators.parquet")
    assert {"annotator", "bias", "noise", "careless", "screened"} <= set(annotators.columns)


def test_base_acceptability_is_a_function_of_the_sentence(sim_dir):
    latent = pd.read_parquet(sim_dir / "latent.parquet")
    assert (latent.groupby("scenario")["base_acceptability"].nunique() == 1).all()
    labels = lexicon.normbank_label(latent["base_acceptability"].to_numpy())
    assert (labels == latent["normbank_label"].to_numpy()).all()


def test_quality_control_removed_what_the_paper_removes(sim_dir):
    release = pd.read_parquet(sim_dir / "scenarios.parquet")
    report = json.loads((sim_dir / "qc_report.json").read_text())
    annotators = pd.read_parquet(sim_dir / "annotators.parquet")
    judgments = pd.read_parquet(sim_dir / "judgments_raw.parquet")
    assert not quality.high_variance_mask(release).any()          # SD > 1.2 never released
    screened = set(annotators.loc[annotators["screened"], "annotator"])
    assert not screened & {a for lst in release["annotators"] for a in lst}
    assert not set(release["scenario"]) & {text for text, _ in CANARIES}
    removed = judgments.loc[judgments["item_removed"], "scenario_id"]
    assert not set(removed) & set(release["scenario_id"])
    assert report["scenarios_released"] == len(release)
    assert report["items_removed_sd"] == removed.nunique()
    assert 0 <= report["canary_pass_rate"] <= 1
    assert quality.release_quality(release)["share_items_sd_above_max"] == 0.0


# --------------------------------------------------------------------------- determinism

def test_same_seed_gives_identical_files_whatever_the_worker_count(sim_dir, twin_dir):
    a, b = _files(sim_dir), _files(twin_dir)
    assert a.keys() == b.keys()
    assert any(k.startswith("images/") for k in a) and any(k.startswith("photo/images/") for k in a)
    different = [k for k in a if a[k] != b[k]]
    assert different == []


def test_different_seeds_differ(sim_dir, tmp_path):
    other = tmp_path / "other"
    simulate(other, n_images=N_IMAGES, seed=SEED + 1, image_size=SIZE, photo_images=0, workers=1)
    assert (other / "scenarios.parquet").read_bytes() != (sim_dir / "scenarios.parquet").read_bytes()
    first = sorted((sim_dir / "images").iterdir())[0].name
    assert (other / "images" / first).read_bytes() != (sim_dir / "images" / first).read_bytes()


def test_render_is_a_pure_function_of_the_spec():
    spec = SceneSpec("x", "street", ("night", "traffic", "child"), "ok", 3, (5, 1))
    a, b = render(spec, 64), render(spec, 64)
    assert a.tobytes() == b.tobytes()
    moved = SceneSpec("x", "street", ("night", "traffic", "child"), "ok", 3, (5, 2))
    assert render(moved, 64).tobytes() != a.tobytes()


# --------------------------------------------------------------------------- images carry the cues

def _mean_rgb(spec: SceneSpec) -> np.ndarray:
    return np.asarray(render(spec, 64), dtype=float).reshape(-1, 3)


@pytest.mark.parametrize("place", ["street", "kitchen", "park"])
def test_cues_leave_their_mark_on_the_pixels(place):
    def spec(cues, i):
        return SceneSpec("x", place, cues, "ok", 11, (5, i))

    for i in range(5):
        day, night = _mean_rgb(spec((), i)), _mean_rgb(spec(("night",), i))
        assert night.mean() < 0.7 * day.mean()
        plain, fire = _mean_rgb(spec(("night",), i)), _mean_rgb(spec(("night", "fire"), i))
        orange = lambda px: ((px[:, 0] > 180) & (px[:, 1] < 190) & (px[:, 2] < 90)).mean()  # noqa: E731
        assert orange(fire) > orange(plain) + 0.005
        dry, wet = _mean_rgb(spec((), i)), _mean_rgb(spec(("water",), i))
        blue = lambda px: ((px[:, 2] > 150) & (px[:, 0] < 90)).mean()  # noqa: E731
        assert blue(wet) > blue(dry) + 0.01


def test_severe_artifacts_scramble_the_scene():
    ok = render(SceneSpec("x", "park", ("fire",), "ok", 1, (5, 0)), 64)
    severe = render(SceneSpec("x", "park", ("fire",), "severe", 1, (5, 0)), 64)
    assert np.abs(np.asarray(ok, float) - np.asarray(severe, float)).mean() > 20


# --------------------------------------------------------------------------- lexicon and CLI

def test_lexicon_is_consistent():
    assert lexicon.validate_lexicon() == []
    for place in lexicon.PLACES:
        pool = lexicon.pool_for(place)
        assert len(set(pool.text)) == len(pool)            # every sentence once per place
        assert ((pool.base >= 1) & (pool.base <= 5)).all()


def test_cli_simulate_and_its_errors(tmp_path, capsys):
    out = tmp_path / "cli"
    assert cli_main(["simulate", "--out", str(out), "--images", "6", "--image-size", "32",
                     "--photo-images", "2", "--quiet"]) == 0
    assert "wrote 6 images" in capsys.readouterr().out
    assert load_dataset(out).scenarios["image_id"].nunique() == 6
    assert cli_main(["simulate", "--out", str(tmp_path / "big"), "--images", "3", "--image-size", "400"]) == 2
    assert "336" in capsys.readouterr().err
    with pytest.raises(MmscaleError):
        simulate(tmp_path / "none", n_images=0)


# --------------------------------------------------------------------------- quality functions on any data

def test_sd_rule_is_range_at_least_three_for_three_ratings():
    """Brute force over all 125 triples: SD (ddof=1) > 1.2 exactly when max - min >= 3."""
    triples = [[a, b, c] for a in range(1, 6) for b in range(1, 6) for c in range(1, 6)]
    frame = pd.DataFrame({"ratings": triples})
    high = quality.high_variance_mask(frame)
    assert high.tolist() == [max(t) - min(t) >= 3 for t in triples]


def test_screening_catches_a_random_annotator_and_repeated_canary_failures():
    rng = np.random.default_rng(0)
    truth = rng.integers(1, 6, 400)
    rows = []
    for item, t in enumerate(truth):
        raters = rng.choice(20, 3, replace=False)
        for a in raters:
            r = rng.integers(1, 6) if a == 0 else int(np.clip(t + rng.integers(-1, 2) * (rng.random() < 0.3), 1, 5))
            rows.append({"scenario_id": f"s{item}", "annotator": f"a{a}", "rating": float(r)})
    judgments = pd.DataFrame(rows)
    canaries = pd.DataFrame({"annotator": ["a5"] * 5 + ["a6"] * 5,
                             "passed": [False, False, True, True, True] + [False, True, True, True, True]})
    screened = quality.screen_annotators(judgments, canaries)
    assert screened.loc["a0", "screened"] and screened.loc["a0", "reason"] == "variance"
    assert screened.loc["a5", "screened"] and screened.loc["a5", "reason"] == "canary"
    assert not screened.loc["a6", "screened"]                 # one failure is an accident
    assert screened["screened"].sum() == 2


def test_quality_summaries_on_a_release_frame():
    frame = pd.DataFrame({
        "scenario_id": ["a", "b", "c", "d"], "image_id": ["i1", "i1", "i2", "i3"],
        "ratings": [[1, 2, 2], [1, 5, 3], [4, 4, 4], [2, 3, 3]],
        "annotators": [["x", "y", "z"]] * 4, "qc": ["ok", "ok", "severe", "minor"],
    })
    assert quality.high_variance_mask(frame).tolist() == [False, True, False, False]
    assert quality.image_qc_shares(frame) == pytest.approx({"ok": 1 / 3, "minor": 1 / 3, "lighting": 0.0,
                                                           "severe": 1 / 3})
    assert quality.visual_analysis_mask(frame).tolist() == [True, True, False, True]
    long = quality.long_judgments(frame)
    assert len(long) == 12 and set(long.columns) == {"scenario_id", "annotator", "rating"}


# --------------------------------------------------------------------------- expansion (sec 3.2, Fig. 4)

@pytest.fixture(scope="module")
def expanded_dir(tmp_path_factory) -> Path:
    """A small simulation where every agreeing test image with room gets added scenarios."""
    import dataclasses

    from mmscale_core.simulator.params import DEFAULT_PARAMS, ExpansionParams

    out = tmp_path_factory.mktemp("expanded") / "data"
    params = DEFAULT_PARAMS.with_(expansion=dataclasses.replace(ExpansionParams(), image_share=1.0))
    simulate(out, n_images=N_IMAGES, seed=SEED, image_size=16, photo_images=0, workers=1, params=params)
    return out


def test_expansion_dataset_adds_scenarios_to_test_images_only(expanded_dir):
    from mmscale_core.simulator.lexicon import pool_for

    sim_dir = expanded_dir
    release = load_dataset(sim_dir).scenarios
    expanded = load_dataset(sim_dir / "expansion").scenarios
    assert not load_dataset(sim_dir).has("origin")  # the release itself stays source-only
    source = expanded[expanded["origin"] == "source"].reset_index(drop=True)
    added = expanded[expanded["origin"] == "expansion"]
    assert len(added) > 0 and set(expanded["origin"]) == {"source", "expansion"}
    cols = ["scenario_id", "image_id", "scenario", "ratings", "modalities", "annotators", "split"]
    pd.testing.assert_frame_equal(source[cols], release[cols])
    assert set(added["split"]) == {"test"} and expanded.groupby("image_id").size().max() <= 5
    assert (added["ratings"].map(len) == 3).all() and added["modalities"].map(len).eq(3).all()
    latent = pd.read_parquet(sim_dir / "expansion" / "latent.parquet").set_index("scenario_id")
    for image_id, group in expanded[expanded["image_id"].isin(added["image_id"])].groupby("image_id"):
        place = latent.loc[group["scenario_id"].iloc[0], "place"]
        pool = pool_for(place)
        actions = [int(pool.action[np.flatnonzero(pool.text == t)[0]]) for t in group["scenario"]]
        assert len(set(actions)) == len(actions), image_id  # an added scenario is a new situation
    meta = json.loads((sim_dir / "simulation.json").read_text())
    assert meta["expansion_scenarios"] == len(added)


def test_expansion_moves_no_source_record():
    import dataclasses

    from mmscale_core.simulator import generate
    from mmscale_core.simulator.params import DEFAULT_PARAMS, ExpansionParams

    with_exp = generate.simulate_tables(150, 1)
    none = generate.simulate_tables(150, 1, DEFAULT_PARAMS.with_(expansion=ExpansionParams(image_share=0.0)))
    everywhere = generate.simulate_tables(150, 1, DEFAULT_PARAMS.with_(
        expansion=dataclasses.replace(ExpansionParams(), image_share=1.0, splits=("train", "test"))))
    for other in (none, everywhere):
        pd.testing.assert_frame_equal(with_exp.release, other.release)
        pd.testing.assert_frame_equal(with_exp.latent, other.latent)
    assert none.expansion.empty and len(everywhere.expansion) > len(with_exp.expansion) > 0


def test_only_images_where_the_annotator_agreed_with_the_model_are_expanded():
    from mmscale_core.simulator.expansion import agreeing_images

    release = pd.DataFrame({"scenario_id": ["a-0", "a-1", "b-0"], "image_id": ["a", "a", "b"],
                            "ratings": [[1, 2, 2], [5, 5, 4], [5, 5, 5]]})
    latent = pd.DataFrame({"scenario_id": ["a-0", "a-1", "b-0"], "true_acceptability": [4.5, 4.8, 1.0]})
    rng = np.random.default_rng(0)
    assert agreeing_images(release, latent, rng, agree_within=1.0, model_noise=0.0) == {"a"}
    assert agreeing_images(release, latent, rng, agree_within=4.0, model_noise=0.0) == {"a", "b"}
