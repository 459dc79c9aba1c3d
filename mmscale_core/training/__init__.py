"""Listwise fine-tuning of a backbone + scalar head (paper sec. 4 and Algorithm 13).

One concept per module; the loop reads top to bottom in ``loop.py``:

* ``config``      ``TrainConfig`` (everything that defines a run) and the run's file names;
* ``lists``       training images, each epoch's lists of <= m scenarios, collation (padded batches);
* ``model``       backbone (+ LoRA, or frozen) + heads, optimizer groups;
* ``loop``        ``train``: the run, top to bottom;
* ``checkpoint``  trainable weights, optimizer and every RNG, written atomically;
* ``calibration`` the isotonic map raw score -> 1-5;
* ``scoring``     ``score_scenarios`` (sharded over processes, gathered) and the accelerator;
* ``run_outputs`` what a finished run writes (predictions, metrics, log, adapter, head);
* ``same_run``    a run with a finished run's config is copied from it, not trained again;
* ``predict``     a finished run rebuilt for inference (``mmscale predict``).

Every public name is re-exported here, so ``from mmscale_core.training import train`` keeps working.
"""

from mmscale_core.models._torchvision_compat import ensure_torchvision_importable

ensure_torchvision_importable()  # peft and accelerate import transformers, which imports torchvision

from mmscale_core.data import Dataset, ImageLoader, dataset_fingerprint, load_dataset  # noqa: E402,F401
from mmscale_core.io import replace_dir  # noqa: E402,F401  (was defined here)
from mmscale_core.training.calibration import apply_calibration, fit_calibration  # noqa: E402
from mmscale_core.training.checkpoint import (  # noqa: E402
    load_checkpoint, load_trainable_state, restore_rng_state, rng_state, save_checkpoint, trainable_state,
)
from mmscale_core.training.config import (  # noqa: E402
    ADAPTER_DIR, CALIBRATION_FILE, CHECKPOINT_FILE, CONFIG_FILE, HEAD_FILE, LOG_FILE, METRICS_FILE,
    PREDICTION_COLUMNS, PREDICTIONS_FILE, TUNING_MODES, TrainConfig,
)
from mmscale_core.training.lists import (  # noqa: E402
    FrameTensors, ScenarioList, collate, collate_indexed, epoch_batches, frame_tensors, has_image_cache, make_lists,
    padded_rows, prediction_rows, select_training_images, warm_caches,
)
from mmscale_core.training.loop import check_run_dir, prepare_run_dir, train  # noqa: E402
from mmscale_core.training.model import (  # noqa: E402
    attach_feature_store, build_model, freeze_backbone, loaded_checkpoint, make_optimizer, parameter_groups, uses_lora,
)
from mmscale_core.training.run_outputs import (  # noqa: E402
    evaluate_predictions, save_model_outputs, write_log, write_run_outputs,
)
from mmscale_core.training.scoring import gather_list_scores, make_accelerator, score_scenarios, shard  # noqa: E402
from mmscale_core.training.predict import (  # noqa: E402  (last: it uses the names above)
    TrainedRun, check_same_checkpoint, load_run, predict_dataset, predict_to_file,
)

__all__ = [
    "ADAPTER_DIR", "CALIBRATION_FILE", "CHECKPOINT_FILE", "CONFIG_FILE", "HEAD_FILE", "LOG_FILE", "METRICS_FILE",
    "PREDICTION_COLUMNS", "PREDICTIONS_FILE", "TUNING_MODES", "Dataset", "FrameTensors", "ImageLoader", "ScenarioList",
    "TrainConfig", "TrainedRun", "apply_calibration", "attach_feature_store", "build_model",
    "check_run_dir", "check_same_checkpoint", "collate", "collate_indexed", "dataset_fingerprint", "epoch_batches",
    "evaluate_predictions", "fit_calibration", "frame_tensors", "freeze_backbone", "gather_list_scores", "has_image_cache",
    "load_checkpoint", "load_dataset", "load_run", "load_trainable_state", "loaded_checkpoint", "make_accelerator",
    "make_lists", "make_optimizer", "padded_rows", "parameter_groups", "predict_dataset", "predict_to_file", "prediction_rows", "prepare_run_dir",
    "replace_dir", "restore_rng_state", "rng_state", "save_checkpoint", "save_model_outputs", "score_scenarios",
    "select_training_images", "shard", "train", "trainable_state", "uses_lora", "warm_caches", "write_log",
    "write_run_outputs",
]
