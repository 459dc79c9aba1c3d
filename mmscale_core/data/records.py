"""The record rules both layouts share, applied to records already in our field names.

A layout with other field names (the authors') passes ``names`` (our name -> its name)
so every problem names the field as it is spelled in the user's file.

Integers may arrive as integral floats (3.0): pandas writes int columns that contain
nulls that way, so they are accepted; 2.5, NaN and booleans are not.
"""

from __future__ import annotations

import math
import numbers
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable

from mmscale_core.data.problems import Problem
from mmscale_core.data.schema import (
    IMAGE_SOURCES, MODALITIES, NORMBANK_LABELS, ORIGINS, QC_FLAGS, RATING_RANGE, REQUIRED_FIELDS, SPLITS, splits_phrase,
)
from mmscale_core.jsonl import jsonl_objects
from mmscale_core.text_checks import describe_forbidden_characters

Report = Callable[[str, str], None]


def read_jsonl_records(path: Path, problems: list[Problem], file_name: str | None = None) -> list[tuple[str, dict]]:
    """Records with their line labels; unparsable lines become problems."""
    name = file_name or path.name
    records: list[tuple[str, dict]] = []
    with open(path, "rb") as fh:
        for number, obj, wrong in jsonl_objects(fh):
            if wrong:
                problems.append(Problem(name, wrong, f"line {number}"))
            else:
                records.append((f"line {number}", obj))
    return records


def is_int(x: Any) -> bool:
    """Integers, and floats holding an integer (pandas turns int columns with nulls into floats)."""
    t = type(x)
    if t is int:  # the common case, checked without the slow ABC machinery
        return True
    if t is bool:
        return False
    return isinstance(x, numbers.Integral) or (isinstance(x, float) and x.is_integer())


def is_null(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def describe(x: Any) -> str:
    text = repr(x)
    return text if len(text) <= 40 else text[:37] + "..."


def _is_number(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)


def _check_kept_fields(rec: dict, report: Report) -> None:
    """The optional stored values: score/modality given, and the authors' bookkeeping fields."""
    score = rec.get("score")
    if type(score) is float and RATING_RANGE[0] <= score <= RATING_RANGE[1]:
        pass  # the common case, without the ABC checks
    elif not is_null(score) and not (_is_number(score) and RATING_RANGE[0] <= score <= RATING_RANGE[1]):
        report("score", f"must be a number from 1 to 5, got {describe(score)}")
    modality = rec.get("modality")
    if modality is not None and modality not in MODALITIES:
        report("modality", f"{describe(modality)} is not one of {', '.join(MODALITIES)}")
    std = rec.get("rating_std")
    if type(std) is float and std >= 0:
        pass
    elif not is_null(std) and not (_is_number(std) and std >= 0):
        report("rating_std", f"must be a number >= 0 or null, got {describe(std)}")
    slots = rec.get("source_slots")
    if slots is not None and not (isinstance(slots, (list, tuple)) and all(is_int(s) for s in slots)):
        report("source_slots", f"must be a list of integers or null, got {describe(slots)}")
    size = rec.get("dedupe_group_size")
    if not is_null(size) and not (is_int(size) and size >= 1):
        report("dedupe_group_size", f"must be an integer >= 1 or null, got {describe(size)}")


def check_record(rec: dict, report: Report, required: Iterable[str] = REQUIRED_FIELDS,
                 votes_per_rating: bool = True) -> None:
    """Apply every field rule to one record; ``report(field, message)`` collects problems.

    ``votes_per_rating``: a ``modalities`` list of another length than ``ratings`` is an
    error (our layout, unless the record stores its ``modality``); off, it is a warning
    raised when the frame is built (the authors' layout).
    """
    for name in required:
        if name not in rec:
            report(name, "missing field")

    for name in ("image_id", "scenario_id", "scenario"):
        if name in rec:
            v = rec[name]
            if type(v) is not str:
                report(name, f"must be a string, got {describe(v)}")
            elif not v or v.isspace():
                report(name, "must be a non-empty string")
    image_id = rec.get("image_id")
    if isinstance(image_id, str) and image_id.strip() and (
        "/" in image_id or "\\" in image_id or image_id.startswith(".")
    ):
        report("image_id", f"{describe(image_id)} is not usable as a file name")
    if "setting" in rec and not isinstance(rec["setting"], str):
        report("setting", f"must be a string, got {describe(rec['setting'])}")
    for name in ("scenario", "setting"):  # NUL and text-direction overrides (shared with MORALE)
        if isinstance(rec.get(name), str):
            bad = describe_forbidden_characters(rec[name])
            if bad:
                report(name, bad)

    lab = rec.get("normbank_label")
    if not is_null(lab) and (not is_int(lab) or lab not in NORMBANK_LABELS):
        report("normbank_label", f"must be -1, 0, 1 or null, got {describe(lab)}")

    lengths: dict[str, int] = {}
    ratings = rec.get("ratings")
    if "ratings" in rec:
        if not isinstance(ratings, (list, tuple)):
            report("ratings", f"must be a list of integers 1..5, got {describe(ratings)}")
        elif len(ratings) == 0:
            report("ratings", "must have at least one rating")
        else:
            lengths["ratings"] = len(ratings)
            for i, r in enumerate(ratings):
                if type(r) is int and 1 <= r <= 5:
                    continue
                if is_null(r):
                    report("ratings", f"rating #{i + 1} is missing (null or NaN)")
                elif not is_int(r):
                    report("ratings", f"rating #{i + 1} is {describe(r)}, not an integer")
                elif not RATING_RANGE[0] <= r <= RATING_RANGE[1]:
                    report("ratings", f"rating #{i + 1} is {r}, outside 1..5")

    for name, allowed in (("modalities", MODALITIES), ("annotators", None)):
        values = rec.get(name)
        if values is None and (name == "annotators" or name not in rec):
            continue  # annotators: optional; modalities: reported missing above
        if not isinstance(values, (list, tuple)):
            report(name, f"must be a list, got {describe(values)}")
            continue
        lengths[name] = len(values)
        for i, v in enumerate(values):
            if allowed is not None and v not in allowed:
                report(name, f"entry #{i + 1} is {describe(v)}; expected one of {', '.join(allowed)}")
            elif allowed is None and not (type(v) is str and v and not v.isspace()):
                report(name, f"entry #{i + 1} is {describe(v)}; expected a non-empty annotator id")
        if allowed is None and len(set(map(str, values))) != len(values):
            dupes = sorted(k for k, c in Counter(v for v in values if isinstance(v, str)).items() if c > 1)
            if dupes:
                report(name, f"annotator(s) {', '.join(dupes)} rated this scenario more than once")

    if "ratings" in lengths:
        # a record that stores its modality label (the authors' data, converted) may carry
        # votes of another length: a warning then (see ``dataset.build_frame``), not an error
        strict_votes = votes_per_rating and rec.get("modality") is None
        for name in ("modalities", "annotators") if strict_votes else ("annotators",):
            if name in lengths and lengths[name] != lengths["ratings"]:
                report(name, f"has {lengths[name]} entries but ratings has {lengths['ratings']}")

    for name, allowed in (("split", SPLITS), ("image_source", IMAGE_SOURCES), ("qc", QC_FLAGS),
                          ("origin", ORIGINS)):
        v = rec.get(name)
        if v is not None and v not in allowed:
            report(name, f"{describe(v)} is not one of {', '.join(allowed)}")
    _check_kept_fields(rec, report)


def validate_records(file_name: str, records: list[tuple[str, dict]], *,
                     required: Iterable[str] = REQUIRED_FIELDS, votes_per_rating: bool = True,
                     names: dict[str, str] | None = None) -> list[Problem]:
    """Every field rule on every record, plus the cross-record rules (unique ids, splits).

    ``names`` maps our field names to the file's, for the problems' field names.
    """
    names = names or {}
    required = tuple(required)
    problems: list[Problem] = []
    if not records:
        problems.append(Problem(file_name, "the dataset has no records"))
        return problems

    seen_ids: dict[str, str] = {}
    splits_by_image: dict[str, set] = {}
    n_with_split = n_with_origin = 0
    for label, rec in records:
        sid = rec.get("scenario_id")
        where = f"scenario_id={sid}" if isinstance(sid, str) and sid.strip() else label

        def report(fld: str, msg: str, _where=where) -> None:
            problems.append(Problem(file_name, msg, _where, names.get(fld, fld)))

        check_record(rec, report, required, votes_per_rating)
        if isinstance(sid, str) and sid.strip():
            if sid in seen_ids:
                report("scenario_id", f"duplicate id (first at {seen_ids[sid]})")
            else:
                seen_ids[sid] = label
        n_with_origin += rec.get("origin") is not None
        split = rec.get("split")
        if split is not None:
            n_with_split += 1
            if isinstance(rec.get("image_id"), str):
                splits_by_image.setdefault(rec["image_id"], set()).add(split)

    if 0 < n_with_split < len(records):
        problems.append(Problem(
            file_name,
            f"'split' is set on {n_with_split} of {len(records)} records; set it on all or none",
            field="split",
        ))
    if 0 < n_with_origin < len(records):  # a missing origin would be read as neither source nor expansion
        problems.append(Problem(
            file_name,
            f"'origin' is set on {n_with_origin} of {len(records)} records; set it on all or none",
            field=names.get("origin", "origin"),
        ))
    for image_id, splits in splits_by_image.items():
        if len(splits) > 1:
            problems.append(Problem(
                file_name,
                f"image {image_id} has scenarios in {splits_phrase(splits)} "
                "(splits must be image-disjoint)",
                f"image_id={image_id}", "split",
            ))
    return problems
