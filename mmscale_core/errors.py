"""User-facing errors: the CLI prints these as a message, never a traceback.

Anything else that escapes is a bug in mmscale and keeps its traceback.
"""

from __future__ import annotations


class MmscaleError(Exception):
    """A problem with the user's input or environment (bad path, bad data, missing checkpoint)."""

    exit_code = 2
