"""Reading JSON Lines one line at a time, every bad line located by its number.

Why one reader: a release's scenario file, a prediction file, a judge's resumable output and
a rationale file are all JSONL, and each caller decides what a bad line means (a problem to
list, an error to raise, a torn last write to drop); what a bad line *is* stays the same.
"""

from __future__ import annotations

import json
from typing import Iterable, Iterator


def jsonl_objects(lines: Iterable[str | bytes]) -> Iterator[tuple[int, dict | None, str | None]]:
    """``(line number, object, None)`` per JSON-object line, ``(line number, None, what is wrong)``
    per bad one (not UTF-8, not JSON, not an object); blank lines are skipped. Numbers start at 1."""
    for number, raw in enumerate(lines, start=1):
        if isinstance(raw, bytes):
            try:
                raw = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                yield number, None, f"not valid UTF-8 (byte {err.start})"
                continue
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as err:
            yield number, None, f"not valid JSON: {err.msg} at column {err.colno}"
            continue
        if not isinstance(obj, dict):
            yield number, None, f"expected a JSON object, got {type(obj).__name__}"
            continue
        yield number, obj, None
