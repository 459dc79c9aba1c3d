"""The dataset digest later pipeline stages depend on: it changes exactly when the dataset's files do."""

from __future__ import annotations

import json

from mmscale_core.data.digest import content_digest, digest_path, write_digest


def _tree(root):
    (root / "images").mkdir(parents=True)
    (root / "scenarios.parquet").write_bytes(b"records")
    (root / "images" / "a.png").write_bytes(b"\x89PNG-aaaa")
    (root / "images" / "b.png").write_bytes(b"\x89PNG-bbbb")
    return root


def test_the_digest_changes_with_any_byte_name_or_file_and_only_then(tmp_path):
    root = _tree(tmp_path / "dataset")
    first = content_digest(root)
    assert first == content_digest(root) and first["files"] == 3 and first["bytes"] == 7 + 9 + 9
    (root / "images" / "a.png").write_bytes(b"\x89PNG-aaab")  # same size, one byte
    assert content_digest(root)["sha256"] != first["sha256"]
    (root / "images" / "a.png").write_bytes(b"\x89PNG-aaaa")
    assert content_digest(root) == first  # back to the same bytes: the same digest (mtimes do not count)
    (root / "images" / "a.png").rename(root / "images" / "c.png")
    assert content_digest(root)["sha256"] != first["sha256"]
    (root / "images" / "c.png").rename(root / "images" / "a.png")
    (root / "photo").mkdir()
    (root / "photo" / "a.jpg").write_bytes(b"")
    assert content_digest(root)["sha256"] != first["sha256"]  # an added (even empty) file


def test_write_digest_puts_it_beside_the_directory_and_follows_a_symlinked_release(tmp_path):
    real = _tree(tmp_path / "release")
    link = tmp_path / "data" / "dataset"
    link.parent.mkdir()
    link.symlink_to(real, target_is_directory=True)
    path = write_digest(link)
    assert path == digest_path(link) == tmp_path / "data" / "dataset.digest.json"
    written = json.loads(path.read_text())
    assert written == {"dataset": "dataset", **content_digest(real)}
