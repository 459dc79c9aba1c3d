"""The versions the report prints beside its numbers."""

from __future__ import annotations

import importlib.metadata as metadata

from mmscale_core.environment import environment_table


def test_versions_of_this_interpreter_next_to_the_lock(tmp_path):
    lock = tmp_path / "requirements.lock"
    lock.write_text(f"# header\npandas=={metadata.version('pandas')}\nnumpy==0.0.1\n")
    table = environment_table(lock, libraries=("pandas", "numpy", "no-such-distribution")).set_index("library")
    assert table.loc["pandas", "version"] == metadata.version("pandas")
    assert table.loc["pandas", "matches lock"] == "yes"
    assert table.loc["numpy", "requirements.lock"] == "0.0.1" and table.loc["numpy", "matches lock"] == "no"
    assert table.loc["no-such-distribution", "version"] == "not installed"
    assert "python" in table.index and table["source"].notna().all()


def test_without_a_lock_file_nothing_is_claimed(tmp_path):
    table = environment_table(tmp_path / "missing.lock", libraries=("pandas",)).set_index("library")
    assert table.loc["pandas", "requirements.lock"] == "—" and table.loc["pandas", "matches lock"] == "—"
