"""``mmscale predict`` and the run format: peft adapter, head, calibration, clear errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

torch = pytest.importorskip("torch")

from test_training import make_tiny_dataset, tiny_config  # noqa: E402  (tests/ is on sys.path)

from mmscale_core.cli import main as cli_main  # noqa: E402
from mmscale_core.data import load_dataset  # noqa: E402
from mmscale_core.predict import load_run, predict_dataset  # noqa: E402
from mmscale_core.training import ADAPTER_DIR, HEAD_FILE, PREDICTION_COLUMNS, train  # noqa: E402


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_tiny_dataset(tmp_path_factory.mktemp("predict") / "data", n_images=10)


@pytest.fixture(scope="module", params=["lora", "frozen"])
def run(request, data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("predict_runs") / request.param
    return train(tiny_config(data, out, epochs=1, tuning=request.param), progress=False)


def test_cli_predictions_equal_the_runs_own(run, data, tmp_path, capsys):
    out = tmp_path / "pred.parquet"
    assert cli_main(["predict", "--run", str(run), "--data", str(data), "--out", str(out), "--no-progress"]) == 0
    assert "predictions written" in capsys.readouterr().out
    pd.testing.assert_frame_equal(pd.read_parquet(out), pd.read_parquet(run / "predictions.parquet"),
                                  check_exact=False, rtol=0, atol=1e-6)


def test_run_format(run):
    config = json.loads((run / "config.json").read_text())
    from safetensors.torch import load_file

    head = load_file(str(run / HEAD_FILE))
    assert any(name.startswith("scalar_head.") for name in head)
    assert any(name.startswith("modality_head.") for name in head)
    if config["tuning"] == "lora":
        assert (run / ADAPTER_DIR / "adapter_config.json").is_file()
        assert not any(name.startswith("backbone.") for name in head)
    else:  # frozen encoder: no adapter, the trained fusion projection travels with the head
        assert not (run / ADAPTER_DIR).exists()
        assert any(name.startswith("backbone.fusion.") for name in head)


@pytest.mark.parametrize("run", ["lora"], indirect=True)
def test_adapter_loads_with_peft_from_pretrained(run):
    from peft import PeftModel
    from safetensors.torch import load_file

    from mmscale_core.models import load_backbone

    config = json.loads((run / "config.json").read_text())
    model = PeftModel.from_pretrained(load_backbone(config["backbone"], **config["backbone_kwargs"]),
                                      str(run / ADAPTER_DIR))
    saved = load_file(str(run / ADAPTER_DIR / "adapter_model.safetensors"))
    assert any("lora_B" in k for k in saved) and any("fusion" in k for k in saved)
    loaded = model.state_dict()
    key = next(k for k in saved if "query.lora_B" in k)
    match = [k for k in loaded if k.replace(".default", "") == key]
    assert match and torch.equal(loaded[match[0]], saved[key]) and saved[key].abs().sum() > 0


def test_predict_scores_a_new_dataset(run, tmp_path):
    other = make_tiny_dataset(tmp_path / "other", n_images=6, size=56, seed=7)
    frame = pd.read_parquet(other / "scenarios.parquet").drop(columns=["split"])  # split derived on load
    frame.to_parquet(other / "scenarios.parquet", index=False)
    predictions = predict_dataset(load_run(run), load_dataset(other), progress=False)
    assert list(predictions.columns) == list(PREDICTION_COLUMNS)
    assert len(predictions) == len(frame) and predictions["score"].notna().all()
    assert predictions["calibrated_score"].between(1, 5).all()


def test_bad_input_gives_a_message_not_a_traceback(run, data, tmp_path, capsys):
    out = str(tmp_path / "p.parquet")
    assert cli_main(["predict", "--run", str(tmp_path / "nope"), "--data", str(data), "--out", out]) != 0
    assert "no such run directory" in capsys.readouterr().err

    broken = tmp_path / "broken"
    shutil.copytree(data, broken)
    frame = pd.read_parquet(broken / "scenarios.parquet")
    frame.loc[0, "ratings"] = [9]
    frame.to_parquet(broken / "scenarios.parquet", index=False)
    assert cli_main(["predict", "--run", str(run), "--data", str(broken), "--out", out]) != 0
    err = capsys.readouterr().err
    assert "rating #1 is 9" in err and "Traceback" not in err

    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    shutil.copy(run / "config.json", unfinished / "config.json")
    assert cli_main(["predict", "--run", str(unfinished), "--data", str(data), "--out", out]) != 0
    assert "training did not finish" in capsys.readouterr().err
    assert not Path(out).exists()
