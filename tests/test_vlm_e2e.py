"""The real user's path for each VLM (issue 19, item 7): a checkpoint directory -> mmscale train -> mmscale predict.

A tiny random-init model of each architecture is saved with ``save_pretrained``
together with its processor (tokenizer, image processor, chat template), then
trained from that directory with ``--backbone-arg path=DIR`` and scored with
``mmscale predict``, offline (``HF_HUB_OFFLINE=1``, an empty Hugging Face
cache): nothing stands in for ``load_backbone``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

torch = pytest.importorskip("torch")

from test_training import make_tiny_dataset  # noqa: E402  (tests/ is on sys.path)

from mmscale_core.cli import main as cli_main  # noqa: E402
from mmscale_core.models.tiny import TINY_BUILDERS  # noqa: E402

NAMES = sorted(TINY_BUILDERS)
CHAT_TEMPLATE = "{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n{% endfor %}"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """No network and an empty Hugging Face cache: only the directory given can supply a checkpoint."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_tiny_dataset(tmp_path_factory.mktemp("vlm_e2e") / "data", n_images=6, size=40)


def save_tiny_checkpoint(name: str, directory: Path) -> Path:
    model, processor = TINY_BUILDERS[name]()
    processor.chat_template = CHAT_TEMPLATE
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


def _train(data: Path, out: Path, name: str, path: Path, *extra: str) -> int:
    return cli_main(["train", "--data", str(data), "--out", str(out), "--backbone", name,
                     "--backbone-arg", f"path={path}", "--epochs", "1", "--lists-per-batch", "2",
                     "--head-lr", "1e-3", "--torch-threads", "1", "--no-progress", *extra])


@pytest.mark.parametrize("name", NAMES)
def test_train_from_a_checkpoint_directory_and_predict(name, data, tmp_path, offline, capsys):
    checkpoint = save_tiny_checkpoint(name, tmp_path / "checkpoint")
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"} <= {
        p.name for p in checkpoint.iterdir()}
    run = tmp_path / "run"

    # a mistyped path: an error naming it, and nothing written, so the retry is not refused
    assert _train(data, run, name, tmp_path / "checkpoint-typo") != 0
    err = capsys.readouterr().err
    assert str(tmp_path / "checkpoint-typo") in err and "does not exist" in err and "Traceback" not in err
    assert not run.exists()

    assert _train(data, run, name, checkpoint) == 0
    assert "run written" in capsys.readouterr().out
    config = json.loads((run / "config.json").read_text())
    assert config["backbone_kwargs"] == {"path": str(checkpoint)}
    assert config["backbone_checkpoint"]["path"] == str(checkpoint.resolve())
    assert config["backbone_checkpoint"]["fingerprint"].startswith("sha256:")
    adapter = json.loads((run / "adapter" / "adapter_config.json").read_text())
    assert adapter["target_modules"]

    out = tmp_path / "pred.parquet"
    assert cli_main(["predict", "--run", str(run), "--data", str(data), "--out", str(out), "--no-progress"]) == 0
    own = pd.read_parquet(run / "predictions.parquet")
    assert own["score"].notna().all() and own["score"].nunique() > 1
    pd.testing.assert_frame_equal(pd.read_parquet(out), own, check_exact=False, rtol=0, atol=1e-6)


def test_predict_refuses_a_run_whose_checkpoint_files_changed(data, tmp_path, offline, capsys):
    checkpoint = save_tiny_checkpoint("qwen2-vl", tmp_path / "checkpoint")
    run = tmp_path / "run"
    assert _train(data, run, "qwen2-vl", checkpoint) == 0
    capsys.readouterr()
    other = save_tiny_checkpoint("llava-onevision", tmp_path / "other")
    (checkpoint / "model.safetensors").write_bytes((other / "model.safetensors").read_bytes())  # other weights
    out = tmp_path / "pred.parquet"
    assert cli_main(["predict", "--run", str(run), "--data", str(data), "--out", str(out), "--no-progress"]) != 0
    err = capsys.readouterr().err
    assert "backbone_checkpoint" in err and "Traceback" not in err and not out.exists()
