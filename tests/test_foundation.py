"""The skeleton: atomic writes, params profiles, the data stage, the CLI's error handling, the site."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mmscale_core.cli import build_parser, main as cli_main
from mmscale_core.errors import MmscaleError
from mmscale_core.io import atomic_open, write_json
from mmscale_core.params import load_profile
from mmscale_core.pipeline import prepare_data
from mmscale_core.report import build_site

from test_data import make_records, write_jsonl

REPO = Path(__file__).resolve().parents[1]


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "out.json"
    write_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_open(target, "w") as fh:
            fh.write("{half")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == '{\n  "a": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]  # no temp files left behind


def test_repo_params_define_the_three_profiles():
    for name in ("smoke", "default", "paper"):
        prof = load_profile(REPO / "params.yaml", name)
        assert prof["name"] == name and "data" in prof
    assert load_profile(REPO / "params.yaml")["name"] == yaml.safe_load((REPO / "params.yaml").read_text())["profile"]


def test_unknown_profile_and_missing_file_are_clear(tmp_path):
    with pytest.raises(MmscaleError, match="profile 'nope' is not defined; choose one of smoke, default, paper"):
        load_profile(REPO / "params.yaml", "nope")
    with pytest.raises(MmscaleError, match="parameters file not found"):
        load_profile(tmp_path / "params.yaml")


def test_data_stage_links_a_valid_real_dataset(tmp_path):
    real = write_jsonl(tmp_path / "release", make_records())
    out = prepare_data({"name": "paper", "data": {"source": "directory", "dir": str(real)}}, tmp_path / "data" / "dataset")
    assert out.is_symlink() and (out / "scenarios.jsonl").exists()


def test_data_stage_rejects_an_invalid_real_dataset(tmp_path):
    recs = make_records()
    recs[0]["ratings"] = [8, 3, 3]
    real = write_jsonl(tmp_path / "release", recs)
    with pytest.raises(MmscaleError, match="outside 1..5"):
        prepare_data({"name": "paper", "data": {"source": "directory", "dir": str(real)}}, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_data_stage_bad_source_names_the_key(tmp_path):
    with pytest.raises(MmscaleError, match=r"profiles.x.data.source must be 'simulate' or 'directory'"):
        prepare_data({"name": "x", "data": {"source": "s3"}}, tmp_path / "out")
    with pytest.raises(MmscaleError, match=r"missing key profiles.x.data"):
        prepare_data({"name": "x"}, tmp_path / "out")


def test_cli_user_errors_exit_nonzero_without_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "mmscale_core.cli", "data", "--params", str(tmp_path / "none.yaml")],
        capture_output=True, text=True,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "parameters file not found" in proc.stderr


def test_every_registered_command_builds():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert {"validate", "data", "site", "bench"} <= set(sub.choices)


def test_command_table_names_what_each_module_registers():
    """``cli.COMMAND_MODULES`` is what lets one command build alone; it must not drift from the modules."""
    import argparse
    import importlib

    from mmscale_core.cli import COMMAND_MODULES

    for module in dict.fromkeys(COMMAND_MODULES.values()):
        sub = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(module).register(sub)
        assert set(sub.choices) == {c for c, m in COMMAND_MODULES.items() if m == module}, module
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert list(sub.choices) == [*COMMAND_MODULES, "bench"]


def test_a_stage_command_builds_without_the_libraries_of_other_commands():
    """``mmscale notebook`` runs once per DVC stage: building its parser must not import pandas,
    scikit-learn, scipy or torch (~2 s a stage when every command's module was imported)."""
    code = ("import sys; from mmscale_core.cli import build_parser; "
            "args = build_parser('notebook').parse_args(['notebook', '04_table3']); "
            "assert args.func and args.name == '04_table3'; "
            "print(sorted(m for m in ('pandas', 'sklearn', 'scipy', 'torch') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_site_builds_before_repro_with_notices(tmp_path):
    """`make site` on a fresh clone: the index renders, generated tables are announced, not fatal.

    Built from the site's tracked sources copied alone (what a fresh clone has), not from this working
    tree, which after a `make repro` holds every generated table and so no notice to check."""
    import shutil

    clone = tmp_path / "clone"
    clone.mkdir()
    for name in ("_quarto.yml", "index.qmd"):
        shutil.copy2(REPO / name, clone / name)
    out = build_site(clone, tmp_path / "_site", use_quarto=False, strict=False)
    page = (out / "index.html").read_text()
    assert "<h1>MM-SCALE companion report</h1>" in page
    assert "companion, simulated data" in page
    assert "is produced by <code>make repro</code>" in page or "produced by" in page


def test_bench_data_runs_and_prints_times(capsys):
    assert cli_main(["bench", "data", "--scenarios", "500", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "scenarios.parquet" in out and "scenarios.jsonl" in out and "x" in out


def test_dvc_repo_config_has_analytics_off():
    assert "analytics = false" in (REPO / ".dvc" / "config").read_text()
