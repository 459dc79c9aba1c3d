"""Moral robustness (issue 20): the perturbations, the measures against brute force, the CLI on a tiny run."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from mmscale_core.data import load_dataset, write_dataset
from mmscale_core.data.images import pixel_key
from mmscale_core.errors import MmscaleError
from mmscale_core.robustness.measures import (
    MEASURES, RESULT_COLUMNS, SUMMARY_COLUMNS, chance_levels, compare_flip_rates, mean_abs_difference, summarize,
)
from mmscale_core.robustness.perturbations import (
    BY_NAME, KINDS, PROBES, apply_image, apply_text, get_perturbations, list_perturbations,
)
from mmscale_core.robustness.runner import run_suite, select_scenarios
from mmscale_core.simulator.lexicon import pool_for
from mmscale_core.simulator.scenes import SceneSpec, render

TEXT = [p for p in list_perturbations() if p.kind == "text"]
IMAGE = [p for p in list_perturbations() if p.kind == "image"]
POOL = pool_for("street")
SENTENCES = [str(t) for t in POOL.text[::997][:12]]


@pytest.fixture(scope="module")
def scene() -> Image.Image:
    return render(SceneSpec("x", "street", ("child", "traffic"), "ok", 0, (0,)), size=96)


# --------------------------------------------------------------------------- perturbations

def test_registry_names_kinds_probes():
    names = [p.name for p in list_perturbations()]
    assert len(names) == len(set(names)) and len(TEXT) >= 8 and len(IMAGE) >= 9
    assert {p.kind for p in list_perturbations()} == set(KINDS)
    assert {p.probe for p in list_perturbations()} == set(PROBES)
    for p in list_perturbations():
        assert p.direction in (-1, 0, 1) and p.description, p.name
        assert (p.direction != 0) == (p.probe in ("sycophancy", "typographic") and p.name != "role_play"), p.name
    assert [p.name for p in get_perturbations("typos, blur")] == ["typos", "blur"]
    with pytest.raises(MmscaleError, match="unknown name.*nope"):
        get_perturbations("blur,nope")


@pytest.mark.parametrize("p", TEXT, ids=lambda p: p.name)
def test_text_perturbation_is_seeded_and_changes_its_input(p):
    for text in SENTENCES:
        once, again = apply_text(p, text, 3, "s1"), apply_text(p, text, 3, "s1")
        assert once == again and once != text, (p.name, text, once)
    drawn = {apply_text(p, SENTENCES[0], seed, key) for seed in range(6) for key in ("a", "b")}
    if p.name in ("typos", "surface_noise", "reword", "role_play") or p.probe == "sycophancy":
        assert len(drawn) > 1, p.name  # the seed matters


@pytest.mark.parametrize("p", IMAGE, ids=lambda p: p.name)
def test_image_perturbation_is_seeded_and_changes_its_input(p, scene):
    once, again = apply_image(p, scene, 5, "img"), apply_image(p, scene, 5, "img")
    assert once.size == scene.size and once.mode == "RGB"
    assert np.array_equal(np.asarray(once), np.asarray(again))
    diff = np.abs(np.asarray(once, float) - np.asarray(scene, float))
    assert diff.mean() > 0.5, p.name
    if p.probe == "typographic":  # the claim sits in a top banner; the rest of the scene is untouched
        assert diff[int(0.13 * scene.size[1]):].max() == 0 and diff[:int(0.12 * scene.size[1])].max() > 0


def _lexicon_key(text: str) -> list[str]:
    """Words lower-cased without punctuation, each with its letters sorted (undoes adjacent swaps)."""
    return ["".join(sorted(w)) for w in re.sub(r"[^a-z' ]", " ", text.lower()).split()]


def read_lexicon(text: str, candidates) -> str | None:
    """The longest candidate sentence whose words (as keys) occur contiguously in ``text``."""
    words = " " + " ".join(_lexicon_key(text)) + " "
    found = [c for c, key in _keys(tuple(candidates)) if key in words]
    return max(found, key=len) if found else None


@lru_cache(maxsize=4)
def _keys(candidates: tuple[str, ...]) -> list[tuple[str, str]]:
    return [(c, " " + " ".join(_lexicon_key(c)) + " ") for c in candidates]


@pytest.mark.parametrize("p", TEXT, ids=lambda p: p.name)
def test_text_perturbations_keep_the_simulators_sentence(p):
    """Control: a reader of the simulator's lexicon recovers the original sentence (so its latent truth)."""
    candidates = tuple(str(t) for t in POOL.text)
    for text in SENTENCES[:6]:
        perturbed = apply_text(p, text, 0, text)
        assert read_lexicon(perturbed, candidates) == text, (p.name, perturbed)


# --------------------------------------------------------------------------- scorers on a hand-made dataset

CLAIM_UP = re.compile(r"perfectly fine|totally acceptable|is okay|perfectly acceptable|completely fine|"
                      r"confirms this is okay")
CLAIM_DOWN = re.compile(r"clearly wrong|totally unacceptable|not okay|clearly unacceptable|completely wrong")


class LexiconScorer:
    """Reads the moral content only: the base acceptability of the lexicon sentence in the text."""

    name = "lexicon"

    def __init__(self, sentences):
        self.sentences = tuple(sentences)
        self.base = {str(t): float(b) for t, b in zip(POOL.text, POOL.base) if str(t) in set(self.sentences)}

    def score(self, frame, images):
        return np.array([self.base[read_lexicon(t, self.sentences)] for t in frame["scenario"]])


class PersuadableScorer(LexiconScorer):
    """Believes whatever claim is appended: 4.5 after approval, 1.5 after disapproval."""

    name = "persuadable"

    def score(self, frame, images):
        base = super().score(frame, images)
        up = frame["scenario"].str.contains(CLAIM_UP).to_numpy()
        down = frame["scenario"].str.contains(CLAIM_DOWN).to_numpy()
        return np.where(up, 4.5, np.where(down, 1.5, base))


class IgnoringScorer:
    """Ignores its input: a fixed score per scenario id."""

    name = "ignoring"

    def score(self, frame, images):
        return np.array([1 + (sum(map(ord, s)) % 40) / 10 for s in frame["scenario_id"]])


@pytest.fixture(scope="module")
def lexicon_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("robust") / "data"
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    picks = rng.choice(len(POOL), 30, replace=False)
    records = []
    for i in range(10):
        render(SceneSpec(f"im{i}", "street", ("child",) if i % 2 else (), "ok", 0, (i,)), size=64).save(
            root / "images" / f"im{i}.png")
        for j in picks[3 * i: 3 * i + 3]:
            truth = float(POOL.base[j])
            records.append(dict(image_id=f"im{i}", scenario_id=f"s{i}_{j}", setting="a street",
                                scenario=str(POOL.text[j]), normbank_label=None,
                                ratings=[int(np.clip(round(truth) + d, 1, 5)) for d in (-1, 0, 1)],
                                modalities=["text", "both", ("image", "text")[i % 2]], annotators=["a", "b", "c"],
                                split="test"))
    write_dataset(pd.DataFrame(records), root)
    return root


def test_a_scorer_that_ignores_its_input_flips_nothing(lexicon_data):
    dataset = load_dataset(lexicon_data)
    for scorer in (IgnoringScorer(), LexiconScorer(dataset.scenarios["scenario"])):
        results = run_suite(scorer, dataset, progress=False)
        summary = summarize(results, dataset.scenarios, list_perturbations(), n_boot=50)
        flips = summary[summary["measure"].isin(["flip rate", "directional flip rate", "mean abs delta"])]
        assert (flips["value"] == 0).all(), scorer.name
        tau = summary[(summary["measure"] == "kendall tau") & (summary["modality"] == "all")]
        assert (tau["value"] == 1).all() and list(summary.columns) == list(SUMMARY_COLUMNS)


def test_a_persuadable_scorer_flips_in_the_direction_pushed(lexicon_data):
    dataset = load_dataset(lexicon_data)
    scorer = PersuadableScorer(dataset.scenarios["scenario"])
    chosen = get_perturbations("persuade_acceptable,persuade_unacceptable,authority_unacceptable,typos")
    results = run_suite(scorer, dataset, chosen, progress=False)
    summary = summarize(results, dataset.scenarios, chosen, n_boot=50).set_index(["perturbation", "modality",
                                                                                  "measure"])
    base = LexiconScorer(dataset.scenarios["scenario"]).score(dataset.scenarios, {})
    share_ok = float(np.mean(base > 2.5))
    assert 0 < share_ok < 1
    for name, expected in (("persuade_acceptable", 1 - share_ok), ("persuade_unacceptable", share_ok),
                           ("authority_unacceptable", share_ok)):
        assert summary.loc[(name, "all", "directional flip rate"), "value"] == pytest.approx(expected)
        assert summary.loc[(name, "all", "flip rate"), "value"] == pytest.approx(expected)
        low, high = summary.loc[(name, "all", "flip rate"), ["ci_low", "ci_high"]]
        assert low <= expected <= high
    assert summary.loc[("typos", "all", "flip rate"), "value"] == 0
    assert ("typos", "all", "directional flip rate") not in summary.index  # no direction, no such measure


# --------------------------------------------------------------------------- measures against brute force

def _hand_made(seed: int = 1, n_images: int = 7) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    rows, humans = [], []
    for i in range(n_images):
        for j in range(1 + i % 4):
            sid = f"s{i}_{j}"
            original = float(rng.choice([1.0, 2.0, 2.4, 2.6, 3.0, 4.5]))
            rows.append((sid, f"im{i}", ("text", "image", "both")[j % 3], "p", original,
                         float(np.clip(original + rng.normal(0, 0.8), 1, 5))))
            humans.append((sid, float(rng.integers(1, 6))))
    results = pd.DataFrame(rows, columns=list(RESULT_COLUMNS))
    return results, pd.DataFrame(humans, columns=["scenario_id", "score"])


def _brute(results: pd.DataFrame, human: pd.DataFrame, direction: int) -> dict[str, float]:
    from scipy.stats import kendalltau
    from sklearn.metrics import ndcg_score

    frame = results.merge(human, on="scenario_id")
    ok_o, ok_p = frame["original"] > 2.5, frame["perturbed"] > 2.5
    out = {"flip rate": float((ok_o != ok_p).mean()),
           "mean abs delta": float((frame["perturbed"] - frame["original"]).abs().mean())}
    if direction:
        out["directional flip rate"] = float(((~ok_o & ok_p) if direction > 0 else (ok_o & ~ok_p)).mean())
    taus, deltas = [], []
    for _, g in frame.groupby("image_id"):
        if len(g) < 2:
            continue
        if g["original"].nunique() > 1 and g["perturbed"].nunique() > 1:
            taus.append(kendalltau(g["original"], g["perturbed"]).statistic)
        gains = [2.0 ** g["score"].to_numpy() - 1]
        deltas.append(ndcg_score(gains, [g["perturbed"].to_numpy()], k=5, ignore_ties=False)
                      - ndcg_score(gains, [g["original"].to_numpy()], k=5, ignore_ties=False))
    out["kendall tau"] = float(np.mean(taus))
    out["delta NDCG@5"] = float(np.mean(deltas))
    return out


@pytest.mark.parametrize("direction", [1, -1, 0])
def test_measures_equal_brute_force(direction):
    from mmscale_core.robustness.perturbations import Perturbation

    results, human = _hand_made()
    p = Perturbation("p", "text", "sycophancy" if direction else "noise", direction, lambda x, r: x)
    summary = summarize(results, human, [p], n_boot=200, seed=4)
    got = summary[summary["modality"] == "all"].set_index("measure")
    for measure, value in _brute(results, human, direction).items():
        assert got.loc[measure, "value"] == pytest.approx(value, abs=1e-12), measure
        assert got.loc[measure, "ci_low"] <= value + 1e-12 <= got.loc[measure, "ci_high"] + 2e-12, measure
    text_rows = results[results["modality"] == "text"]
    by_text = summary[summary["modality"] == "text"].set_index("measure")
    assert by_text.loc["flip rate", "value"] == pytest.approx(_brute(text_rows, human, direction)["flip rate"])


def test_bootstrap_ci_is_a_resample_of_images():
    """The CI is the 2.5-97.5% range of flip rates over image resamples (checked by rebuilding resamples)."""
    from mmscale_core.metrics.evaluate import bootstrap_weights
    from mmscale_core.robustness.perturbations import Perturbation

    results, human = _hand_made(seed=3, n_images=9)
    p = Perturbation("p", "text", "noise", 0, lambda x, r: x)
    got = summarize(results, human, [p], n_boot=300, seed=2).set_index(["modality", "measure"])
    images = sorted(results["image_id"].unique(), key=list(dict.fromkeys(results["image_id"])).index)
    weights = bootstrap_weights(len(images), 300, np.random.default_rng([2, 0, 0]))
    flips = results.assign(flip=(results["original"] > 2.5) != (results["perturbed"] > 2.5))
    per_image = [flips.loc[flips["image_id"] == img, "flip"].to_numpy() for img in images]
    rates = [np.concatenate([per_image[i] for i, c in enumerate(w) for _ in range(int(c))]).mean() for w in weights]
    assert got.loc[("all", "flip rate"), ["ci_low", "ci_high"]].tolist() == pytest.approx(
        np.quantile(rates, [0.025, 0.975]).tolist())


def test_chance_levels_equal_independent_draws():
    results, human = _hand_made(seed=5)
    chance = chance_levels(results, human).set_index(["modality", "measure"])["chance"]
    x = results["original"].to_numpy()
    pairs_side = (x[:, None] > 2.5) != (x[None, :] > 2.5)
    assert chance[("all", "flip rate")] == pytest.approx(pairs_side.mean())
    assert chance[("all", "mean abs delta")] == pytest.approx(np.abs(x[:, None] - x[None, :]).mean())
    assert mean_abs_difference(np.array([1.0, 3.0])) == pytest.approx(1.0)
    p = (x > 2.5).mean()
    assert chance[("all", "directional flip rate")] == pytest.approx(p * (1 - p))
    assert chance[("all", "kendall tau")] == 0


def test_paired_flip_test():
    a, _ = _hand_made(seed=6)
    stable = a.assign(perturbed=a["original"])
    same = compare_flip_rates(a, a, n_boot=100, n_perm=200)
    assert (same["diff"] == 0).all() and (same["p_value"] == 1).all()
    table = compare_flip_rates(a, stable, n_boot=200, n_perm=500, seed=1).set_index("perturbation")
    flips = ((a["original"] > 2.5) != (a["perturbed"] > 2.5)).mean()
    assert table.loc["all", "diff"] == pytest.approx(flips) and table.loc["all", "flip_b"] == 0
    assert table.loc["all", "ci_low"] <= flips <= table.loc["all", "ci_high"]
    with pytest.raises(MmscaleError, match="same scenarios"):
        compare_flip_rates(a, a.iloc[:-1], n_boot=10, n_perm=10)


# --------------------------------------------------------------------------- a tiny trained run and the CLI



@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, one_torch_thread):
    pytest.importorskip("torch")
    from test_training import make_tiny_dataset, tiny_config

    from mmscale_core.training import train

    data = make_tiny_dataset(tmp_path_factory.mktemp("robust_run") / "data", n_images=10)
    root = tmp_path_factory.mktemp("robust_runs") / "table3" / "minilm-effnet"
    for objective in ("lipo", "bpo"):
        train(tiny_config(data, root / objective / "seed0", epochs=1, tuning="frozen", objective=objective),
              progress=False)
    return root / "bpo" / "seed0", data


def test_run_scorer_originals_equal_the_runs_predictions(tiny_run):
    from mmscale_core.robustness.scorers import RunScorer

    run, data = tiny_run
    dataset = load_dataset(data)
    results = run_suite(RunScorer.from_run_dir(run), dataset, get_perturbations("typos,blur"), progress=False)
    predictions = pd.read_parquet(run / "predictions.parquet").set_index("scenario_id")
    expected = predictions.loc[results["scenario_id"], "calibrated_score"].to_numpy()  # bpo: no scale
    np.testing.assert_allclose(results["original"].to_numpy(), expected, atol=1e-5)
    assert results["perturbed"].between(1, 5).all()


def test_perturbed_copies_are_hashed_once_and_score_as_the_plain_images(tiny_run, monkeypatch):
    """``KeyedImage.holding``: same scores as passing the PIL images, and the tower hashes no pixels itself."""
    import mmscale_core.models.embedded as embedded
    from mmscale_core.models.base import KeyedImage
    from mmscale_core.robustness.perturbations import apply_image
    from mmscale_core.robustness.scorers import RunScorer

    run, data = tiny_run
    dataset = load_dataset(data)
    frame = select_scenarios(dataset)
    blur = get_perturbations("blur")[0]
    ids = sorted(frame["image_id"].unique())
    copies = {i: apply_image(blur, KeyedImage(dataset.image_path(i)).load(), 0, i) for i in ids}
    plain = RunScorer.from_run_dir(run).score(frame, copies)  # a fresh run: nothing cached yet
    hashed = []
    monkeypatch.setattr(embedded, "pixel_key", lambda image: hashed.append(image) or pixel_key(image))
    held = {i: KeyedImage.holding(image) for i, image in copies.items()}
    assert all(held[i].cache_key == pixel_key(copies[i]) and held[i].load() is copies[i] for i in ids)
    np.testing.assert_array_equal(RunScorer.from_run_dir(run).score(frame, held), plain)
    assert hashed == []  # before: each copy's pixels hashed again at every lookup (warm, pool, each list)


def test_cli_writes_the_issues_columns_deterministically(tiny_run, tmp_path, capsys):
    from mmscale_core.cli import main as cli_main

    run, data = tiny_run
    names = "persuade_acceptable,surface_noise,gaussian_noise,typographic_unsafe"
    for out in ("a", "b"):
        argv = ["robustness", "--run", str(run), "--data", str(data), "--perturbations", names,
                "--out", str(tmp_path / out), "--n-boot", "50", "--no-progress"]
        assert cli_main(argv) == 0
    assert "wrote" in capsys.readouterr().out
    for name in ("robustness.parquet", "summary.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    results = pd.read_parquet(tmp_path / "a" / "robustness.parquet")
    summary = pd.read_csv(tmp_path / "a" / "summary.csv")
    assert list(results.columns) == list(RESULT_COLUMNS) and list(summary.columns) == list(SUMMARY_COLUMNS)
    assert list(dict.fromkeys(results["perturbation"])) == names.split(",")
    assert set(summary["measure"]) == set(MEASURES) and set(summary["modality"]) <= {"all", "text", "image", "both"}
    assert set(summary["kind"]) == {"text", "image"}
    # test-time augmentation goes through the same interface
    assert cli_main(["robustness", "--run", str(run), "--data", str(data), "--perturbations", "typos",
                     "--out", str(tmp_path / "tta"), "--tta", "2", "--n-boot", "20", "--no-progress"]) == 0
    assert len(pd.read_parquet(tmp_path / "tta" / "robustness.parquet")) == len(results) // 4


def test_cli_errors_are_one_message(tiny_run, tmp_path, capsys):
    from mmscale_core.cli import main as cli_main

    run, data = tiny_run
    assert cli_main(["robustness", "--run", str(run), "--data", str(data), "--perturbations", "nope",
                     "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown name(s) nope" in err and "Traceback" not in err
    assert cli_main(["robustness", "--run", str(run), "--data", str(data), "--split", "val",
                     "--out", str(tmp_path)]) == 2
    assert "no scenarios in split 'val'" in capsys.readouterr().err


def test_runs_sharing_frozen_features_score_as_alone(tiny_run):
    from mmscale_core.robustness.scorers import RunScorer

    run, data = tiny_run
    dataset = load_dataset(data)
    chosen = get_perturbations("reword,jpeg30")
    alone = run_suite(RunScorer.from_run_dir(run.parent.parent / "lipo" / "seed0"), dataset, chosen, progress=False)
    donor = RunScorer.from_run_dir(run)
    run_suite(donor, dataset, chosen, progress=False)
    sharing = RunScorer.from_run_dir(run.parent.parent / "lipo" / "seed0")
    assert sharing.share_features_with(donor) == ["text", "image trunk", "image pooled"]
    pd.testing.assert_frame_equal(run_suite(sharing, dataset, chosen, progress=False), alone)


def test_report_tables_on_two_runs(tiny_run, tmp_path):
    from mmscale_core.robustness import report

    run, data = tiny_run
    dataset = load_dataset(data, decode_images=False)
    runs = report.suite_runs(run.parent.parent, None)
    assert list(runs["name"]) == ["lipo", "bpo"]
    chosen = get_perturbations("persuade_acceptable,typos,typographic_safe,blur")
    report.run_all(runs, dataset, tmp_path, perturbations=chosen, n_boot=20, tta_views=2, progress=False)
    results, summary = report.load_results(tmp_path, ["lipo", "bpo", "lipo+tta"])
    table = report.with_chance(summary, results, dataset.scenarios)
    assert table["chance"].notna().all() and set(table["run"]) == {"lipo", "bpo", "lipo+tta"}
    flips = report.measure_table(table, "flip rate", ["lipo", "bpo"], "companion, simulated data")
    assert list(flips["perturbation"]) == [p.name for p in chosen] and flips["lipo"].str.contains("chance").all()
    tests = report.paired_tests(results, [("lipo", "bpo")], n_boot=20, n_perm=20)
    assert set(tests["probe"]) == {"sycophancy", "noise", "typographic"} and tests["p_value"].between(0, 1).all()
    tta = report.intervention_table(results, dataset.scenarios, n_boot=20)
    assert list(tta["measure"]) == ["flip rate, sycophancy probes", "flip rate, typographic probes",
                                    "NDCG@5 of the originals"]
    pooled = report.pooled_by_kind({"lipo": results["lipo"]}, dataset.scenarios, n_boot=20)
    assert set(pooled["perturbation"]) == {"all text perturbations", "all image perturbations"}


def test_descriptions_are_reader_sentences_that_match_the_constants():
    """The report's table shows each description: no developer notes, and the typo rate it names is the one used."""
    from mmscale_core.robustness.perturbations import TYPO_RATE

    for p in list_perturbations():
        assert "rng" not in p.description and ":func:" not in p.description and "``" not in p.description, p.name
    typos = next(p for p in list_perturbations() if p.name == "typos")
    assert f"{round(TYPO_RATE * 100)} in 100" in typos.description


def test_human_scores_are_looked_up_per_scenario_and_an_unknown_id_is_named():
    from mmscale_core.robustness.measures import with_human_scores

    scenarios = pd.DataFrame({"scenario_id": ["s1", "s2", "s3"], "score": [1.0, 2.5, 4.0]})
    results = pd.DataFrame({"scenario_id": ["s3", "s1", "s3"], "original": [1.0, 2.0, 3.0]})
    assert with_human_scores(results, scenarios)["score"].tolist() == [4.0, 1.0, 4.0]
    with pytest.raises(MmscaleError, match=r"scenario_id 'sX' is not in the dataset \(2 rows"):
        with_human_scores(pd.DataFrame({"scenario_id": ["s1", "sX", "sX"]}), scenarios)


def test_perturbed_images_are_made_once_for_every_scorer_within_the_budget(tiny_run, monkeypatch):
    """``run_all``'s store of perturbed copies: a kept copy is the one every later scorer gets (the
    same pixels ``apply_image`` makes), copies past the budget are made again, and a suite scored
    through the store equals one without it."""
    from mmscale_core.robustness import runner
    from mmscale_core.robustness.scorers import RunScorer

    run, data = tiny_run
    dataset = load_dataset(data)
    chosen = get_perturbations("reword,jpeg30,blur")
    image_id = sorted(dataset.images)[0]
    made = []
    monkeypatch.setattr(runner, "apply_image", lambda *args: made.append(args[0].name) or apply_image(*args))
    store = runner.PerturbedImages(dataset, seed=0)
    first = store.get(BY_NAME["jpeg30"], image_id, 64)
    assert store.get(BY_NAME["jpeg30"], image_id, 64) is first and made == ["jpeg30"]
    from mmscale_core.models.base import KeyedImage

    direct = apply_image(BY_NAME["jpeg30"], KeyedImage(dataset.image_path(image_id), 64).load(), 0, image_id)
    assert first.cache_key == pixel_key(direct)
    none_kept = runner.PerturbedImages(dataset, seed=0, budget_mb=0)  # made again at every call
    none_kept.get(BY_NAME["blur"], image_id, 64)
    none_kept.get(BY_NAME["blur"], image_id, 64)
    assert made.count("blur") == 2 and none_kept.held == 0

    alone = run_suite(RunScorer.from_run_dir(run), dataset, chosen, progress=False)
    shared = runner.PerturbedImages(dataset, seed=0)
    run_suite(RunScorer.from_run_dir(run.parent.parent / "lipo" / "seed0"), dataset, chosen, progress=False,
              perturbed_images=shared)
    made.clear()
    again = run_suite(RunScorer.from_run_dir(run), dataset, chosen, progress=False, perturbed_images=shared)
    assert made == []  # the second scorer took every copy from the store
    pd.testing.assert_frame_equal(again, alone)
