"""The judge pipeline stage's command line and notebook 10's report helpers (no model is loaded)."""

import json

import numpy as np
import pandas as pd
import pytest

from mmscale_core.errors import MmscaleError
from mmscale_core.judges import report
from mmscale_core.judges.stage import judge_argv
from mmscale_core.metrics.upstream import evaluate_predictions


def _scenarios(n_images=4, per_image=4, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_images):
        for j in range(per_image):
            rows.append({"scenario_id": f"im{i}-{j}", "image_id": f"im{i}", "split": "test" if i < 3 else "train",
                         "score": float(rng.integers(1, 6)), "modality": ("text", "image", "both")[j % 3]})
    return pd.DataFrame(rows)


def _write_judge(root, judge, prompt, scenarios, predictions):
    path = root / judge / prompt / "predictions.jsonl"
    path.parent.mkdir(parents=True)
    with open(path, "w") as fh:
        for sid, pred in predictions.items():
            fh.write(json.dumps({"scenario_id": sid, "prediction": pred, "model_id": "/models/m",
                                 "provider": "local-expected", "prompt_type": prompt}) + "\n")
    return path


def test_judge_argv_stand_in_and_real_checkpoint():
    settings = {"scoring": "expected", "split": "test", "exemplar_seed": 3}
    argv = judge_argv(settings, {"random_stand_in": True, "limit": 24, "torch_threads": 1}, "qwen2-vl", "icl3",
                      "data/dataset", "runs/judges/qwen2-vl/icl3", "runs/tiny")
    assert argv[:2] == ["judge", "--data"]
    assert argv[argv.index("--backbone") + 1] == "qwen2-vl"
    assert argv[argv.index("--backbone-arg") + 1] == "path=runs/tiny"
    assert argv[argv.index("--limit") + 1] == "24"
    assert argv[argv.index("--exemplar-seed") + 1] == "3"
    assert argv[argv.index("--out") + 1] == "runs/judges/qwen2-vl/icl3/predictions.jsonl"
    real = judge_argv(settings, {"models": {"qwen2-2b": {"backbone": "qwen2-vl", "path": "/m", "torch_dtype": "bf16"}},
                                 "device": "cuda", "limit": 0}, "qwen2-2b", "zero_shot", "d", "o", "t")
    assert real[real.index("--backbone") + 1] == "qwen2-vl"
    assert [real[i + 1] for i, a in enumerate(real) if a == "--backbone-arg"] == ["path=/m", "torch_dtype=bf16"]
    assert "--limit" not in real and real[real.index("--device") + 1] == "cuda"


def test_judge_argv_errors_name_the_params_key():
    with pytest.raises(MmscaleError, match=r"profiles.paper.judges.models.llava.path"):
        judge_argv({}, {"models": {}}, "llava", "zero_shot", "d", "o", "t", "paper")
    with pytest.raises(MmscaleError, match="cot prompt needs --scoring generate"):
        judge_argv({"scoring": "expected"}, {"random_stand_in": True}, "qwen2-vl", "cot", "d", "o", "t", "smoke")


def test_is_random_stand_in():
    assert report.is_random_stand_in({"judges": {"random_stand_in": True}})
    assert not report.is_random_stand_in({"judges": {"random_stand_in": False}})
    assert not report.is_random_stand_in({})


def test_judges_scored_like_evaluate_predictions_and_common_scenarios(tmp_path):
    scenarios = _scenarios()
    test = scenarios[scenarios["split"] == "test"]
    rng = np.random.default_rng(1)
    full = dict(zip(test["scenario_id"], rng.uniform(1, 5, len(test))))
    partial = {sid: v for k, (sid, v) in enumerate(full.items()) if k < 8}
    partial[next(iter(partial))] = None  # a parse failure: left out
    _write_judge(tmp_path, "j", "zero_shot", scenarios, full)
    _write_judge(tmp_path, "j", "icl3", scenarios, partial)
    runs = report.judge_runs(tmp_path)
    assert list(runs["prompt"]) == ["icl3", "zero_shot"] and set(runs["scoring"]) == {"local-expected"}
    long, common = report.evaluate_judges(runs, scenarios, n_boot=20)
    assert common == {sid for sid, v in partial.items() if v is not None}
    expected = evaluate_predictions(test.assign(prediction=test["scenario_id"].map(full)), n_in_split=len(test),
                                    n_boot=20)
    got = long[long["system"] == "j (zero_shot)"].reset_index(drop=True)
    pd.testing.assert_series_equal(got["value"], expected["value"], check_names=False)
    assert got.loc[got["metric"] == "coverage", "value"].item() == 1.0
    icl3 = long[long["system"] == "j (icl3)"]
    assert icl3.loc[icl3["metric"] == "coverage", "value"].item() == pytest.approx(7 / len(test))


def test_judge_runs_errors(tmp_path):
    with pytest.raises(MmscaleError, match="dvc repro judge"):
        report.judge_runs(tmp_path)
    scenarios = _scenarios()
    _write_judge(tmp_path, "j", "zero_shot", scenarios, {"im3-0": 3.0})  # a train scenario only
    with pytest.raises(MmscaleError, match="not in the test split"):
        report.evaluate_judges(report.judge_runs(tmp_path), scenarios, n_boot=0)


def test_wide_cells_and_missing_metric():
    long = pd.DataFrame([
        {"system": "a", "kind": "k", "metric": "MAE", "value": 0.5, "ci_low": 0.4, "ci_high": 0.6, "chance": 1.0,
         "n": 12},
        {"system": "a", "kind": "k", "metric": "Pairwise accuracy T-T", "value": float("nan"), "ci_low": float("nan"),
         "ci_high": float("nan"), "chance": float("nan"), "n": 0}])
    table = report.wide(long, ["MAE", "Pairwise accuracy T-T"], "src")
    assert table.loc[0, "MAE [95% CI] (chance)"] == "0.500 [0.400, 0.600] (chance 1.00)"
    assert table.loc[0, "Pairwise accuracy T-T [95% CI] (chance)"] == "—"
    assert table.loc[0, "n_scenarios"] == 12 and table.loc[0, "source"] == "src"
    with pytest.raises(MmscaleError, match="RMSE"):
        report.wide(long, ["RMSE"], "src")


def test_backbone_args_parse_one_way_for_train_and_judge():
    """``--backbone-arg`` (mmscale train and mmscale judge share the parser): JSON where it parses, else text."""
    from mmscale_core.errors import MmscaleError
    from mmscale_core.models import parse_backbone_args

    assert parse_backbone_args(["path=/ckpt", "image_size=336", "flags={\"a\": 1}", " k =v=w"]) == {
        "path": "/ckpt", "image_size": 336, "flags": {"a": 1}, "k": "v=w"}
    assert parse_backbone_args(None) == {}
    for bad in ("novalue", "=3"):
        with pytest.raises(MmscaleError, match="expects KEY=VALUE"):
            parse_backbone_args([bad])
