"""Characters that must not appear in scenario or setting text, as one pure check.

Why: a NUL byte is stored by SQLite and refused by PostgreSQL (a 500 there), and
bidirectional overrides such as U+202E display text in another order than it is
stored, so an annotator (or a reader of the release) sees something else than
what was rated. Ordinary whitespace (tab, newline, carriage return) is allowed:
callers collapse it. Shared by MORALE (added scenarios, the served pool) and
dataset validation.
"""

from __future__ import annotations

import re
import unicodedata

ALLOWED_CONTROLS = frozenset("\t\n\r")
# Explicit directional formatting characters (Unicode UAX #9): embeddings, overrides, isolates, marks.
BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


# The same set as one character class, so a clean text (nearly all) is checked in C: category Cc is
# U+0000-001F and U+007F-009F, Cs the surrogates (fixed by Unicode; tests compare every code point).
_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff"
                        + "".join(sorted(BIDI_CONTROLS)) + "]")


def forbidden_characters(text: str) -> list[tuple[int, str]]:
    """(index, 'U+XXXX NAME') of every control or bidirectional formatting character in ``text``."""
    if _FORBIDDEN.search(text) is None:  # validating 32,500 records: 2 s in the loop below, 0.05 s here
        return []
    found = []
    for index, char in enumerate(text):
        if char in ALLOWED_CONTROLS:
            continue
        category = unicodedata.category(char)
        if category in ("Cc", "Cs") or char in BIDI_CONTROLS:
            name = unicodedata.name(char, "control character")
            found.append((index, f"U+{ord(char):04X} {name}"))
    return found


def describe_forbidden_characters(text: str) -> str | None:
    """A one-line message naming the first offending characters, or None when the text is clean."""
    found = forbidden_characters(text)
    if not found:
        return None
    shown = ", ".join(f"{name} at position {index + 1}" for index, name in found[:3])
    more = f" and {len(found) - 3} more" if len(found) > 3 else ""
    return f"contains control or text-direction characters ({shown}{more}); remove them"
