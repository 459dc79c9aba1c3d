"""mmscale_core: the importable core of the MM-SCALE companion.

Modules (one concept each): ``data`` (release format + validation),
``errors`` (user-facing exceptions), ``io`` (atomic writes), ``cli`` (the
``mmscale`` command). Heavy dependencies (torch, transformers) are imported
only by the modules that need them, so ``mmscale validate`` starts fast.
"""

__version__ = "0.1.0"
