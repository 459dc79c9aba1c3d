"""mmscale_core: the importable core of the MM-SCALE companion.

Modules (one concept each): ``data`` (release format + validation),
``errors`` (user-facing exceptions), ``io`` (atomic writes), ``cli`` (the
``mmscale`` command). Heavy dependencies (torch, transformers) are imported
only by the modules that need them, so ``mmscale validate`` starts fast.

Importing the package installs the CPU-torch shim for torchvision
(``models._torchvision_compat``) as an import hook: after ``import mmscale_core``,
``import torchvision``, ``import timm`` and ``from peft import PeftModel`` work in a fresh
interpreter on a CPU-only torch, where they otherwise fail with "operator torchvision::nms
does not exist". The hook imports nothing until torchvision is imported.
"""

from mmscale_core.models._torchvision_compat import install_import_hook

__version__ = "0.1.0"

install_import_hook()
