"""``mmscale_core.predict`` moved to :mod:`mmscale_core.training.predict`; this path keeps working."""

from mmscale_core.training.predict import (  # noqa: F401
    TrainedRun, check_same_checkpoint, load_run, predict_dataset, predict_to_file,
)

__all__ = ["TrainedRun", "check_same_checkpoint", "load_run", "predict_dataset", "predict_to_file"]
