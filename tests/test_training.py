"""The training loop: outputs, determinism, exact resume after a kill, data batching, CLI errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

from mmscale_core.cli import main as cli_main  # noqa: E402
from mmscale_core.data import load_dataset, write_dataset  # noqa: E402
from mmscale_core.errors import MmscaleError  # noqa: E402
from mmscale_core.training import (  # noqa: E402
    ADAPTER_DIR, CHECKPOINT_FILE, HEAD_FILE, PREDICTION_COLUMNS, TrainConfig, epoch_batches, make_lists,
    select_training_images, train,
)

ACTIONS = ["helping a stranger", "stealing a wallet", "shouting at a child", "sharing food", "littering in the park"]
BASE_SCORES = [5, 1, 2, 4, 2]


def make_tiny_dataset(root: Path, n_images: int = 16, size: int = 40, seed: int = 0) -> Path:
    """Red or blue images; red keeps each action's score, blue mirrors it (6 - s): image-grounded lists."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(n_images):
        red = i % 2 == 0
        pixels = np.zeros((size, size, 3), np.uint8)
        pixels[..., 0 if red else 2] = 200
        Image.fromarray(pixels).save(root / "images" / f"img{i:03d}.png")
        for j in rng.choice(len(ACTIONS), 2 + i % 3, replace=False):
            truth = BASE_SCORES[j] if red else 6 - BASE_SCORES[j]
            records.append(dict(
                image_id=f"img{i:03d}", scenario_id=f"s{i:03d}_{j}", setting="a street", scenario=ACTIONS[j],
                normbank_label=None, ratings=[int(np.clip(truth + d, 1, 5)) for d in rng.integers(-1, 2, 3)],
                modalities=["image", "both", "image"], annotators=["a1", "a2", "a3"],
                split="test" if i >= n_images - 4 else "train",
            ))
    write_dataset(pd.DataFrame(records), root)
    return root


def tiny_config(data: Path, out: Path, **overrides) -> TrainConfig:
    values = dict(data=str(data), out=str(out), epochs=3, lists_per_batch=2, modality_weight=0.5,
                  backbone_kwargs={"image_size": 64, "max_length": 12}, lr=1e-3, torch_threads=1)
    values.update(overrides)
    return TrainConfig(**values)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny") / "data")


@pytest.fixture(scope="module")
def reference_run(tiny_data, tmp_path_factory) -> Path:
    return train(tiny_config(tiny_data, tmp_path_factory.mktemp("runs") / "reference"), progress=False)


def _predictions(run_dir: Path) -> pd.DataFrame:
    return pd.read_parquet(run_dir / "predictions.parquet")


# --------------------------------------------------------------------------- outputs

def test_run_writes_every_output(reference_run, tiny_data):
    for name in (ADAPTER_DIR, HEAD_FILE, "config.json", str(CHECKPOINT_FILE), "train_log.csv",
                 "predictions.parquet", "metrics.json", "calibration.json"):
        assert (reference_run / name).exists(), name
    predictions = _predictions(reference_run)
    frame = load_dataset(tiny_data).scenarios
    assert list(predictions.columns) == list(PREDICTION_COLUMNS)
    assert sorted(predictions["scenario_id"]) == sorted(frame["scenario_id"])
    assert predictions["score"].notna().all()
    assert predictions["calibrated_score"].between(1, 5).all()
    assert set(predictions["modality_pred"]) <= {"text", "image", "both"}

    log = pd.read_csv(reference_run / "train_log.csv")
    assert list(log["epoch"].unique()) == [1, 2, 3] and log["step"].is_monotonic_increasing
    assert {"loss_total", "loss_lipo", "loss_modality_ce"} <= set(log.columns)

    metrics = json.loads((reference_run / "metrics.json").read_text())
    ndcg = metrics["min_list_size_2"]["NDCG@5"]
    assert metrics["split"] == "test" and ndcg["ci_low"] <= ndcg["value"] <= ndcg["ci_high"]
    assert metrics["modality"]["n"] == int((predictions["split"] == "test").sum())
    config = json.loads((reference_run / "config.json").read_text())
    assert config["backbone"] == "minilm-effnet" and len(config["dataset_hash"]) == 64


def test_training_learns_the_image_grounded_flip(reference_run):
    """Red keeps an action's score, blue mirrors it: only the image tells which; train lists get ordered."""
    predictions = _predictions(reference_run)
    from mmscale_core.metrics import evaluate_lists

    frame = load_dataset(json.loads((reference_run / "config.json").read_text())["data"]).scenarios
    joined = predictions.rename(columns={"score": "pred"}).assign(score=frame.set_index("scenario_id").loc[
        predictions["scenario_id"], "score"].to_numpy())
    table = evaluate_lists(joined[joined["split"] == "train"], n_boot=200).set_index("metric")
    assert table.loc["Kendall tau", "value"] > 0.3


# --------------------------------------------------------------------------- determinism and resume

def test_same_seed_gives_identical_predictions(reference_run, tiny_data, tmp_path):
    again = train(tiny_config(tiny_data, tmp_path / "again"), progress=False)
    pd.testing.assert_frame_equal(_predictions(again), _predictions(reference_run), check_exact=True)
    other = train(tiny_config(tiny_data, tmp_path / "other", seed=1, epochs=1), progress=False)
    assert not np.array_equal(_predictions(other)["score"], _predictions(reference_run)["score"])


def test_frozen_towers_train_the_heads_deterministically(tiny_data, tmp_path):
    """tuning: frozen (the default profile): towers served from their caches, heads and fusion trained."""
    first = train(tiny_config(tiny_data, tmp_path / "a", tuning="frozen", epochs=2), progress=False)
    again = train(tiny_config(tiny_data, tmp_path / "b", tuning="frozen", epochs=2), progress=False)
    pd.testing.assert_frame_equal(_predictions(again), _predictions(first), check_exact=True)
    assert (first / "head.safetensors").is_file() and not (first / "adapter").exists()  # nothing tuned in the towers
    assert _predictions(first)["score"].std() > 0


def test_resume_after_kill_matches_uninterrupted_run(reference_run, tiny_data, tmp_path):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "mmscale_core.cli", "train", "--data", str(tiny_data), "--out", str(out),
           "--epochs", "3", "--lists-per-batch", "2", "--modality-weight", "0.5", "--image-size", "64",
           "--max-length", "12", "--lr", "1e-3", "--torch-threads", "1", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = out / CHECKPOINT_FILE
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert checkpoint.exists(), "the run never wrote its first checkpoint"
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    assert state["epoch"] < 3 and not (out / "predictions.parquet").exists(), "the run finished before the kill"

    assert cli_main(["train", "--out", str(out), "--resume", "--no-progress"]) == 0  # settings from the run
    pd.testing.assert_frame_equal(_predictions(out), _predictions(reference_run), check_exact=True)
    log = pd.read_csv(out / "train_log.csv")
    assert list(log["epoch"].unique()) == [1, 2, 3]


def test_a_run_with_a_finished_runs_config_is_copied_not_trained(reference_run, tiny_data, tmp_path, monkeypatch):
    """``same_as`` (Table 5's classifier with the profile's tuning is the main run again): a run whose config
    is a finished run's but for its directory copies it, every record naming the new directory; any other
    config trains, and an unfinished or missing candidate is passed over."""
    from mmscale_core.training import loop

    trained = []
    real_batches = loop.epoch_batches
    monkeypatch.setattr(loop, "epoch_batches", lambda *a, **k: trained.append(1) or real_batches(*a, **k))
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "config.json").write_text((reference_run / "config.json").read_text())  # no metrics.json
    copy = train(tiny_config(tiny_data, tmp_path / "copy"), progress=False,
                 same_as=[tmp_path / "missing", unfinished, reference_run])
    assert trained == []
    for name in ("predictions.parquet", HEAD_FILE, "calibration.json", "train_log.csv"):
        assert (copy / name).read_bytes() == (reference_run / name).read_bytes(), name
    config, source = (json.loads((d / "config.json").read_text()) for d in (copy, reference_run))
    assert config == {**source, "out": str(tmp_path / "copy")}
    metrics, source_metrics = (json.loads((d / "metrics.json").read_text()) for d in (copy, reference_run))
    assert metrics == {**source_metrics, "config": config}
    assert torch.load(copy / CHECKPOINT_FILE, map_location="cpu", weights_only=False)["config"] == config
    assert not list(tmp_path.glob(".copy*"))  # the temporary copy is gone

    other = train(tiny_config(tiny_data, tmp_path / "other", epochs=1), progress=False, same_as=reference_run)
    assert trained == [1] and json.loads((other / "config.json").read_text())["epochs"] == 1


# --------------------------------------------------------------------------- data -> lists

def test_lists_cover_every_scenario_once_within_the_cap(tiny_data):
    frame = load_dataset(tiny_data).scenarios.reset_index(drop=True)
    images = select_training_images(frame, 1.0, seed=0)
    lists = make_lists(frame, images, 2, np.random.default_rng(0))
    rows = sorted(r for item in lists for r in item.rows)
    assert rows == sorted(np.flatnonzero(frame["split"] == "train"))
    assert all(1 <= len(item.rows) <= 2 for item in lists)
    assert all(set(frame["image_id"].iloc[list(item.rows)]) == {item.image_id} for item in lists)
    # an image with 4 scenarios and m = 3 gives lists of 2 + 2, not 3 + 1
    four = make_lists(frame, ["img002"], 3, np.random.default_rng(0))
    assert [len(item.rows) for item in four] == [2, 2]


def test_epoch_batches_depend_only_on_seed_and_epoch(tiny_data):
    frame = load_dataset(tiny_data).scenarios.reset_index(drop=True)
    config = tiny_config(tiny_data, tiny_data / "unused", lists_per_batch=3)
    images = select_training_images(frame, 1.0, seed=0)
    first = epoch_batches(frame, images, config, 0)
    assert first == epoch_batches(frame, images, config, 0)
    assert first != epoch_batches(frame, images, config, 1)
    assert all(len(batch) <= 3 for batch in first)


def test_train_fraction_selects_a_seeded_subset_of_training_images(tiny_data):
    frame = load_dataset(tiny_data).scenarios
    all_train = select_training_images(frame, 1.0, seed=0)
    half = select_training_images(frame, 0.5, seed=0)
    assert len(all_train) == 12 and len(half) == 6 and set(half) <= set(all_train)
    assert half == select_training_images(frame, 0.5, seed=0) != select_training_images(frame, 0.5, seed=3)


# --------------------------------------------------------------------------- CLI

def test_cli_refuses_bad_input_without_traceback(reference_run, tiny_data, tmp_path, capsys):
    assert cli_main(["train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "r")]) != 0
    assert "no such dataset directory" in capsys.readouterr().err
    assert cli_main(["train", "--data", str(tiny_data), "--out", str(reference_run)]) != 0
    assert "--resume" in capsys.readouterr().err
    assert cli_main(["train", "--data", str(tiny_data), "--out", str(reference_run), "--resume",
                     "--epochs", "9", "--image-size", "64", "--max-length", "12"]) != 0
    assert "config differs in: epochs" in capsys.readouterr().err
    assert cli_main(["train", "--data", str(tiny_data), "--out", str(tmp_path / "r"), "--objective", "nope"]) != 0
    assert "objective 'nope'" in capsys.readouterr().err


def test_the_same_loop_trains_a_vlm_backbone(tiny_data, tmp_path, monkeypatch):
    """The loop needs only the Backbone interface: a tiny random Qwen2-VL trains and predicts unchanged."""
    tiny = pytest.importorskip("mmscale_core.models.tiny")
    import mmscale_core.training.model as training_model  # where build_model looks the backbone up

    monkeypatch.setattr(training_model, "load_backbone", lambda name, **kwargs: tiny.tiny_backbone(name))
    run = train(tiny_config(tiny_data, tmp_path / "vlm", backbone="qwen2-vl", backbone_kwargs={}, epochs=1),
                progress=False)
    predictions = _predictions(run)
    assert predictions["score"].notna().all() and predictions["score"].nunique() > 1
    assert (run / ADAPTER_DIR / "adapter_config.json").is_file()
    adapter = json.loads((run / ADAPTER_DIR / "adapter_config.json").read_text())
    assert {"q_proj", "k_proj", "v_proj", "o_proj"} <= set(adapter["target_modules"])


def test_a_run_predicts_held_out_scenarios_and_its_own_training_images(tiny_data):
    from mmscale_core.training import prediction_rows

    frame = load_dataset(tiny_data).scenarios.reset_index(drop=True)
    chosen = select_training_images(frame, 0.5, seed=0)
    rows = prediction_rows(frame, chosen)
    assert set(rows.loc[rows["split"] == "train", "image_id"]) == set(chosen)
    assert (rows["split"] == "test").sum() == (frame["split"] == "test").sum()


# --------------------------------------------------------------------------- settings: profiles, backbone_kwargs

REPO = Path(__file__).resolve().parents[1]


def _config_from_cli(*argv: str) -> TrainConfig:
    from mmscale_core.cli import build_parser
    from mmscale_core.train_cli import config_from_args

    return config_from_args(build_parser().parse_args(["train", *argv]))


def test_train_profile_takes_a_profiles_training_block_and_flags_win(tmp_path, capsys):
    import yaml

    smoke = yaml.safe_load((REPO / "params.yaml").read_text())["profiles"]["smoke"]["training"]
    config = _config_from_cli("--data", "d", "--out", str(tmp_path / "r"), "--profile", "smoke",
                              "--params", str(REPO / "params.yaml"), "--epochs", "2")
    assert (config.tuning, config.lists_per_batch, config.head_lr) == (
        smoke["tuning"], smoke["lists_per_batch"], smoke["head_lr"])
    assert config.epochs == 2 and config.backbone_kwargs == smoke["backbone_kwargs"]
    paper = _config_from_cli("--data", "d", "--out", str(tmp_path / "r"))
    assert (paper.tuning, paper.epochs, paper.lists_per_batch) == ("lora", 5, 1)  # without it: the paper's
    with pytest.raises(SystemExit):
        cli_main(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    for needle in ("--profile", "the defaults are the paper's", "--max-image-side", "a VLM's longer image side",
                   "(default 336, the paper's)", "Nothing is written to --out until the backbone has loaded"):
        assert needle in help_text, needle


def test_max_image_side_is_a_flag_and_caps_image_size(tmp_path):
    config = _config_from_cli("--data", "d", "--out", "r", "--backbone", "qwen2-vl", "--image-size", "448",
                              "--max-image-side", "448")
    assert (config.max_image_side, config.backbone_kwargs) == (448, {"image_size": 448})
    with pytest.raises(MmscaleError, match="image_size 448 exceeds max_image_side 336.*--max-image-side"):
        _config_from_cli("--data", "d", "--out", "r", "--backbone", "qwen2-vl", "--image-size", "448")


def test_backbone_kwargs_take_shared_keys_and_per_backbone_blocks(tmp_path):
    from mmscale_core.experiments import training_config
    from mmscale_core.models import backbone_kwargs_for

    kwargs = {"image_size": 224, "qwen2-vl": {"path": "/ckpt/qwen"}, "llava-onevision": {"path": "/ckpt/llava",
                                                                                       "image_size": 336}}
    assert backbone_kwargs_for("qwen2-vl", kwargs) == {"image_size": 224, "path": "/ckpt/qwen"}
    assert backbone_kwargs_for("llava-onevision", kwargs) == {"image_size": 336, "path": "/ckpt/llava"}
    assert backbone_kwargs_for("minilm-text", kwargs) == {"image_size": 224}
    assert backbone_kwargs_for("qwen2-vl", backbone_kwargs_for("qwen2-vl", kwargs)) == {  # resolving twice
        "image_size": 224, "path": "/ckpt/qwen"}
    with pytest.raises(MmscaleError, match="backbone_kwargs.qwen2vl: a block of settings must be named after"):
        backbone_kwargs_for("qwen2-vl", {"qwen2vl": {"path": "x"}})
    params = tmp_path / "params.yaml"
    params.write_text(json.dumps({"train_matrix": {"backbone": ["qwen2-vl"]},
                                  "profiles": {"p": {"training": {"backbone_kwargs": kwargs}}}}))
    for name, path in (("qwen2-vl", "/ckpt/qwen"), ("llava-onevision", "/ckpt/llava")):
        config = training_config(params, "p", run_dir="r", backbone=name)
        assert config.backbone_kwargs["path"] == path  # what the run's config.json records
    # the CLI: a config file's blocks resolve for --backbone, then the flags apply
    settings = tmp_path / "train.yaml"
    settings.write_text(json.dumps({"backbone_kwargs": kwargs}))
    cli = _config_from_cli("--data", "d", "--out", "r", "--config", str(settings),
                           "--backbone", "llava-onevision", "--max-length", "8")
    assert cli.backbone_kwargs == {"image_size": 336, "path": "/ckpt/llava", "max_length": 8}


def test_an_argument_a_backbone_does_not_take_is_an_error_naming_it():
    from mmscale_core.models import load_backbone

    with pytest.raises(MmscaleError, match="backbone 'minilm-text' takes no argument 'path'"):
        load_backbone("minilm-text", path="/ckpt/qwen")
    with pytest.raises(MmscaleError, match="backbone 'effnet-image' takes no argument 'path'"):
        load_backbone("effnet-image", image_size=64, path="/ckpt/qwen")
    with pytest.raises(MmscaleError, match="backbone 'minilm-effnet' takes no argument 'prompt'"):
        load_backbone("minilm-effnet", prompt="x")
    with pytest.raises(MmscaleError, match="backbone 'qwen2-vl' takes no argument 'tuned_stages'.*path"):
        load_backbone("qwen2-vl", tuned_stages=1)
