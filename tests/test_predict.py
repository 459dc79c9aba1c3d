"""``mmscale predict`` and the run format: peft adapter, head, calibration, clear errors."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
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


@pytest.fixture(scope="module")
def bf16_run(data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("predict_runs") / "bf16"
    return train(tiny_config(data, out, epochs=1, tuning="frozen", mixed_precision="bf16"), progress=False)


def test_predict_reproduces_a_bf16_run_under_its_autocast(bf16_run, data, tmp_path):
    """The isotonic map was fitted on autocast scores: predict uses the run's precision unless told otherwise."""
    own = pd.read_parquet(bf16_run / "predictions.parquet")
    out = tmp_path / "pred.parquet"
    assert cli_main(["predict", "--run", str(bf16_run), "--data", str(data), "--out", str(out), "--no-progress",
                     "--device", "cpu"]) == 0
    pd.testing.assert_frame_equal(pd.read_parquet(out), own, check_exact=False, rtol=0, atol=1e-6)
    fp32 = predict_dataset(load_run(bf16_run), load_dataset(data), progress=False, mixed_precision="no")
    assert (fp32["score"] - own["score"]).abs().max() > 1e-4  # the autocast matters, so the test can fail


def _predict_on_two_processes(trained, data_dir: Path, out: Path) -> None:
    """One process of ``debug_launcher``: predict with a 2-process accelerator; record its own shard's rows."""
    import torch
    from accelerate.state import AcceleratorState

    import mmscale_core.training.scoring as training  # where score_scenarios looks gather_list_scores up

    AcceleratorState._reset_state(reset_partial_state=True)  # the forked parent's single-process state
    # A forked child inherits the parent's OpenMP state but not its worker threads: its first parallel
    # torch op deadlocks once the parent has run one. One thread runs ops inline; OMP_NUM_THREADS keeps
    # accelerate's multi-CPU set-up from raising the count again.
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    accelerator = training.make_accelerator("no")
    assert accelerator.num_processes == 2 and torch.get_num_threads() == 1
    gather = training.gather_list_scores

    def recording(mine, acc=None):
        rows = sorted(r for item in mine for r in item[0])
        (out / f"rows{acc.process_index}.json").write_text(json.dumps(rows))
        return gather(mine, acc)

    training.gather_list_scores = recording
    frame = predict_dataset(trained, load_dataset(data_dir), progress=False, accelerator=accelerator)
    frame.to_parquet(out / f"rank{accelerator.process_index}.parquet")


@pytest.mark.parametrize("run", ["frozen"], indirect=True)
def test_each_process_scores_a_shard_and_every_process_gets_all(run, data, tmp_path):
    """Two CPU processes (gloo, ``accelerate.debug_launcher``): disjoint deterministic shards, gathered whole."""
    from accelerate import debug_launcher

    from mmscale_core.training import shard

    assert shard(list(range(7)), 0, 2) == [0, 2, 4, 6] and shard(list(range(7)), 1, 2) == [1, 3, 5]
    trained = load_run(run)  # loaded once; the forked processes inherit it
    single = predict_dataset(trained, load_dataset(data), progress=False)
    debug_launcher(_predict_on_two_processes, args=(trained, data, tmp_path), num_processes=2)
    rows = [set(json.loads((tmp_path / f"rows{r}.json").read_text())) for r in (0, 1)]
    n = len(load_dataset(data).scenarios)
    assert rows[0] and rows[1] and not rows[0] & rows[1] and rows[0] | rows[1] == set(range(n))
    for r in (0, 1):  # float noise of another process only (the isotonic map's slope scales it up)
        gathered = pd.read_parquet(tmp_path / f"rank{r}.parquet")
        pd.testing.assert_frame_equal(gathered.drop(columns="calibrated_score"), single.drop(columns="calibrated_score"),
                                      check_exact=False, rtol=0, atol=1e-6)
        np.testing.assert_allclose(gathered["calibrated_score"], single["calibrated_score"], rtol=0, atol=1e-4)
