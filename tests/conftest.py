"""Fixtures shared by several test modules."""

from __future__ import annotations

from pathlib import Path

import pytest

# the test modules that use the session's smoke project (``smoke_project`` below)
SMOKE_MODULES = frozenset(f"tests/{path.name}" for path in Path(__file__).parent.glob("test_*.py")
                          if "smoke_project" in path.read_text(encoding="utf-8"))


def pytest_configure(config):
    """Validated frames (``mmscale_core.data.frame_cache``) go to this run's own directory, not ~/.cache;
    the commands and pipelines the tests start inherit it."""
    import os
    import tempfile

    if "MMSCALE_FRAME_CACHE_DIR" not in os.environ:
        os.environ["MMSCALE_FRAME_CACHE_DIR"] = tempfile.mkdtemp(prefix="mmscale-test-frames-")
        config._mmscale_frame_cache_dir = os.environ["MMSCALE_FRAME_CACHE_DIR"]


def pytest_unconfigure(config):
    """Remove the frame-cache directory ``pytest_configure`` made (in the process that made it)."""
    import shutil

    made = getattr(config, "_mmscale_frame_cache_dir", None)
    if made:
        shutil.rmtree(made, ignore_errors=True)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """``make test`` runs on every core (pytest-xdist): whole modules per worker, the smoke modules as one.

    A module's tests stay on one worker, so its module fixtures (a tiny trained run, a PostgreSQL
    server) are made once; the modules that use the smoke project (one ``mmscale repro`` of the smoke
    profile, the suite's longest setup) share a worker, so it is built once.
    """
    from xdist.scheduler import LoadScopeScheduling

    class ModulesSmokeTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return "smoke project" if module in SMOKE_MODULES else module

    return ModulesSmokeTogether(config, log)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Small models: intra-op threads only add sync overhead, and stall badly on a busy CI machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def smoke_project(tmp_path_factory):
    """The project after `dvc repro` on the smoke profile (tests/smoke.py): built once per session.

    While developing, ``MMSCALE_SMOKE_PROJECT=DIR`` reuses a copy you built and keep (tests add to it).
    """
    import os
    from pathlib import Path

    from smoke import build_smoke_project

    kept = os.environ.get("MMSCALE_SMOKE_PROJECT")
    if kept:
        return Path(kept).resolve()
    return build_smoke_project(tmp_path_factory.mktemp("pipeline") / "project")
