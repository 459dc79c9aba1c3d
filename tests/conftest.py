"""Fixtures shared by several test modules."""

from __future__ import annotations

import pytest


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
