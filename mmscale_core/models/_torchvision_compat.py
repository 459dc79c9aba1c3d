"""Make ``import torchvision`` (and so ``import timm``) work on a CPU-only torch.

PyPI has no CPU build of torchvision: the wheel matching torch 2.13 links its
C++ ops against CUDA libraries that a CPU torch lacks, so its ops library
fails to load. torchvision then still registers fake kernels for
``torchvision::nms``/``qnms`` unconditionally, and that raises
"operator torchvision::nms does not exist" at import time. We only need
torchvision's Python modules (timm imports ``FrozenBatchNorm2d`` and
transforms), so when the ops library cannot load we declare those two operator
schemas; calling them would still fail, and nothing here calls them. With a
working torchvision (a GPU install) this function changes nothing.
"""

from __future__ import annotations

import functools
import sys
import importlib.util
from pathlib import Path

_SCHEMAS = {
    "nms": "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor",
}


@functools.cache
def ensure_torchvision_importable() -> bool:
    """Call before importing timm or transformers; returns True if the shim was needed."""
    import torch

    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return False
    libs = sorted(Path(spec.submodule_search_locations[0]).glob("_C*.so"))
    try:
        for lib in libs:
            torch.ops.load_library(str(lib))
        if libs:
            return False
    except OSError:
        pass
    for name, schema in _SCHEMAS.items():
        if not hasattr(torch.ops.torchvision, name):
            torch.library.define(f"torchvision::{name}", schema)
    return True


class _ShimOnImport:
    """A ``sys.meta_path`` finder that applies the shim just before torchvision is first imported
    (directly, or through timm / transformers / peft), then steps aside: ``import mmscale_core``
    stays light (no torch import) and a user's own ``from peft import PeftModel`` works."""

    busy = False

    def find_spec(self, name, path=None, target=None):
        if name == "torchvision" and not self.busy:
            self.busy = True
            try:
                ensure_torchvision_importable()
            finally:
                self.busy = False
                if self in sys.meta_path:
                    sys.meta_path.remove(self)
        return None


def install_import_hook() -> None:
    """Apply :func:`ensure_torchvision_importable` before the first ``import torchvision``
    (called by ``import mmscale_core``; a no-op when torchvision is already imported)."""
    if "torchvision" in sys.modules or any(isinstance(f, _ShimOnImport) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _ShimOnImport())
