"""Glue between runs and the report: configs from profiles, seed-averaged tables, audits."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

from mmscale_core import audit, experiments
from mmscale_core.errors import MmscaleError
from mmscale_core.metrics import evaluate_lists
from mmscale_core.notebook_runner import parse_assignments, run_notebook

REPO = Path(__file__).resolve().parents[1]


def fake_scenarios(n_images: int = 40, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_images):
        for j in range(rng.integers(2, 6)):
            rows.append({"scenario_id": f"s{i}_{j}", "image_id": f"img{i}", "split": "test" if i % 2 else "train",
                         "score": float(rng.integers(3, 16)) / 3, "modality": ["text", "image", "both"][(i + j) % 3]})
    return pd.DataFrame(rows)


def fake_run(root: Path, name: str, scenarios: pd.DataFrame, objective: str, seed: int, noise: float,
             backbone: str = "minilm-effnet", tuning: str = "lora") -> Path:
    run = root / name
    run.mkdir(parents=True)
    rng = np.random.default_rng(seed + 100 * len(name))
    raw = scenarios["score"].to_numpy() + rng.normal(0, noise, len(scenarios))
    pd.DataFrame({"scenario_id": scenarios["scenario_id"], "image_id": scenarios["image_id"],
                  "split": scenarios["split"], "score": raw * 10,  # off-scale raw scores
                  "calibrated_score": np.clip(raw, 1, 5),
                  "modality_pred": scenarios["modality"].where(rng.random(len(scenarios)) < 0.7, "text")}
                 ).to_parquet(run / "predictions.parquet")
    (run / "config.json").write_text(json.dumps({"backbone": backbone, "objective": objective, "seed": seed,
                                                 "tuning": tuning, "max_list_size": 5, "train_fraction": 1.0}))
    (run / "metrics.json").write_text("{}")
    return run


@pytest.fixture
def runs_and_frame(tmp_path):
    scenarios = fake_scenarios()
    for objective, noise in (("lipo", 0.3), ("bce", 2.0)):
        for seed in (0, 1):
            fake_run(tmp_path / "runs", f"{objective}/seed{seed}", scenarios, objective, seed, noise)
    runs = experiments.collect_runs(tmp_path / "runs")
    return runs, experiments.run_predictions(runs, scenarios, split="test"), scenarios


def test_training_config_merges_profile_and_cell():
    config = experiments.training_config(REPO / "params.yaml", "smoke", run_dir="runs/x", objective="bpo", seed=2,
                                         max_list_size=3)
    assert (config.backbone, config.objective, config.seed, config.max_list_size) == ("minilm-effnet", "bpo", 2, 3)
    assert config.epochs == 1 and config.out == "runs/x"
    default = experiments.training_config(REPO / "params.yaml", "default", run_dir="runs/x",
                                          train_fraction=None, max_list_size=None, tuning=None)
    # None (a notebook parameter left unset) keeps the profile's value
    assert (default.train_fraction, default.tuning, default.epochs, default.max_list_size) == (1.0, "frozen", 4, 5)
    ablation = experiments.training_config(REPO / "params.yaml", "default", run_dir="runs/x",
                                           train_fraction=0.25, tuning="lora")
    assert (ablation.train_fraction, ablation.tuning) == (0.25, "lora")


def test_run_predictions_uses_raw_for_ranking_and_calibrated_scale_for_safety(runs_and_frame):
    runs, frame, scenarios = runs_and_frame
    assert set(runs["objective"]) == {"lipo", "bce"} and len(runs) == 4
    assert (frame["split"] == "test").all()
    col = runs.loc[runs["objective"] == "bce", "run"].iloc[0]
    assert frame[f"pred:{col}"].max() > 5  # raw, off the 1-5 scale
    assert frame[f"scale:{col}"].between(1, 5).all()


def test_evaluate_runs_averages_seeds(runs_and_frame):
    runs, frame, _ = runs_and_frame
    table = experiments.evaluate_runs(runs, frame, n_boot=20)
    assert set(table["objective"]) == {"lipo", "bce"} and set(table["n_seeds"]) == {2}
    lipo = runs[runs["objective"] == "lipo"]["run"].tolist()
    singles = [evaluate_lists(frame, pred_col=f"pred:{r}", scale_col=f"scale:{r}", n_boot=5).set_index("metric")
               for r in lipo]
    got = table[(table["objective"] == "lipo")].set_index("metric")
    assert got.loc["NDCG@5", "value"] == pytest.approx(np.mean([s.loc["NDCG@5", "value"] for s in singles]))
    good, bad = (table[(table["objective"] == o) & (table["metric"] == "NDCG@5")]["value"].item() for o in ("lipo", "bce"))
    assert good > bad


def test_compare_objectives_names_the_objectives(runs_and_frame):
    runs, frame, _ = runs_and_frame
    table = experiments.compare_objectives(runs, frame, n_boot=50, n_perm=50)
    assert set(table["reference"]) == {"lipo"} and set(table["other"]) == {"bce"}
    ndcg = table[table["metric"] == "NDCG@5"].iloc[0]
    assert ndcg["diff"] > 0 and ndcg["p_value"] < 0.1


def test_modality_ablation_and_calibration_and_table5(runs_and_frame):
    runs, frame, scenarios = runs_and_frame
    ablation = experiments.modality_ablation(runs, frame, n_boot=10)
    assert {"all lists", "lists with a image-grounded scenario"} <= set(ablation["lists"])
    curves, ece = experiments.calibration_by_objective(runs, frame, n_bins=5, n_boot=20)
    assert set(ece["objective"]) == {"Ours (Listwise PO)", "BCE (Binary Class.)"}
    assert (ece["ci_low"] <= ece["value"] + 1e-12).all() and (ece["value"] <= ece["ci_high"] + 1e-12).all()
    assert curves["mean_predicted"].between(0, 1).all()
    t5 = experiments.modality_classification(runs.iloc[:1], frame, scenarios["modality"])
    assert list(t5["method"]) == ["Majority Class", "Random Guessing", "Ours (LoRA-tuned)"]
    assert t5["accuracy"].between(0, 1).all()


def _ablation_table(rows):
    """(m, f, metric, value, ci_low, ci_high, chance) -> the shape evaluate_runs returns."""
    return pd.DataFrame(rows, columns=["max_list_size", "train_fraction", "metric", "value", "ci_low",
                                       "ci_high", "chance"])


def test_fig8_claims_read_saturation_retention_and_unsafe_change():
    table = _ablation_table([
        (1, 1.0, "NDCG@5", 0.86, 0.85, 0.87, 0.86),
        (2, 1.0, "NDCG@5", 0.90, 0.89, 0.91, 0.86),
        (3, 1.0, "NDCG@5", 0.94, 0.935, 0.955, 0.86),   # CI reaches the best (0.95): saturated at m = 3
        (4, 1.0, "NDCG@5", 0.945, 0.94, 0.96, 0.86),
        (5, 1.0, "NDCG@5", 0.95, 0.94, 0.96, 0.86),
        (5, 0.5, "NDCG@5", 0.93, 0.92, 0.94, 0.86),     # keeps (0.93 - 0.86) / (0.95 - 0.86) = 78%
        (5, 1.0, "Unsafe Rate", 0.20, 0.18, 0.22, 0.5),
        (5, 0.5, "Unsafe Rate", 0.23, 0.21, 0.25, 0.5),
    ])
    claims = experiments.fig8_claims(table, main_m=5, main_f=1.0, source="companion, simulated data")
    assert list(claims.columns) == ["claim", "source", "value", "evidence (95% CI)"]
    ours = claims[claims["source"] == "companion, simulated data"]
    assert ours["value"].tolist() == ["m = 3", "78%", "+0.030"]
    assert claims.loc[claims["source"] == "paper (transcribed)", "value"].iloc[0] == "m = 4"
    assert "m=1: 0.860 [0.850, 0.870]" in ours["evidence (95% CI)"].iloc[0]


def test_fig8_claims_say_n_a_without_the_half_fraction_run():
    table = _ablation_table([(m, 1.0, "NDCG@5", 0.9, 0.89, 0.91, 0.86) for m in (2, 5)])
    claims = experiments.fig8_claims(table, main_m=5, main_f=1.0, source="companion, real data")
    assert claims.loc[claims["source"] == "companion, real data", "value"].tolist() == ["m = 2", "n/a", "n/a"]


def test_headline_table_puts_ours_first_with_ci_and_chance(runs_and_frame):
    runs, frame, _ = runs_and_frame
    companion = experiments.evaluate_runs(runs, frame, n_boot=50)
    assert companion["objective"].drop_duplicates().tolist() == ["bce", "lipo"]   # the runs' directory order
    headline = experiments.headline_table(companion, "companion, simulated data")
    ours = headline[headline["source"].str.startswith("companion")]
    assert ours["supervision"].tolist() == ["Ours (Listwise PO)", "BCE (Binary Class.)"]
    assert headline["source"].iloc[0] == "paper (mean of 4 VLMs)" and len(headline) == 5
    lipo_ndcg = companion[(companion["objective"] == "lipo") & (companion["metric"] == "NDCG@5")].iloc[0]
    assert ours["NDCG@5"].iloc[0] == (f"{lipo_ndcg['value']:.3f} [{lipo_ndcg['ci_low']:.3f}, "
                                      f"{lipo_ndcg['ci_high']:.3f}] (chance {lipo_ndcg['chance']:.3f})")
    paper_ndcg = headline.loc[headline["source"].str.startswith("paper"), "NDCG@5"]
    assert paper_ndcg.str.fullmatch(r"\d\.\d\d").all()  # the paper's values at its own two decimals
    assert list(headline.columns[2:4]) == ["NDCG@5", "Pairwise accuracy (delta>=0)"]
    assert (headline.loc[headline["source"].str.startswith("paper"), "Pairwise accuracy (delta>=0)"]
            == "not reported").all()
    assert ours["Pairwise accuracy (delta>=0)"].str.endswith("(chance 0.500)").all()


def test_metrics_wide_shows_every_metric_with_its_ci_and_chance(runs_and_frame):
    runs, frame, _ = runs_and_frame
    table = experiments.evaluate_runs(runs, frame, n_boot=50)
    wide = experiments.metrics_wide(table, ["backbone", "objective"])
    assert list(wide.columns) == ["NDCG@5", "Pairwise accuracy (delta>=0)", "MRR", "Kendall tau", "Unsafe Rate",
                                  "AUC-Safety"]
    assert wide.index.tolist() == [("minilm-effnet", "bce"), ("minilm-effnet", "lipo")]
    mrr = table[(table["objective"] == "lipo") & (table["metric"] == "MRR")].iloc[0]
    assert wide.loc[("minilm-effnet", "lipo"), "MRR"] == (
        f"{mrr['value']:.3f} [{mrr['ci_low']:.3f}, {mrr['ci_high']:.3f}] (chance {mrr['chance']:.3f})")
    # a table that says where its numbers come from keeps saying it on the page
    sourced = experiments.metrics_wide(table.assign(source="companion (simulated data)"), ["backbone", "objective"])
    assert sourced.index.names == ["source", "backbone", "objective"]
    assert sourced.loc[("companion (simulated data)", "minilm-effnet", "lipo"), "MRR"] == wide.loc[
        ("minilm-effnet", "lipo"), "MRR"]


def test_missing_predictions_are_a_clear_error(runs_and_frame):
    runs, _, scenarios = runs_and_frame
    extra = pd.concat([scenarios, scenarios.iloc[:1].assign(scenario_id="new", split="test")])
    with pytest.raises(MmscaleError, match="no prediction for 1 scenario"):
        experiments.run_predictions(runs, extra)
    with pytest.raises(MmscaleError, match="no finished training runs"):
        experiments.collect_runs(Path(runs["path"].iloc[0]).parent / "nothing")


def test_paper_tables_and_metrics_summary():
    t3 = experiments.paper_table3()
    assert len(t3) == 4 * 3 * 4 and t3["value"].between(0, 1).all()
    assert experiments.paper_table4()["value"].tolist()[:2] == [0.68, 0.84]
    summary = experiments.metrics_summary(pd.DataFrame([{"backbone": "b", "objective": "o", "metric": "MRR",
                                                         "value": 0.5, "ci_low": 0.41234, "ci_high": 0.6,
                                                         "chance": 0.4}]))
    assert summary == {"b-o": {"MRR": {"value": 0.5, "ci_low": 0.4123, "ci_high": 0.6, "chance": 0.4}}}


def test_audit_arithmetic():
    assert audit.mrr_chance_unique_top(1) == 1.0
    assert audit.mrr_chance_unique_top(3) == pytest.approx((1 + 1 / 2 + 1 / 3) / 3)
    check = audit.majority_class_check().set_index("quantity")["value"]
    assert check["macro-F1 implied by that accuracy (%)"] == pytest.approx(24.0, abs=0.05)
    assert len(audit.contradictions_table()) >= 5


def test_parse_assignments():
    assert parse_assignments(["seed=0", "objective=lipo+mse", "f=0.25", "flag=true"]) == {
        "seed": 0, "objective": "lipo+mse", "f": 0.25, "flag": True}
    with pytest.raises(MmscaleError, match="KEY=VALUE"):
        parse_assignments(["nonsense"])


def stage_project(root: Path, cells: dict[str, str]) -> Path:
    """A directory with ``params.yaml`` and ``notebooks/NAME.ipynb`` for each ``{NAME: code}``: a tagged
    ``parameters`` cell (``profile = 'smoke'``), then the code as one cell."""
    (root / "notebooks").mkdir(parents=True, exist_ok=True)
    for name, code in cells.items():
        nb = nbformat.v4.new_notebook()
        params = nbformat.v4.new_code_cell("profile = 'smoke'")
        params.metadata["tags"] = ["parameters"]
        nb.cells = [params, nbformat.v4.new_code_cell(code)]
        nbformat.write(nb, root / "notebooks" / f"{name}.ipynb")
    (root / "params.yaml").write_text((REPO / "params.yaml").read_text())
    return root


def stage_command(name: str) -> list[str]:
    """``mmscale notebook NAME --profile smoke`` as a stage runs it (with ``cli_env``)."""
    import sys

    return [sys.executable, "-m", "mmscale_core.cli", "notebook", name, "--profile", "smoke"]


def cli_env(**extra: str) -> dict[str, str]:
    """This environment with the checkout first on PYTHONPATH (a command run in another directory), plus ``extra``."""
    import os

    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
            **extra}


def test_failing_notebook_shows_the_cell(tmp_path, monkeypatch):
    stage_project(tmp_path, {"99_fail": "x = 1\nraise ValueError('bad input for ' + profile)"})
    monkeypatch.chdir(tmp_path)
    with pytest.raises(MmscaleError) as info:
        run_notebook("99_fail", "params.yaml", "smoke")
    message = str(info.value)
    assert "raise ValueError('bad input for ' + profile)" in message
    assert "ValueError: bad input for smoke" in message
    assert not (tmp_path / "reports" / "notebooks" / "99_fail.ipynb").exists()  # nothing half-written


@pytest.mark.parametrize("warm", ["1", "0"])
def test_the_notebook_command_reports_a_failing_cell_the_same_in_a_fork_and_in_its_own_process(tmp_path, warm):
    """``mmscale notebook`` runs its papermill call in a fork of the warm zygote (``warm_kernel.run_forked``)
    or, switched off, in its own process: the same message, exit code and (no) output either way."""
    import subprocess

    stage_project(tmp_path, {"99_fail": "raise ValueError('bad input for ' + profile)"})
    done = subprocess.run(stage_command("99_fail"), cwd=tmp_path, env=cli_env(MMSCALE_WARM_KERNEL=warm),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == MmscaleError.exit_code
    assert "mmscale notebook: error: notebook notebooks/99_fail.ipynb failed in cell" in done.stderr, done.stderr
    assert "ValueError: bad input for smoke" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "reports" / "notebooks" / "99_fail.ipynb").exists()


def test_the_notebook_command_asks_for_a_fork_and_runs_itself_when_none_serves(monkeypatch):
    from mmscale_core import notebook_runner, warm_kernel
    from mmscale_core.cli import main

    asked, ran = [], []
    monkeypatch.setattr(notebook_runner, "notebook_command", lambda options: ran.append(options) or 0)
    monkeypatch.setattr(warm_kernel, "run_forked", lambda target, options: asked.append((target, options)) or 3)
    assert main(["notebook", "01_data_stats", "--set", "seed=1", "--output", "x.ipynb"]) == 3
    options = {"name": "01_data_stats", "params": "params.yaml", "profile": None, "output": "x.ipynb",
               "set": ["seed=1"]}
    assert asked == [("mmscale_core.notebook_runner:notebook_command", options)] and ran == []
    monkeypatch.setattr(warm_kernel, "run_forked", lambda target, options: None)  # no zygote answered
    assert main(["notebook", "01_data_stats", "--set", "seed=1", "--output", "x.ipynb"]) == 0
    assert ran == [options]


@pytest.mark.parametrize("warm", ["1", "0"])
def test_a_notebook_stage_talks_to_its_kernel_over_ipc_and_prints_no_warning(tmp_path, warm):
    """No 'Kernel is running over TCP without encryption' on a stage's stderr, warm kernel or cold."""
    import subprocess

    stage_project(tmp_path, {"98_quiet": "from ipykernel.kernelapp import IPKernelApp\n"
                                         "print('transport', IPKernelApp.instance().transport)\n"
                                         "print('socket', IPKernelApp.instance().ip)"})
    done = subprocess.run(stage_command("98_quiet"), cwd=tmp_path, env=cli_env(MMSCALE_WARM_KERNEL=warm),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "without encryption" not in done.stderr and "WARNING" not in done.stderr, done.stderr
    executed = nbformat.read(tmp_path / "reports" / "notebooks" / "98_quiet.ipynb", 4)
    printed = "".join(o.get("text", "") for c in executed.cells for o in c.get("outputs", []))
    assert "transport ipc" in printed
    from jupyter_core.paths import jupyter_runtime_dir

    socket = printed.split("socket ", 1)[1].split()[0]
    assert Path(socket).parent == Path(jupyter_runtime_dir())  # not kernel-ipc-N in the working directory
    assert not list(tmp_path.glob("kernel-ipc*"))


def test_two_notebook_stages_at_once_in_one_directory_each_talk_to_their_own_kernel(tmp_path):
    """mmscale repro runs stages side by side: jupyter_client's default socket prefix (``kernel-ipc``
    in the working directory) made two kernels read each other's messages ('Invalid Signature')."""
    import subprocess

    stage_project(tmp_path, {name: f"import time\ntime.sleep(2)\nprint('{name} done')" for name in ("97_left", "98_right")})
    jobs = [subprocess.Popen(stage_command(name), cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
            for name in ("97_left", "98_right")]
    results = [job.communicate(timeout=300) for job in jobs]
    for job, (_, err) in zip(jobs, results):
        assert job.returncode == 0 and "Invalid" not in err, err
    for name in ("97_left", "98_right"):
        executed = nbformat.read(tmp_path / "reports" / "notebooks" / f"{name}.ipynb", 4)
        assert f"{name} done" in "".join(o.get("text", "") for c in executed.cells for o in c.get("outputs", []))


def test_compare_modalities_finds_the_better_backbone(tmp_path):
    """Both towers (little noise) vs text only (much noise): a clear, signed difference on every subset."""
    scenarios = fake_scenarios(n_images=80)
    for seed in (0, 1):
        fake_run(tmp_path / "runs", f"both/seed{seed}", scenarios, "lipo", seed, 0.2)
    fake_run(tmp_path / "runs", "text", scenarios, "lipo", 0, 3.0, backbone="minilm-text")
    fake_run(tmp_path / "runs", "bce", scenarios, "bce", 0, 0.1)  # other objectives take no part
    runs = experiments.collect_runs(tmp_path / "runs")
    frame = experiments.run_predictions(runs, scenarios, split="test")
    table = experiments.compare_modalities(runs, frame, n_boot=200, n_perm=200)
    assert set(table["reference"]) == {"minilm-effnet"} and set(table["other"]) == {"minilm-text"}
    tau = table[(table["metric"] == "Kendall tau") & (table["lists"] == "all lists")].iloc[0]
    assert tau["diff"] > 0 and tau["ci_low"] > 0 and tau["p_value"] < 0.05
    with pytest.raises(MmscaleError, match="need lipo runs"):
        experiments.compare_modalities(runs[runs["backbone"] == "minilm-text"], frame)


def test_the_stage_kernel_manager_shuts_a_kernel_down_without_interrupting_it():
    """A stage's kernel gets no SIGINT at shutdown (it logged 'KeyboardInterrupt caught in kernel.'
    when one landed in its last handler); an interrupt outside a shutdown still goes through."""
    import asyncio
    import signal

    from mmscale_core.notebook_runner import stage_kernel_manager

    async def run() -> list:
        sent: list = []
        km = stage_kernel_manager()(kernel_name="python3")
        original = km._async_signal_kernel

        async def recording(signum):
            sent.append(signum)
            await original(signum)

        km._async_signal_kernel = recording
        await km.start_kernel()
        await km.interrupt_kernel()  # not shutting down: the SIGINT goes out
        await km.shutdown_kernel()
        assert not await km.is_alive()
        return sent

    assert asyncio.run(run()) == [signal.SIGINT]
