"""The feature store: a run with it is bit-identical to a run without it; a mismatched store is refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

torch = pytest.importorskip("torch")

from mmscale_core.data import load_dataset  # noqa: E402
from mmscale_core.errors import MmscaleError  # noqa: E402
from mmscale_core.models import load_backbone  # noqa: E402
from mmscale_core.models.feature_store import SPEC_FILE, build_feature_store, load_feature_store  # noqa: E402
from mmscale_core.pipeline import prepare_features  # noqa: E402
from mmscale_core.predict import load_run, predict_dataset  # noqa: E402
from mmscale_core.training import train  # noqa: E402

from test_training import make_tiny_dataset, tiny_config  # noqa: E402

KWARGS = {"image_size": 64, "max_length": 12, "text_tuned_layers": 0}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_tiny_dataset(tmp_path_factory.mktemp("fs") / "data", n_images=10)


@pytest.fixture(scope="module")
def store(data, tmp_path_factory) -> Path:
    """Built with one thread, like the runs below (conv kernels round differently per thread count)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return build_feature_store(data, tmp_path_factory.mktemp("fs") / "features", KWARGS, progress=False)
    finally:
        torch.set_num_threads(before)


def test_store_holds_every_text_and_image(store, data):
    spec = json.loads((store / SPEC_FILE).read_text())
    assert spec["n_images"] == 2  # keyed by content: the tiny set's images are all plain red or plain blue
    assert spec["n_texts"] == load_dataset(data).scenarios["scenario"].nunique() > 0
    backbone = load_backbone("minilm-effnet", **KWARGS)
    loaded = load_feature_store(store, backbone, KWARGS, 336)
    assert loaded == {"texts": spec["n_texts"], "images": 2}


def test_a_store_built_on_two_threads_is_the_one_thread_store(store, data, tmp_path):
    """The features stage gets every core; it computes its chunks one thread each, so what it
    writes is what a one-thread run computes itself, byte for byte."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        two = build_feature_store(data, tmp_path / "features", KWARGS, progress=False)
    finally:
        torch.set_num_threads(before)
    for name in ("text.safetensors", "image.safetensors", "pooled.safetensors"):
        assert (two / name).read_bytes() == (store / name).read_bytes(), name


def test_a_run_with_the_store_equals_a_run_without(store, data, tmp_path):
    common = dict(backbone_kwargs=KWARGS, epochs=2)
    with_store = train(tiny_config(data, tmp_path / "with", feature_store=str(store), **common), progress=False)
    without = train(tiny_config(data, tmp_path / "without", **common), progress=False)
    a = pd.read_parquet(with_store / "predictions.parquet")
    b = pd.read_parquet(without / "predictions.parquet")
    pd.testing.assert_frame_equal(a, b)
    assert not (with_store / "adapter").exists() or (with_store / "adapter" / "adapter_config.json").exists()
    again = predict_dataset(load_run(with_store), load_dataset(data),
                            progress=False)
    pd.testing.assert_frame_equal(again.reset_index(drop=True), a.reset_index(drop=True))


def test_a_frozen_run_takes_the_stored_pooled_vectors_and_equals_a_run_without(store, data, tmp_path, monkeypatch):
    """tuning: frozen over every image: the tail never runs, the numbers are those of a run computing them."""
    from mmscale_core.models.embedded import EfficientNetTower

    common = dict(backbone_kwargs={**KWARGS, "tuned_stages": 1}, epochs=1, tuning="frozen", head_lr=1e-3)
    without = train(tiny_config(data, tmp_path / "without", **common), progress=False)
    monkeypatch.setattr(EfficientNetTower, "_fill_pooled", lambda self, items: pytest.fail("tail computed"))
    spec = dict(KWARGS, tuned_stages=1)
    torch.set_num_threads(1)
    small = build_feature_store(data, tmp_path / "features1", spec, progress=False)
    with_store = train(tiny_config(data, tmp_path / "with", feature_store=str(small), **common), progress=False)
    pd.testing.assert_frame_equal(pd.read_parquet(with_store / "predictions.parquet"),
                                  pd.read_parquet(without / "predictions.parquet"))


def test_text_only_run_with_a_frozen_tower_trains_its_head(store, data, tmp_path):
    """minilm-text with no text LoRA: nothing for peft to wrap, the head still learns and predicts."""
    run = train(tiny_config(data, tmp_path / "text", backbone="minilm-text", feature_store=str(store),
                            backbone_kwargs=KWARGS, epochs=1), progress=False)
    assert not (run / "adapter").exists()
    again = predict_dataset(load_run(run), load_dataset(data), progress=False)
    pd.testing.assert_series_equal(again["score"], pd.read_parquet(run / "predictions.parquet")["score"])


def test_a_store_built_with_other_settings_is_refused(store, tmp_path):
    other = dict(KWARGS, image_size=96)
    backbone = load_backbone("effnet-image", **other)
    with pytest.raises(MmscaleError, match="image_size: store 64, run 96"):
        load_feature_store(store, backbone, other, 336)
    with pytest.raises(MmscaleError, match="not a feature store"):
        load_feature_store(tmp_path, backbone, other, 336)


def test_features_stage_writes_a_note_for_vlm_only_profiles(data, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("profile: p\ntrain_matrix: {backbone: [qwen2-vl]}\nmodality_ablation: {backbone: []}\n"
                      "profiles: {p: {training: {}}}\n")
    out = prepare_features(params, {"name": "p", "training": {}}, data, tmp_path / "features")
    assert (out / "unused.json").is_file() and not (out / SPEC_FILE).exists()
    shutil.rmtree(out)


def test_a_tower_filled_from_the_store_never_decodes_an_image(store, data, monkeypatch):
    """Dataset images reach cached towers as KeyedImage handles: a cache hit reads the file's hash only."""
    from mmscale_core.models.base import KeyedImage, ListBatch
    from mmscale_core.training import ImageLoader

    backbone = load_backbone("minilm-effnet", **KWARGS).eval()
    load_feature_store(store, backbone, KWARGS, 336)
    loader = ImageLoader(load_dataset(data), 336, lazy=True)
    decoded = []
    monkeypatch.setattr(KeyedImage, "load", lambda self: decoded.append(self.path) or pytest.fail("decoded"))
    frame = load_dataset(data).scenarios
    lists = [(image_id, group["scenario"].tolist()) for image_id, group in frame.groupby("image_id")]
    batch = ListBatch.from_lists([loader(i) for i, _ in lists], [t for _, t in lists])
    with torch.no_grad():
        out = backbone(batch)
    assert out.shape[:2] == batch.mask.shape and not decoded
