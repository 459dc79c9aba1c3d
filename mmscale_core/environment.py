"""Which software produced the numbers: versions of the key libraries, next to the lock file.

A reproducible companion says what it ran with. The pipeline's Table 3 notebook writes this
table from its own kernel (the environment that computed the headline numbers, not the one
that later builds the site), and the report's index includes it beside the headline table.
"""

from __future__ import annotations

import importlib.metadata as metadata
import platform
from pathlib import Path

import pandas as pd

from mmscale_core.display import MISSING

#: Distributions whose versions can change the numbers (models, metrics, tables) or the pipeline.
KEY_LIBRARIES = ("torch", "torchvision", "transformers", "peft", "accelerate", "timm", "tokenizers",
                 "scikit-learn", "scipy", "statsmodels", "krippendorff", "numpy", "pandas", "pyarrow",
                 "matplotlib", "seaborn", "dvc", "papermill")


def installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def locked_versions(lock_file: str | Path) -> dict[str, str]:
    """``{name: version}`` of a pip ``name==version`` file (empty when it does not exist)."""
    from packaging.utils import canonicalize_name

    path = Path(lock_file)
    if not path.is_file():
        return {}
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        name, sep, version = line.split("#", 1)[0].strip().partition("==")
        if sep:
            pins[canonicalize_name(name)] = version
    return pins


def environment_table(lock_file: str | Path = "requirements.lock",
                      libraries: tuple[str, ...] = KEY_LIBRARIES) -> pd.DataFrame:
    """One row per key library: the version this interpreter runs, the lock file's, and whether
    they agree ("—" where there is nothing to compare; torch is pinned by the Makefile's TORCH_SPEC, not the lock; local tags such as
    ``+cpu`` are ignored)."""
    from packaging.utils import canonicalize_name

    pins = locked_versions(lock_file)
    rows = [{"library": "python", "version": platform.python_version(), "requirements.lock": MISSING,
             "matches lock": MISSING}]
    for name in libraries:
        version = installed_version(name)
        locked = pins.get(canonicalize_name(name))
        same = None if version is None or locked is None else version.split("+")[0] == locked
        rows.append({"library": name, "version": version or "not installed", "requirements.lock": locked or MISSING,
                     "matches lock": MISSING if same is None else ("yes" if same else "no")})
    frame = pd.DataFrame(rows)
    frame["source"] = f"the kernel that computed these numbers ({platform.system()} {platform.machine()})"
    return frame
