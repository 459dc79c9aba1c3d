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
    """The project after `dvc repro` on the smoke profile (tests/smoke.py): built once per session."""
    from smoke import build_smoke_project

    return build_smoke_project(tmp_path_factory.mktemp("pipeline") / "project")
