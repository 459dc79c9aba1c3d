"""A 1-5 rating from a model's free-text answer, or ``None`` (a parse failure, counted, never raised).

The rules (the upstream's, made strict about what counts as *one* rating):

1. the last line of the form ``Rating: N`` (any case, markdown emphasis
   ignored, ``:`` or a full-width colon): its value, if it holds exactly one
   number and that number is a whole 1-5;
2. else the last non-empty line, under the same condition;
3. else ``None``.

"One number" means a reply like ``between 2 and 3``, ``2 or 3`` or ``3.5``
is no rating: guessing a side would invent an answer (``3.0`` is 3). ``4/5`` and ``4 out of
5`` are the rating 4. Out-of-scale values (``Rating: 6``, ``0``, ``-1``) are
no rating. Digits of other scripts (full-width ``３``, Arabic-Indic ``٣``)
are read as their value: the model did answer, in another script.
Superscripts and number words are not digits and are not read.
"""

from __future__ import annotations

import re
import unicodedata

_MARKDOWN = re.compile(r"[*_`#>~]")
_RATING_LINE = re.compile(r"^\s*(?:final\s+)?rating\s*[:：=]\s*(.*)$", re.IGNORECASE)
_OUT_OF_FIVE = re.compile(r"\s*(?:/|out\s+of|of)\s*5(?![\d.,]\d)", re.IGNORECASE)
_NUMBER = re.compile(r"(?<![\w.,])[-+−]?\d+(?:[.,]\d+)?(?!\w)")


def _ascii_digits(text: str) -> str:
    """Decimal digits of any script as ASCII (NFKC alone leaves e.g. Arabic-Indic digits)."""
    return "".join(str(unicodedata.decimal(ch)) if ch.isdecimal() and not ch.isascii() else ch for ch in text)


def _one_rating(fragment: str) -> float | None:
    numbers = _NUMBER.findall(_OUT_OF_FIVE.sub("", fragment))
    if len(numbers) != 1:
        return None
    token = numbers[0]
    if token[0] in "+-−" or "," in token:
        return None
    value = float(token)
    return value if value.is_integer() and 1 <= value <= 5 else None


def parse_rating(raw: str | None) -> float | None:
    """The rating in ``raw`` by the module's rules, or ``None``."""
    if not raw or not raw.strip():
        return None
    lines = [_MARKDOWN.sub("", _ascii_digits(line)).strip() for line in raw.splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        return None
    for line in reversed(lines):
        match = _RATING_LINE.match(line)
        if match:
            value = _one_rating(match.group(1))
            if value is not None:
                return value
            break
    last = lines[-1]
    match = _RATING_LINE.match(last)
    return _one_rating(match.group(1) if match else last)
