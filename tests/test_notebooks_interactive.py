"""The notebooks as a reader runs them: opened in JupyterLab from their own directory.

Fast tests check :mod:`mmscale_core.notebook_context` on a copy of the project's dvc.yaml and
params.yaml; the slow ones use the session's smoke pipeline (conftest.py ``smoke_project``): every
notebook in ``notebooks/`` and ``reports/notebooks/`` executed with nbclient from its own directory
(no error output, nothing the pipeline made is touched), and ``04_table3`` run through JupyterLab's
own menu in headless Chromium.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from mmscale_core import notebook_context
from mmscale_core.notebook_context import RUNNER_ENV, NotebookSetupError, find_root, read_stages, setup, stages_making
from mmscale_core.notebook_runner import run_notebook
from smoke import REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


@pytest.fixture
def project(tmp_path, monkeypatch):
    """The project's dvc.yaml and params.yaml in an empty directory, entered from a subdirectory."""
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(REPO / name, tmp_path / name)
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "data" / "dataset").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "notebooks")
    monkeypatch.delenv(RUNNER_ENV, raising=False)
    monkeypatch.delenv(notebook_context.ROOT_ENV, raising=False)
    return tmp_path


def table3_parameters(**overrides):
    """04_table3's parameters cell, as the notebook holds it."""
    cell = next(c for c in nbformat.read(REPO / "notebooks" / "04_table3.ipynb", 4).cells
                if "parameters" in c.metadata.get("tags", []))
    namespace: dict = {}
    exec(cell.source, namespace)  # noqa: S102 - the project's own notebook
    namespace.pop("__builtins__")
    return {**namespace, **overrides}


def test_root_is_found_from_a_subdirectory_and_the_variable_overrides_it(project, monkeypatch, tmp_path_factory):
    assert find_root() == project
    other = tmp_path_factory.mktemp("other")
    shutil.copy(project / "dvc.yaml", other / "dvc.yaml")
    monkeypatch.setenv(notebook_context.ROOT_ENV, str(other))
    assert find_root() == other.resolve()
    monkeypatch.setenv(notebook_context.ROOT_ENV, str(project / "notebooks"))
    with pytest.raises(NotebookSetupError, match="no dvc.yaml there"):
        find_root()
    monkeypatch.delenv(notebook_context.ROOT_ENV)
    monkeypatch.chdir(other.parent)
    with pytest.raises(NotebookSetupError, match="no dvc.yaml in"):
        find_root()


def test_the_stage_that_makes_a_path_comes_from_dvc_yaml(project):
    stages = read_stages(project)
    assert stages_making("runs/table3", stages) == ["train"]  # a matrix stage's templated outs
    assert stages_making("runs/modality", stages) == ["train_modality"]  # a foreach stage's
    assert stages_making("data/dataset/photo", stages) == ["data"]  # inside an out
    assert stages_making("reports/metrics/table3", stages) == ["table3"]  # a metrics entry
    assert stages_making("runs/example", stages) == []
    for name, stage in stages.items():  # every literal out maps back to its own stage
        for out in stage["outs"]:
            assert name in stages_making(out, stages), (name, out)


def test_interactive_run_resolves_against_the_root_and_writes_to_scratch(project, capsys):
    for need in ("runs/table3", "runs/modality"):
        (project / need).mkdir(parents=True)
    namespace = table3_parameters()
    ctx = setup(namespace, "04_table3", needs=["data_dir", "runs_dir", "modality_runs_dir"])
    assert Path.cwd() == project and ctx.interactive
    assert namespace["profile"] == "default"  # None: the profile params.yaml names
    assert namespace["provenance"] == "simulated"
    assert namespace["figures_dir"] == "scratch/04_table3/figures/04_table3"
    assert namespace["tables_dir"] == "scratch/04_table3/tables/04_table3"
    assert namespace["metrics_dir"] == "scratch/04_table3/reports/metrics/table3"  # the stage's metrics
    assert namespace["runs_dir"] == "runs/table3" and namespace["data_dir"] == "data/dataset"  # inputs stay
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("profile: default (params.yaml) | data: data/dataset (companion, simulated data)")
    assert "writes: scratch/04_table3/" in first and 'write_outputs = "pipeline"' in first
    again = dict(namespace)
    setup(again, "04_table3", quiet=True)  # running the cell twice does not nest scratch in scratch
    assert again["figures_dir"] == namespace["figures_dir"]


def test_reader_can_write_to_the_pipeline_outputs_and_papermill_always_does(project, monkeypatch, capsys):
    namespace = table3_parameters(write_outputs="pipeline", profile="smoke")
    setup(namespace, "04_table3")
    assert (namespace["figures_dir"], namespace["metrics_dir"]) == ("figures/04_table3", "reports/metrics/table3")
    assert "overwriting the pipeline's outputs" in capsys.readouterr().out
    monkeypatch.setenv(RUNNER_ENV, "papermill")
    namespace = table3_parameters(profile="smoke")  # write_outputs = "scratch" is ignored by a pipeline run
    setup(namespace, "04_table3")
    assert namespace["tables_dir"] == "tables/04_table3"
    assert capsys.readouterr().out.splitlines() == [
        "profile: smoke (params.yaml) | data: data/dataset (companion, simulated data) "
        "| writes: figures/04_table3, tables/04_table3, reports/metrics/table3"]
    with pytest.raises(NotebookSetupError, match="write_outputs must be one of"):
        monkeypatch.delenv(RUNNER_ENV)
        setup(table3_parameters(write_outputs="figures"), "04_table3")


def test_data_made_with_another_profile_is_pointed_out(project, capsys):
    (project / "dvc.lock").write_text("schema: '2.0'\nstages:\n  data:\n    params:\n      params.yaml:\n"
                                      "        profile: smoke\n")
    setup(table3_parameters(), "04_table3")
    assert "made with profile 'smoke' (dvc.lock), not 'default'" in capsys.readouterr().out
    setup(table3_parameters(profile="smoke"), "04_table3")
    assert "note:" not in capsys.readouterr().out


def test_a_missing_pipeline_output_names_the_stage_in_one_line(project):
    with pytest.raises(NotebookSetupError) as err:
        setup(table3_parameters(), "04_table3", needs=["data_dir", "runs_dir", "modality_runs_dir"])
    message = str(err.value)
    assert "runs_dir = 'runs/table3' does not exist yet: `dvc repro train` makes it" in message
    assert "`dvc repro train_modality`" in message and "data_dir" not in message
    assert err.value._render_traceback_() == [f"\x1b[31m{message}\x1b[0m"]  # what Jupyter shows: no traceback
    with pytest.raises(NotebookSetupError, match="profile 'nope' is not defined"):
        setup(table3_parameters(profile="nope"), "04_table3")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_first_cell_under_the_wrong_kernel_says_which_to_pick(path, monkeypatch):
    """No importable mmscale_core (another kernel's environment): one sentence naming the kernel."""
    nb = nbformat.read(path, 4)
    assert nb.metadata.kernelspec.name == makefile_kernel_name(), "the kernel `make lab` registers"
    cells = [c for c in nb.cells if c.cell_type == "code"]
    params = next(i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", []))
    monkeypatch.setitem(sys.modules, "mmscale_core.notebook_context", None)  # import raises ImportError
    monkeypatch.delattr("mmscale_core.notebook_context", raising=False)
    namespace: dict = {}
    exec(cells[params].source, namespace)  # noqa: S102 - the project's own notebook
    with pytest.raises(Exception) as err:
        exec(cells[params + 1].source, namespace)  # noqa: S102
    assert type(err.value).__name__ == "WrongKernel"
    assert err.value._render_traceback_() == [str(err.value)]
    assert '"Python (mmscale)"' in str(err.value) and "make lab" in str(err.value)


def makefile_kernel_name() -> str:
    return re.search(r"ipykernel install --user --name (\S+)", (REPO / "Makefile").read_text()).group(1)


def test_mmscale_notebook_tells_the_kernel_it_is_a_pipeline_run(project, monkeypatch):
    (project / "notebooks" / "00_probe.ipynb").write_text(nbformat.writes(nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("figures_dir = 'figures/00_probe'", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("import os\nfrom mmscale_core import notebook_context\n"
                                  "ctx = notebook_context.setup(globals(), '00_probe')\n"
                                  f"print(os.environ['{RUNNER_ENV}'], figures_dir)"),
    ])))
    monkeypatch.chdir(project)
    out = run_notebook("00_probe", "params.yaml", "smoke")
    assert RUNNER_ENV not in os.environ  # restored after the run
    text = "".join(o.get("text", "") for c in nbformat.read(out, 4).cells for o in c.get("outputs", []))
    assert "papermill figures/00_probe" in text and "scratch" not in text


# --------------------------------------------------------------------------- on the smoke pipeline

def tree_hashes(root: Path) -> dict[str, tuple]:
    """Every file the pipeline or git knows of (all but scratch/ and the tools' own state): its bytes, and
    its inode and mtime, so that a rewrite with the same bytes (a deterministic figure) counts too."""
    skip = {".git", ".dvc", "scratch", "__pycache__", ".ipynb_checkpoints"}
    return {p.relative_to(root).as_posix(): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_ino,
                                             p.stat().st_mtime_ns)
            for p in root.rglob("*") if p.is_file() and not skip & set(p.relative_to(root).parts)}


def interactive_notebooks(project: Path) -> list[Path]:
    executed = sorted((project / "reports" / "notebooks").glob("*.ipynb"))
    assert len(executed) >= 7, executed
    return sorted((project / "notebooks").glob("*.ipynb")) + executed


@pytest.fixture(scope="module")
def interactive_runs(smoke_project):
    """Every notebook executed with nbclient in its own directory, as JupyterLab runs it.

    The kernel is the warm one (``mmscale_core.warm_kernel``: a fork of a process with the libraries
    imported, same results, seconds faster per notebook); the browser test starts the plain one.
    """
    from nbclient import NotebookClient

    from mmscale_core.warm_kernel import kernel_name

    before = tree_hashes(smoke_project)
    env_before = os.environ.pop(RUNNER_ENV, None)
    results = {}
    try:
        for path in interactive_notebooks(smoke_project):
            nb = nbformat.read(path, 4)
            NotebookClient(nb, kernel_name=kernel_name(), timeout=600, allow_errors=True,
                           resources={"metadata": {"path": str(path.parent)}}).execute()
            results[path.relative_to(smoke_project).as_posix()] = nb
    finally:
        if env_before is not None:
            os.environ[RUNNER_ENV] = env_before
    return before, tree_hashes(smoke_project), results


@pytest.mark.slow
def test_every_notebook_runs_from_its_own_directory(interactive_runs):
    _, _, results = interactive_runs
    for name, nb in results.items():
        outputs = [(i, o) for i, c in enumerate(nb.cells) if c.cell_type == "code" for o in c.outputs]
        errors = [f"cell {i}: {o.get('ename')}: {o.get('evalue')}" for i, o in outputs if o.output_type == "error"]
        assert not errors, f"{name}: {errors}"
        # stderr carries progress bars and matplotlib's font notices (as in the pipeline's copies), never a failure
        stderr = [f"cell {i}: {o.text[:300]}" for i, o in outputs
                  if o.get("name") == "stderr" and re.search(r"Traceback|Error|Exception", o.text)]
        assert not stderr, f"{name}: {stderr}"
        stem = Path(name).stem
        first = next(o.text for _, o in outputs if o.get("name") == "stdout").splitlines()[0]
        assert "profile: smoke (params.yaml) | data: data/dataset" in first, (name, first)
        if stem == "10_prompted_judges":  # a random stand-in says so before anything else
            assert first.startswith("These numbers come from a random model"), first
        else:
            assert first.startswith("profile: "), (name, first)
        assert f"writes: scratch/{stem}/" in first, (name, first)


@pytest.mark.slow
def test_interactive_runs_leave_the_pipeline_outputs_byte_identical(interactive_runs, smoke_project):
    before, after, _ = interactive_runs
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"interactive runs changed pipeline files: {changed}"
    scratch = smoke_project / "scratch"
    for nb in ("04_table3", "05_ablations", "06_calibration"):  # the figures, tables and metrics went here
        assert list((scratch / nb / "figures" / nb).glob("*.png")), nb
        assert list((scratch / nb / "tables" / nb).glob("*.csv")), nb
    assert list((scratch / "04_table3" / "reports" / "metrics" / "table3").glob("*.json"))
    assert list((scratch / "05_ablations" / "reports" / "plots").glob("*.csv"))
    assert (scratch / "03_training" / "runs" / "example" / "metrics.json").is_file()
    status = subprocess.run(["git", "status", "--porcelain", "--ignored=no"], cwd=smoke_project,
                            capture_output=True, text=True, check=True).stdout
    assert "scratch" not in status, status  # git-ignored


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_table3_runs_all_cells_in_jupyterlab(smoke_project, tmp_path):
    """`jupyter lab` on loopback with a token; Chromium opens 04_table3 and uses Run > Run All Cells."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from browser import chrome_driver
    from mmscale_core.morale.server import LOOPBACK, free_port

    kernels = tmp_path / "jupyter" / "kernels" / makefile_kernel_name()  # what `make lab` registers
    kernels.mkdir(parents=True)
    (kernels / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python (mmscale)", "language": "python"}))
    port, token = free_port(), secrets.token_hex(16)
    env = {k: v for k, v in os.environ.items() if k != RUNNER_ENV}
    settings = tmp_path / "settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)  # every cell in the page (no windowing), so each prompt and output can be read
    (settings / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none",
                                                                      "autoStartDefaultKernel": True}))
    docmanager = tmp_path / "settings" / "@jupyterlab" / "docmanager-extension"
    docmanager.mkdir(parents=True)  # no autosave: the notebook in the project stays as committed
    (docmanager / "plugin.jupyterlab-settings").write_text(json.dumps({"autosave": False}))
    env.update(JUPYTER_PATH=str(tmp_path / "jupyter"), JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
               JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"), JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"), MMSCALE_WARM_KERNEL="0")
    log = open(tmp_path / "jupyter-lab.log", "w")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", f"--ServerApp.ip={LOOPBACK}", f"--ServerApp.port={port}",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={smoke_project}",
         "--FileContentsManager.preferred_dir=notebooks", "--allow-root"],
        cwd=smoke_project / "notebooks", env=env, stdout=log, stderr=subprocess.STDOUT)
    driver = None
    shot = tmp_path / "jupyterlab-04_table3.png"
    try:
        wait_for_port(port, server, tmp_path / "jupyter-lab.log")
        driver = chrome_driver()
        driver.get(f"http://{LOOPBACK}:{port}/lab/tree/notebooks/04_table3.ipynb?token={token}")
        wait = WebDriverWait(driver, 240, poll_frequency=0.5)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".jp-Notebook .jp-Cell"))
        wait.until(lambda d: kernel_idle(d))
        run_all_cells(driver)
        # done: nothing queued and the kernel idle (Run All stops at an error, leaving later cells unrun)
        wait.until(lambda d: kernel_idle(d) and not any("*" in p for p in prompts(d)))
        cells = driver.find_elements(By.CSS_SELECTOR, ".jp-Notebook .jp-CodeCell")
        driver.save_screenshot(str(shot))
        print(f"JupyterLab screenshot: {shot}")
        unrun = [i for i, p in enumerate(prompts(driver)) if not re.fullmatch(r"\[\d+\]:", p)]
        assert not unrun, f"code cells not run (an earlier one failed?): {unrun}"
        stderr = [e.get_attribute("textContent")[:400] for e in driver.find_elements(
            By.CSS_SELECTOR, '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')]
        assert not [t for t in stderr if re.search(r"Traceback|Error|Exception", t)], stderr
        outputs = driver.find_element(By.CSS_SELECTOR, ".jp-Notebook").get_attribute("textContent")
        assert re.search(r"profile: smoke \(params\.yaml\) \| data: data/dataset .*writes: scratch/04_table3/", outputs)
        tables = [t.get_attribute("textContent") for t in driver.find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output table")]
        table3 = [t for t in tables if all(w in t for w in ("NDCG@5", "AUC-Safety", "Ours (Listwise PO)", "companion"))]
        assert table3, tables[:3]  # Table 3's headline: the paper's rows and the companion's
        driver.execute_script("arguments[0].scrollIntoView()", next(
            t for t in driver.find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output table")
            if t.get_attribute("textContent") == table3[0]))
        driver.save_screenshot(str(shot))
        assert len(cells) >= 10
        assert (smoke_project / "scratch" / "04_table3" / "tables" / "04_table3" / "table3_companion.csv").is_file()
    finally:
        if driver is not None:
            if not shot.exists():
                driver.save_screenshot(str(shot))
                print(f"JupyterLab screenshot: {shot}")
            driver.quit()
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def run_all_cells(driver, tries: int = 3) -> None:
    """Run > Run All Cells; clicked again if no cell got queued (a click on a menu still opening is lost)."""
    from selenium.common.exceptions import TimeoutException, WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    item = '//li[contains(@class, "lm-Menu-item")][.//*[normalize-space(text())="Run All Cells"]]'
    for _ in range(tries):
        accept_kernel_dialog(driver)
        try:
            next(e for e in driver.find_elements(By.CSS_SELECTOR, ".lm-MenuBar-itemLabel") if e.text == "Run").click()
            WebDriverWait(driver, 20).until(lambda d: d.find_elements(By.XPATH, item))[0].click()
            WebDriverWait(driver, 30, poll_frequency=0.2).until(lambda d: any(p != "[ ]:" for p in prompts(d)))
            return
        except (TimeoutException, WebDriverException, StopIteration):
            driver.find_element(By.TAG_NAME, "body").send_keys("\ue00c")  # Escape: close a menu left open
    pytest.fail(f"Run > Run All Cells queued no cell after {tries} tries")


def accept_kernel_dialog(driver) -> None:
    """JupyterLab may ask which kernel to start (its timing, not the notebook's): take the one offered,
    which must be the notebook's own."""
    from selenium.webdriver.common.by import By

    for dialog in driver.find_elements(By.CSS_SELECTOR, ".jp-Dialog"):
        if "Select Kernel" in dialog.text:
            chosen = dialog.find_element(By.CSS_SELECTOR, "select").get_attribute("value")
            assert "mmscale" in chosen, f"JupyterLab offers kernel {chosen!r}, not the notebook's"
            dialog.find_element(By.CSS_SELECTOR, ".jp-mod-accept").click()
            time.sleep(1)


def prompts(driver) -> list[str]:
    from selenium.webdriver.common.by import By

    return [p.get_attribute("textContent").strip() for p in driver.find_elements(By.CSS_SELECTOR, ".jp-CodeCell .jp-InputPrompt")]


def kernel_idle(driver) -> bool:
    from selenium.webdriver.common.by import By

    status = driver.find_elements(By.CSS_SELECTOR, ".jp-Notebook-ExecutionIndicator")
    return bool(status) and status[0].get_attribute("data-status") == "idle"


def wait_for_port(port: int, server: subprocess.Popen, log: Path, timeout_s: float = 120) -> None:
    import socket

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"jupyter lab exited ({server.returncode}):\n{log.read_text()[-3000:]}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    pytest.fail(f"jupyter lab did not listen on {port}:\n{log.read_text()[-3000:]}")
