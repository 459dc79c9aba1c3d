"""Run a judge over a split and write the upstream inference JSONL as it goes, resumably.

Rows are appended and flushed one by one, so a killed run loses at most the
query in flight. A rerun reads what is there and skips the scenario ids done;
a torn last line (the kill came mid-write) and rows that ended in an
``error`` (a server that stayed down) are dropped first, by an atomic
rewrite, so they are asked again. A parse failure (an answer with no
rating) is a result, kept: greedy decoding would give the same answer again.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from mmscale_core.errors import MmscaleError
from mmscale_core.io import atomic_open
from mmscale_core.jsonl import jsonl_objects


@dataclass
class RunSummary:
    written: int = 0
    skipped: int = 0  # already in the file
    parse_failures: int = 0  # no error, but no rating in the answer
    errors: int = 0

    def line(self, path) -> str:
        return (f"{path}: {self.written} row(s) written, {self.skipped} already done; "
                f"{self.parse_failures} answer(s) without a rating, {self.errors} error(s)")


class ResumableJsonl:
    """An append-only JSONL keyed by ``key``; ``redo(record)`` marks finished rows to ask again."""

    def __init__(self, path: str | os.PathLike, key: str = "scenario_id",
                 redo: Callable[[dict], bool] = lambda record: record.get("error") is not None):
        self.path = Path(path)
        self.key = key
        self.redo = redo
        self._fh = None

    def open(self) -> set[str]:
        """Clean the file up (see the module docstring) and return the keys already done."""
        kept, dropped, done = [], 0, set()
        if self.path.exists():
            lines = self.path.read_text(encoding="utf-8").split("\n")
            torn = lines[-1] != ""  # the last write did not end its line
            for number, record, wrong in jsonl_objects(lines):
                if wrong:
                    if torn and number == len(lines):
                        dropped += 1
                        continue
                    raise MmscaleError(f"{self.path}: line {number} is {wrong}; not a file this command "
                                       f"wrote (move it away or pick another --out)")
                if not isinstance(record.get(self.key), str):
                    raise MmscaleError(f"{self.path}: line {number}: no {self.key!r}; not a file this command wrote")
                if self.redo(record) or record[self.key] in done:
                    dropped += 1
                    continue
                done.add(record[self.key])
                kept.append(lines[number - 1])
            if dropped or torn:
                with atomic_open(self.path, "w", encoding="utf-8") as fh:
                    fh.writelines(line + "\n" for line in kept)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a", encoding="utf-8")
        return done

    def write(self, record: dict) -> None:
        self._fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def split_rows(scenarios: pd.DataFrame, split: str, data_dir: Any = "") -> pd.DataFrame:
    """The scenarios of ``split`` in dataset order (image by image), or an error naming the splits there are."""
    present = sorted(scenarios["split"].dropna().astype(str).unique())
    if split not in present:
        raise MmscaleError(f"{data_dir}: no split {split!r}; the dataset has {', '.join(present) or 'no splits'}")
    return scenarios[scenarios["split"] == split]


def base_record(row: Any, meta: dict) -> dict:
    """The upstream inference row's fields that do not depend on the answer."""
    return {"image_id": row.image_id, "scenario_id": row.scenario_id, "text": row.scenario,
            "gold_rating": float(row.score), "modality": row.modality, **meta}


def run_rows(rows: pd.DataFrame, results: Callable[[pd.DataFrame], Iterator[tuple[Any, dict]]],
             out: str | os.PathLike, meta: dict, *, progress: bool = True, limit: int | None = None,
             record: Callable[[Any, dict, dict], dict] | None = None, desc: str = "judge",
             unparsed: Callable[[dict], bool] = lambda answer: answer.get("prediction") is None) -> RunSummary:
    """Ask ``results(todo)`` for every row not done yet and append each answer as it arrives.

    ``results`` yields ``(row, answer)`` with ``answer`` holding ``raw_output``, ``error``,
    ``prediction`` (in any order); ``record`` turns them into the output row (default: the
    upstream inference row); ``unparsed(answer)`` says whether an answer without an error
    still gave no result (counted on the progress bar).
    """
    from tqdm.auto import tqdm

    record = record or (lambda row, meta, answer: {**base_record(row, meta), **answer})
    summary = RunSummary()
    with ResumableJsonl(out) as output:
        done = output.open()
        todo = rows[~rows["scenario_id"].isin(done)]
        summary.skipped = len(rows) - len(todo)
        if limit is not None:
            todo = todo.iloc[: max(0, limit - summary.skipped)]
        bar = tqdm(total=len(todo), desc=desc, unit="scenario", disable=not progress)
        try:
            for row, answer in results(todo):
                output.write(record(row, meta, answer))
                summary.written += 1
                if answer.get("error") is not None:
                    summary.errors += 1
                elif unparsed(answer):
                    summary.parse_failures += 1
                bar.update(1)
                bar.set_postfix(parse_failures=summary.parse_failures, errors=summary.errors, refresh=False)
        finally:
            bar.close()
    return summary


def local_results(judge, scoring: str, load_image: Callable[[str], Any]):
    """``results`` for :func:`run_rows`: one image's remaining scenarios at a time."""
    score = {"expected": judge.expected, "generate": judge.generate}[scoring]

    def results(todo: pd.DataFrame) -> Iterator[tuple[Any, dict]]:
        for image_id, group in todo.groupby("image_id", sort=False):
            rows = list(group.itertuples())
            for row, answer in zip(rows, score(load_image(image_id), [r.scenario for r in rows])):
                yield row, answer
    return results


def concurrent_results(ask: Callable[[Any], dict], concurrency: int):
    """``results`` for :func:`run_rows`: ``ask(row)`` in at most ``concurrency`` threads, in completion order."""
    if concurrency < 1:
        raise MmscaleError(f"--concurrency must be at least 1, got {concurrency}")

    def results(todo: pd.DataFrame) -> Iterator[tuple[Any, dict]]:
        pending = iter(todo.itertuples())
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            in_flight = {}
            for row in _take(pending, concurrency):
                in_flight[pool.submit(ask, row)] = row
            while in_flight:
                finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in finished:
                    row = in_flight.pop(future)
                    for nxt in _take(pending, 1):
                        in_flight[pool.submit(ask, nxt)] = nxt
                    yield row, future.result()
    return results


def _take(iterator: Iterator, n: int) -> Iterable:
    for _ in range(n):
        try:
            yield next(iterator)
        except StopIteration:
            return


def cached_data_urls(load_image: Callable[[str], Any], max_side: int, size: int = 64) -> Callable[[str], str]:
    """image_id -> data URL, the last ``size`` images kept (scenarios of one image arrive together)."""
    from mmscale_core.judges.server import image_data_url

    @functools.lru_cache(maxsize=size)
    def data_url(image_id: str) -> str:
        return image_data_url(load_image(image_id), max_side)
    return data_url
