"""Characters that must not appear in scenario or setting text, as one pure check.

Why: a NUL byte is stored by SQLite and refused by PostgreSQL (a 500 there), and
bidirectional overrides such as U+202E display text in another order than it is
stored, so an annotator (or a reader of the release) sees something else than
what was rated. Ordinary whitespace (tab, newline, carriage return) is allowed:
callers collapse it. Shared by MORALE (added scenarios, the served pool) and
dataset validation.
"""

from __future__ import annotations

import unicodedata

ALLOWED_CONTROLS = frozenset("\t\n\r")
# Explicit directional formatting characters (Unicode UAX #9): embeddings, overrides, isolates, marks.
BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def forbidden_characters(text: str) -> list[tuple[int, str]]:
    """(index, 'U+XXXX NAME') of every control or bidirectional formatting character in ``text``."""
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
