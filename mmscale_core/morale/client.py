"""A scripted annotator's view of MORALE's pages: read the forms a person would fill in.

Why a module of its own: the load benchmark (``mmscale bench morale``) and the tests drive the
real pages through HTTP, and both need the same reading of them (hidden fields, the items of a
rating form in display order, what an attention check asks for, which step a page is).
"""

from __future__ import annotations

import html as html_lib
import random
import re


def hidden_field(page: str, name: str) -> str:
    match = re.search(rf'name="{re.escape(name)}" value="([^"]*)"', page)
    if not match:
        raise AssertionError(f"the page has no hidden field {name!r}")
    return html_lib.unescape(match.group(1))


def item_keys(page: str) -> list[str]:
    """Keys of the rating / reconfirm form items in display order (``i<n>``, canaries named alike)."""
    return list(dict.fromkeys(re.findall(r'name="rating_(i\d+)"', page)))


def canary_answers(page: str) -> dict[str, tuple[int, str]]:
    """key -> (rating, modality) that each attention check on the page asks for."""
    out = {}
    for block in page.split('<article class="scenario card')[1:]:
        asked = re.search(r"please select rating (\d) .*?modality \u201c(\w+)\u201d", block, re.S)
        key = re.search(r'name="rating_(i\d+)"', block)
        if asked and key:
            out[key.group(1)] = (int(asked.group(1)), asked.group(2))
    return out


def checked_answers(page: str) -> dict[str, tuple[str, str]]:
    """key -> (rating, modality) pre-selected on a reconfirm page."""
    ratings = dict(re.findall(r'name="rating_(i\d+)" value="(\d)" checked', page))
    modalities = dict(re.findall(r'name="modality_(i\d+)" value="(\w+)" checked', page))
    return {k: (ratings[k], modalities[k]) for k in ratings if k in modalities}


def stage_of(page: str) -> str:
    for stage, marker in (("rate", 'id="rate-form"'), ("reconfirm", 'id="reconfirm-form"'),
                          ("add", 'id="add-form"'), ("done", 'id="done"'), ("finished", 'id="finished"')):
        if marker in page:
            return stage
    return "unknown"


def rating_form(page: str, rng: random.Random) -> tuple[dict[str, str], dict[str, tuple[int, str]]]:
    """A filled rating form (random answers, canaries as instructed) and the scenario answers in it."""
    data = {"csrf_token": hidden_field(page, "csrf_token"), "client_token": hidden_field(page, "client_token")}
    canaries = canary_answers(page)
    answers = {}
    for key in item_keys(page):
        rating, modality = canaries.get(key) or (rng.randint(1, 5), rng.choice(("text", "image", "both")))
        data[f"rating_{key}"], data[f"modality_{key}"] = str(rating), modality
        if key not in canaries:
            answers[key] = (rating, modality)
    return data, answers
