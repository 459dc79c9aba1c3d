"""The cache of validated frames: a hit is exactly the frame a fresh load builds, and nothing else hits."""

from __future__ import annotations

import pandas as pd
import pytest

from mmscale_core.data import DatasetError, frame_cache, load_dataset
from test_data import make_records, write_jsonl


@pytest.fixture
def cache(tmp_path, monkeypatch):
    directory = tmp_path / "frames"
    monkeypatch.setenv("MMSCALE_FRAME_CACHE_DIR", str(directory))
    monkeypatch.delenv("MMSCALE_FRAME_CACHE", raising=False)
    return directory


def validations(monkeypatch) -> list[str]:
    """Count the loader's record validations (what a hit skips)."""
    from mmscale_core.data import ours

    calls = []
    real = ours.validate_records

    def counting(name, labelled):
        calls.append(name)
        return real(name, labelled)

    monkeypatch.setattr(ours, "validate_records", counting)
    return calls


def test_a_hit_is_the_frame_a_fresh_load_builds(tmp_path, cache, monkeypatch):
    root = write_jsonl(tmp_path / "ds", make_records(with_split=True))
    calls = validations(monkeypatch)
    first = load_dataset(root)
    second = load_dataset(root)
    assert calls == ["scenarios.jsonl"]  # the second load read the kept frame
    assert len(list(cache.glob("*.pkl"))) == 1
    monkeypatch.setenv("MMSCALE_FRAME_CACHE", "0")
    fresh = load_dataset(root)
    for loaded in (first, second):
        pd.testing.assert_frame_equal(loaded.scenarios, fresh.scenarios, check_exact=True)
        assert (loaded.given, loaded.warnings, loaded.images) == (fresh.given, fresh.warnings, fresh.images)


def test_other_bytes_settings_or_code_miss(tmp_path, cache, monkeypatch):
    recs = make_records()
    root = write_jsonl(tmp_path / "ds", recs)
    calls = validations(monkeypatch)
    assert load_dataset(root).scenarios["score"].iloc[0] == pytest.approx(sum(recs[0]["ratings"]) / 3)
    recs[0]["ratings"] = [5, 5, 5]  # same length of file, other content
    write_jsonl(root, recs, images=False)
    assert load_dataset(root).scenarios["score"].iloc[0] == 5.0
    load_dataset(root, test_fraction=0.5)  # the split is derived: other settings, another frame
    monkeypatch.setattr(frame_cache, "code_digest", lambda: "edited code")
    load_dataset(root)
    assert len(calls) == 4


def test_images_are_checked_on_every_load(tmp_path, cache):
    root = write_jsonl(tmp_path / "ds", make_records())
    load_dataset(root)
    (root / "images" / "img002.png").unlink()
    with pytest.raises(DatasetError, match="img002"):
        load_dataset(root)


def test_a_dataset_with_problems_is_never_kept(tmp_path, cache):
    recs = make_records()
    recs[1]["ratings"] = [9]
    root = write_jsonl(tmp_path / "ds", recs)
    for _ in range(2):  # the second load reports the same problem: it validated again
        with pytest.raises(DatasetError, match="ratings"):
            load_dataset(root)
    assert not list(cache.glob("*.pkl"))


def test_an_unreadable_entry_is_a_miss_and_only_the_newest_are_kept(tmp_path, cache, monkeypatch):
    root = write_jsonl(tmp_path / "ds", make_records())
    load_dataset(root)
    [entry] = cache.glob("*.pkl")
    entry.write_bytes(b"not a pickle")
    assert len(load_dataset(root).scenarios) == 18
    assert entry.read_bytes() != b"not a pickle"  # rebuilt and kept again
    monkeypatch.setattr(frame_cache, "KEEP", 2)
    for n in range(3):
        recs = make_records(n_images=2 + n)
        load_dataset(write_jsonl(tmp_path / f"other{n}", recs))
    assert len(list(cache.glob("*.pkl"))) == 2


def test_switched_off_writes_nothing(tmp_path, cache, monkeypatch):
    monkeypatch.setenv("MMSCALE_FRAME_CACHE", "0")
    load_dataset(write_jsonl(tmp_path / "ds", make_records()))
    assert not cache.exists()


def test_the_code_digest_changes_with_any_module_of_the_package(tmp_path):
    import shutil
    from pathlib import Path

    import mmscale_core

    copy = tmp_path / "mmscale_core"
    shutil.copytree(Path(mmscale_core.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__"))
    before = frame_cache.source_digest(copy)
    assert before == frame_cache.code_digest()
    (copy / "plots.py").write_text((copy / "plots.py").read_text() + "\n# an edit far from the loader\n")
    assert frame_cache.source_digest(copy) != before
