"""Profiles in ``params.yaml``: one key (``profile``) picks a block of parameters.

Every stage reads its parameters through :func:`load_profile`, so a profile
is defined in one place and a missing or misspelt key fails with the file
and the key path, not a ``KeyError`` deep in a notebook.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mmscale_core.errors import MmscaleError

PARAMS_FILE = "params.yaml"


def load_params(path: str | Path = PARAMS_FILE) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise MmscaleError(f"{path}: parameters file not found")
    try:
        params = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise MmscaleError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(params, dict) or "profiles" not in params:
        raise MmscaleError(f"{path}: expected a mapping with 'profile' and 'profiles'")
    return params


def load_profile(path: str | Path = PARAMS_FILE, profile: str | None = None) -> dict[str, Any]:
    """The parameters of ``profile`` (default: the file's ``profile`` key), with ``name`` added."""
    params = load_params(path)
    name = profile or params.get("profile")
    profiles = params["profiles"]
    if name not in profiles:
        raise MmscaleError(f"{path}: profile {name!r} is not defined; choose one of {', '.join(profiles)}")
    return {"name": name, **profiles[name]}


def require(section: dict[str, Any], key: str, where: str) -> Any:
    """``section[key]`` or a clear error naming ``where.key``."""
    if key not in section:
        raise MmscaleError(f"{PARAMS_FILE}: missing key {where}.{key}")
    return section[key]
