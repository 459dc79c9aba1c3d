"""The shared JSON Lines reader: what a bad line is, located by its number."""

from __future__ import annotations

from mmscale_core.jsonl import jsonl_objects


def test_every_kind_of_line_is_numbered_and_classified():
    lines = [b'{"a": 1}\n', b"\n", b"   \n", b'{"a": \n', b"[1, 2]\n", b"\xff\xfe\n", '{"b": 2}']
    got = list(jsonl_objects(lines))
    assert [n for n, _, _ in got] == [1, 4, 5, 6, 7]  # blank lines skipped, numbers kept
    assert got[0] == (1, {"a": 1}, None) and got[-1] == (7, {"b": 2}, None)  # bytes and str alike
    assert got[1][1] is None and got[1][2].startswith("not valid JSON: ") and "column" in got[1][2]
    assert got[2] == (5, None, "expected a JSON object, got list")
    assert got[3] == (6, None, "not valid UTF-8 (byte 0)")
