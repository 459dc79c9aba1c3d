"""``mmscale evaluate`` on parquet, CSV and upstream JSONL input (null predictions), every error case,
and ``mmscale predict --format upstream`` round-tripping into it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mmscale_core.cli import main as cli_main
from mmscale_core.data import write_dataset
from mmscale_core.metrics.upstream import RELEASE_METRICS, evaluate_predictions
from mmscale_core.upstream_predictions import UPSTREAM_FIELDS

N_BOOT = ["--n-boot", "50"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """40 images of 1-5 scenarios, 1-4 ratings each (means such as 2.5 occur), train/test by image."""
    rng = np.random.default_rng(2)
    records = []
    for i in range(40):
        for j in range(int(rng.integers(1, 6))):
            n = int(rng.integers(1, 5))
            records.append(dict(
                image_id=f"img{i:03d}", scenario_id=f"img{i:03d}_s{j:02d}", setting="a kitchen",
                scenario=f"scenario {i}-{j}", normbank_label=None,
                ratings=[int(r) for r in rng.integers(1, 6, n)],
                modalities=[str(m) for m in rng.choice(["text", "image", "both"], n)],
                annotators=[f"a{k}" for k in range(n)], split="test" if i % 3 == 0 else "train"))
    root = tmp_path_factory.mktemp("evaluate") / "data"
    write_dataset(pd.DataFrame(records), root)
    return root


@pytest.fixture(scope="module")
def scenarios(data) -> pd.DataFrame:
    from mmscale_core.data import load_dataset

    return load_dataset(data, check_images=False).scenarios


def integer_predictions(scenarios: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """A prompted judge's answers: integers 1-5 (many ties), about 20% unparseable (None)."""
    rng = np.random.default_rng(seed)
    pred = np.clip(np.rint(scenarios["score"] + rng.normal(0, 1, len(scenarios))), 1, 5)
    frame = scenarios[["scenario_id", "image_id", "scenario", "score", "modality", "split"]].assign(prediction=pred)
    frame["prediction"] = frame["prediction"].astype(object).where(rng.random(len(frame)) > 0.2, None)
    return frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def expected_json(scenarios: pd.DataFrame, preds: pd.DataFrame, split: str = "test") -> dict[str, dict]:
    in_split = scenarios[scenarios["split"] == split]
    merged = in_split[["scenario_id", "image_id", "score", "modality"]].merge(
        preds[["scenario_id", "prediction"]], on="scenario_id", how="left")
    merged["prediction"] = pd.to_numeric(merged["prediction"])
    table = evaluate_predictions(merged[merged["prediction"].notna()], n_in_split=len(in_split), n_boot=50)
    return table.set_index("metric").to_dict(orient="index")


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    code = cli_main(["evaluate", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def check_output(out_json: Path, expected: dict[str, dict]) -> None:
    metrics = json.loads(out_json.read_text())["metrics"]
    assert [m["metric"] for m in metrics] == list(RELEASE_METRICS)
    for m in metrics:
        assert set(m) == {"metric", "value", "ci_low", "ci_high", "chance", "n"}
        want = expected[m["metric"]]
        for key in ("value", "ci_low", "ci_high", "chance"):
            if m[key] is None:
                assert np.isnan(want[key]), (m["metric"], key)
            else:
                assert m[key] == pytest.approx(want[key], abs=1e-12), (m["metric"], key)
        assert m["n"] == want["n"]


def brute_pairwise(scenarios: pd.DataFrame, preds: pd.DataFrame, split: str = "test") -> float:
    merged = scenarios[scenarios["split"] == split].merge(preds[["scenario_id", "prediction"]], on="scenario_id")
    merged = merged[merged["prediction"].notna()]
    credit = pairs = 0.0
    for _, g in merged.groupby("image_id"):
        rows = list(zip(g["score"], g["prediction"].astype(float)))
        for a in range(len(rows)):
            for b in range(a + 1, len(rows)):
                (ga, pa), (gb, pb) = rows[a], rows[b]
                if ga != gb:
                    pairs += 1
                    credit += 0.5 if pa == pb else float((pa > pb) == (ga > gb))
    return credit / pairs


def test_upstream_jsonl_with_null_predictions(data, scenarios, tmp_path, capsys):
    preds = integer_predictions(scenarios)
    path = tmp_path / "qwen.jsonl"
    with open(path, "w") as fh:
        for row in preds.itertuples():
            fh.write(json.dumps({"image_id": row.image_id + ".png", "scenario_id": row.scenario_id,
                                 "text": row.scenario, "gold_rating": row.score, "modality": row.modality,
                                 "model_id": "Qwen/Qwen2.5-VL-7B-Instruct", "provider": "vllm",
                                 "prompt_type": "zeroshot", "raw_output": "Rating: 3", "error": None,
                                 "prediction": row.prediction}) + "\n")
    out = tmp_path / "metrics.json"
    code, stdout, err = run_cli(["--data", str(data), "--predictions", str(path), "--json", str(out), *N_BOOT], capsys)
    assert code == 0, err
    check_output(out, expected_json(scenarios, preds))
    metrics = {m["metric"]: m for m in json.loads(out.read_text())["metrics"]}
    assert metrics["Pairwise accuracy (delta>=0)"]["value"] == pytest.approx(brute_pairwise(scenarios, preds))
    test = preds[preds["split"] == "test"]
    assert metrics["coverage"]["value"] == pytest.approx(test["prediction"].notna().mean())
    assert "other splits ignored" in stdout and "null in the file" in stdout
    assert "gold_rating" not in stdout  # the file's gold agrees with the dataset
    lines = stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("metric"))
    assert lines[header + 2].startswith("coverage")
    assert "Pairwise accuracy T-B" in stdout and "Wilson" in stdout


def test_parquet_and_csv_give_the_same_metrics(data, scenarios, tmp_path, capsys):
    preds = integer_predictions(scenarios, seed=1)
    expected = expected_json(scenarios, preds)
    parquet = tmp_path / "p.parquet"
    preds.assign(prediction=pd.to_numeric(preds["prediction"]))[["scenario_id", "prediction"]].to_parquet(parquet)
    csv = tmp_path / "p.csv"
    preds[["scenario_id", "prediction"]].rename(columns={"prediction": "pred"}).to_csv(csv, index=False)
    custom = tmp_path / "custom.csv"
    preds[["scenario_id", "prediction"]].rename(columns={"prediction": "my_score"}).to_csv(custom, index=False)
    for path, extra in ((parquet, []), (csv, []), (custom, ["--pred-col", "my_score"])):
        out = tmp_path / f"{path.stem}.json"
        code, _, err = run_cli(["--data", str(data), "--predictions", str(path), "--json", str(out), *N_BOOT, *extra],
                               capsys)
        assert code == 0, err
        check_output(out, expected)


def test_other_split_and_disagreeing_gold(data, scenarios, tmp_path, capsys):
    preds = integer_predictions(scenarios, seed=2)
    preds["gold_rating"] = preds["score"]
    target = preds.index[preds["split"] == "train"][0]
    preds.loc[target, "gold_rating"] = preds.loc[target, "score"] + 1
    path = tmp_path / "p.jsonl"
    preds[["scenario_id", "prediction", "gold_rating"]].to_json(path, orient="records", lines=True)
    out = tmp_path / "train.json"
    code, stdout, err = run_cli(["--data", str(data), "--predictions", str(path), "--split", "train",
                                 "--json", str(out), *N_BOOT], capsys)
    assert code == 0, err
    assert "1 gold_rating value(s)" in stdout and preds.loc[target, "scenario_id"] in stdout
    check_output(out, expected_json(scenarios, preds, split="train"))


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize("name, content, message", [
    ("unknown.jsonl", '{"scenario_id": "img000_s00", "prediction": 3}\n{"scenario_id": "nope", "prediction": 2}\n',
     ["line 2", "'nope'", "not in the dataset"]),
    ("dup.jsonl", '{"scenario_id": "img000_s00", "prediction": 3}\n\n{"scenario_id": "img000_s00", "prediction": 2}\n',
     ["line 3", "duplicate", "first at line 1"]),
    ("text.jsonl", '{"scenario_id": "img000_s00", "prediction": "four"}\n', ["line 1", "'prediction'", "'four'"]),
    ("bool.jsonl", '{"scenario_id": "img000_s00", "prediction": true}\n', ["line 1", "not a number"]),
    ("inf.csv", "scenario_id,prediction\nimg000_s00,inf\n", ["line 2", "not a finite number"]),
    ("bad.csv", "scenario_id,pred\nimg000_s00,3\nimg001_s00,abc\n", ["line 3", "'img001_s00'", "'pred'", "'abc'"]),
    ("broken.jsonl", '{"scenario_id": "img000_s00", "prediction": 3}\n{"scenario_id": \n',
     ["line 2", "not valid JSON"]),
    ("noid.csv", "id,prediction\na,3\n", ["no 'scenario_id' field"]),
    ("nopred.csv", "scenario_id,score\nimg000_s00,3\n", ["no prediction field", "--pred-col"]),
    ("missing-id.jsonl", '{"scenario_id": "img000_s00", "prediction": 3}\n{"prediction": 3}\n',
     ["line 2", "'scenario_id'", "missing"]),
    ("preds.txt", "scenario_id,prediction\n", ["unknown prediction file type"]),
])
def test_errors_name_file_line_and_field(data, tmp_path, capsys, name, content, message):
    path = _write(tmp_path / name, content)
    out = tmp_path / "out.json"
    code, stdout, err = run_cli(["--data", str(data), "--predictions", str(path), "--json", str(out)], capsys)
    assert code == 2
    assert "Traceback" not in err and str(path) in err
    for part in message:
        assert part in err, (part, err)
    assert not out.exists()


def test_errors_for_split_and_missing_file(data, tmp_path, capsys):
    path = _write(tmp_path / "p.jsonl", '{"scenario_id": "img000_s00", "prediction": 3}\n')
    code, _, err = run_cli(["--data", str(data), "--predictions", str(path), "--split", "validation"], capsys)
    assert code == 2 and "no split 'validation'" in err and "test, train" in err
    code, _, err = run_cli(["--data", str(data), "--predictions", str(tmp_path / "absent.jsonl")], capsys)
    assert code == 2 and "no such prediction file" in err
    empty = _write(tmp_path / "nulls.jsonl", '{"scenario_id": "img000_s00", "prediction": null}\n')
    code, _, err = run_cli(["--data", str(data), "--predictions", str(empty)], capsys)
    assert code == 2 and "no prediction for any" in err


def test_predict_format_upstream_round_trips_into_evaluate(tmp_path, capsys):
    pytest.importorskip("torch")
    from test_training import make_tiny_dataset, tiny_config

    from mmscale_core.training import train

    data = make_tiny_dataset(tmp_path / "data", n_images=10)
    run = train(tiny_config(data, tmp_path / "run", epochs=1, tuning="frozen"), progress=False)
    out = tmp_path / "preds.jsonl"
    assert cli_main(["predict", "--run", str(run), "--data", str(data), "--out", str(out), "--format", "upstream",
                     "--no-progress"]) == 0
    capsys.readouterr()
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    own = pd.read_parquet(run / "predictions.parquet").set_index("scenario_id")
    assert len(rows) == len(own)
    for row in rows:
        assert tuple(row) == UPSTREAM_FIELDS
        assert row["provider"] == "mmscale" and row["prompt_type"] == "trained" and row["error"] is None
        assert row["model_id"] == "mmscale/minilm-effnet+lipo/seed0"
        assert row["prediction"] == pytest.approx(own.loc[row["scenario_id"], "calibrated_score"], abs=1e-6)
        assert 1.0 <= row["prediction"] <= 5.0
    metrics_path = tmp_path / "metrics.json"
    code, stdout, err = run_cli(["--data", str(data), "--predictions", str(out), "--json", str(metrics_path),
                                 *N_BOOT], capsys)
    assert code == 0, err
    metrics = {m["metric"]: m for m in json.loads(metrics_path.read_text())["metrics"]}
    assert metrics["coverage"]["value"] == 1.0
    assert "gold_rating" not in stdout  # the written gold is the dataset's
    test = own[own["split"] == "test"]
    scores = pd.read_parquet(data / "scenarios.parquet").set_index("scenario_id")
    gold = scores.loc[test.index, "ratings"].map(np.mean)
    assert metrics["MAE"]["value"] == pytest.approx(np.mean(np.abs(test["calibrated_score"] - gold)), abs=1e-6)
