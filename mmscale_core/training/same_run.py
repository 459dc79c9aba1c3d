"""A run whose config is a finished run's, but for its directory, is that run: copied, not trained again.

Why: on CPU the same config gives bit-identical outputs (``loop``'s determinism), so
training it twice only costs time. The pipeline has such a pair: Table 5's classifier
with the profile's own tuning (frozen in the embedded default, LoRA in the paper's) is
the main LiPO run of seed 0 (``dvc.yaml``'s ``train_modality_head`` names it; which of
the two tunings it is depends on the profile, which DVC's static ``foreach`` cannot say).

"The same" is every field of ``TrainConfig`` but ``out``, compared after the model has
loaded, so a VLM's checkpoint fingerprint (``backbone_checkpoint``) is part of it; the
dataset hash is, too. Only a finished source counts: one with ``metrics.json``, the
file a run writes last but its log.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from mmscale_core.io import replace_dir, write_json
from mmscale_core.training.checkpoint import load_checkpoint, save_checkpoint
from mmscale_core.training.config import CHECKPOINT_FILE, CONFIG_FILE, METRICS_FILE, TrainConfig


def finished_same_run(config: TrainConfig, candidates) -> Path | None:
    """The first of ``candidates`` (run directories, or one) that finished with ``config`` but for ``out``; else None."""
    wanted = {**config.to_dict(), "out": None}
    if isinstance(candidates, (str, Path)):
        candidates = [candidates]
    for candidate in candidates or ():
        candidate = Path(candidate)
        if Path(config.out).resolve() == candidate.resolve():
            continue
        if not (candidate / CONFIG_FILE).is_file() or not (candidate / METRICS_FILE).is_file():
            continue
        if {**TrainConfig.load(candidate).to_dict(), "out": None} == wanted:
            return candidate
    return None


def copy_run(source: Path, config: TrainConfig) -> Path:
    """``source``'s files as the run ``config.out``, written under a temporary name and swapped in.

    Every record of the config (``config.json``, ``metrics.json``, the checkpoint) names the
    new directory, so the copy is what training would have written there.
    """
    run_dir = Path(config.out)
    tmp = run_dir.with_name(f".{run_dir.name}.copying")
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(source, tmp)
    record = config.to_dict()
    write_json(tmp / CONFIG_FILE, record)
    metrics = json.loads((tmp / METRICS_FILE).read_text(encoding="utf-8"))
    write_json(tmp / METRICS_FILE, {**metrics, "config": record})
    checkpoint = tmp / CHECKPOINT_FILE
    if checkpoint.is_file():
        state = load_checkpoint(checkpoint)
        save_checkpoint(checkpoint, {**state, "config": record})
    replace_dir(tmp, run_dir)
    return run_dir
