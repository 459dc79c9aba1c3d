"""Collation by index (frozen towers) gives what the per-list collation gives, and a run trains to the same numbers.

The reference is the list-based path (``collate``: texts and images through the
towers' caches, padded per list), which LoRA runs and the VLMs still use.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_training import make_tiny_dataset, tiny_config  # noqa: E402  (tests/ is on sys.path)

from mmscale_core.data import ImageLoader, load_dataset  # noqa: E402
from mmscale_core.training import build_model, make_lists, train, warm_caches  # noqa: E402
from mmscale_core.training.lists import collate, collate_indexed, frame_tensors, padded_rows  # noqa: E402

FROZEN = dict(tuning="frozen", head_lr=1e-3, backbone_kwargs={"image_size": 64, "max_length": 12,
                                                            "text_tuned_layers": 0, "tuned_stages": 1})


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_tiny_dataset(tmp_path_factory.mktemp("indexed") / "data")


def test_padded_rows_is_the_lists_padded():
    from mmscale_core.training.lists import ScenarioList

    rng = np.random.default_rng(3)
    lists = [ScenarioList("x", tuple(int(r) for r in rng.choice(50, size=rng.integers(1, 6), replace=False)))
             for _ in range(40)]
    index = padded_rows(lists, pad=99).numpy()
    for b, item in enumerate(lists):
        assert index[b, : len(item.rows)].tolist() == list(item.rows)
        assert (index[b, len(item.rows):] == 99).all()


@pytest.mark.parametrize("backbone", ["minilm-effnet", "minilm-text", "effnet-image"])
def test_indexed_batches_equal_the_list_batches(data, tmp_path, backbone):
    """Mask, targets, modality ids and the model's output, batch by batch, on shuffled lists of random sizes."""
    config = tiny_config(data, tmp_path / "r", backbone=backbone, **FROZEN)
    model = build_model(config).eval()
    dataset = load_dataset(data)
    frame = dataset.scenarios.reset_index(drop=True)
    images = ImageLoader(dataset, config.max_image_side, lazy=True)
    warm_caches(model, frame, images, progress=False)
    tensors = frame_tensors(model, frame, images)
    assert tensors is not None
    rng = np.random.default_rng(0)
    lists = make_lists(frame, sorted(frame["image_id"].unique()), 3, rng)
    lists = [lists[i] for i in rng.permutation(len(lists))]
    index = padded_rows(lists, tensors.pad)
    for start in range(0, len(lists), 5):
        reference, ref_targets, ref_modality = collate(lists[start:start + 5], frame, images)
        batch, targets, modality = collate_indexed(index[start:start + 5], tensors)
        assert torch.equal(batch.mask, reference.mask)
        assert torch.equal(targets, ref_targets) and torch.equal(modality, ref_modality)
        with torch.no_grad():
            assert torch.equal(model(batch)[0], model(reference)[0])


def test_lookup_tables_from_a_float32_frame_print_no_warning(data, tmp_path):
    """pandas hands out read-only arrays (copy-on-write); torch warns on them, which a notebook page shows as stderr."""
    import warnings

    config = tiny_config(data, tmp_path / "r", **FROZEN)
    model = build_model(config).eval()
    dataset = load_dataset(data)
    frame = dataset.scenarios.reset_index(drop=True).astype({"score": "float32"})
    images = ImageLoader(dataset, config.max_image_side, lazy=True)
    warm_caches(model, frame, images, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tensors = frame_tensors(model, frame, images)
    assert torch.equal(tensors.score[:-1], torch.tensor(frame["score"].to_numpy()))


def test_a_lora_run_has_no_lookup_tables(data, tmp_path):
    """Tuned towers' outputs depend on the weights: they keep the per-list path."""
    config = tiny_config(data, tmp_path / "r", backbone_kwargs={"image_size": 64, "max_length": 12,
                                                                "text_tuned_layers": 1})
    dataset = load_dataset(data)
    frame = dataset.scenarios.reset_index(drop=True)
    assert frame_tensors(build_model(config), frame, ImageLoader(dataset, 336, lazy=True)) is None


def test_a_frozen_run_trains_to_the_same_predictions_as_the_list_path(data, tmp_path, monkeypatch):
    """Same seeds, epochs, objective: the run's predictions, calibration and loss log match the reference path."""
    import mmscale_core.training.loop as loop
    import mmscale_core.training.scoring as scoring

    fast = train(tiny_config(data, tmp_path / "fast", **FROZEN), progress=False)
    monkeypatch.setattr(loop, "frame_tensors", lambda *args: None)
    monkeypatch.setattr(scoring, "frame_tensors", lambda *args: None)
    slow = train(tiny_config(data, tmp_path / "slow", **FROZEN), progress=False)
    got, want = (pd.read_parquet(run / "predictions.parquet") for run in (fast, slow))
    assert want["score"].nunique() > 1
    pd.testing.assert_frame_equal(got, want, check_exact=False, atol=1e-6, rtol=0)
    log_got, log_want = (pd.read_csv(run / "train_log.csv").drop(columns="seconds") for run in (fast, slow))
    pd.testing.assert_frame_equal(log_got, log_want, check_exact=False, atol=1e-6, rtol=0)


def test_bench_train_prints_both_sides_and_their_ratio(capsys):
    from mmscale_core.cli import main as cli_main

    params = Path(__file__).resolve().parents[1] / "params.yaml"
    assert cli_main(["bench", "train", "--steps", "2", "--repeats", "1", "--profile", "smoke",
                     "--params", str(params)]) == 0
    out = capsys.readouterr().out
    assert "full step" in out and "bare forward/backward" in out and "x (full" in out
