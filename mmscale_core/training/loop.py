"""Listwise fine-tuning of a backbone + scalar head (paper sec. 4 and Algorithm 13), top to bottom.

One run = one ``TrainConfig``. The steps, in the order the code runs them:

1. config and run directory: the directory is checked first, but nothing is written
   until the model has loaded (a missing checkpoint leaves no half-made run);
   ``config.json`` records everything, incl. the dataset hash and the VLM
   checkpoint loaded (``backbone_checkpoint``);
2. data: the training images (fraction ``train_fraction``), each image's scenarios
   shuffled and cut into lists of at most ``max_list_size`` (the paper's lists
   of 1-5 grouped by image), lists shuffled and grouped ``lists_per_batch`` at a
   time, padded with a mask (both re-drawn every epoch from ``(seed, epoch)``);
   with frozen towers every text embedding and pooled image vector is one row of
   a table built once per run and a batch is an index slice
   (``lists.collate_indexed``), else ``lists.collate`` pads each list's inputs;
3. model: ``load_backbone`` -> LoRA with the paper's settings (or frozen) ->
   ``ScoringModel`` (scalar MLP head, optional modality head); a finished run in
   ``same_as`` with this config but for its directory is copied here instead (``same_run``);
4. AdamW (lr 1e-4) on the trainable parameters; accelerate places the model,
   runs bf16 autocast and data parallelism (``accelerate launch``);
5. ``resume=True`` restores the last checkpoint (below) and continues after its
   epoch, ending bit-identical to an uninterrupted run on CPU;
6. the loop: forward, objective (``mmscale_core.losses``), backward,
   ``grad_accum`` micro-batches per optimizer step, tqdm with the running loss;
7. after every epoch an atomic checkpoint (trainable weights, optimizer, every
   RNG, the log) in ``checkpoint/last.pt``;
8. outputs: ``adapter/`` (peft ``save_pretrained``: LoRA + fully-trained
   backbone modules such as the fusion projection), ``head.safetensors``,
   ``predictions.parquet`` (scenario_id, image_id, split, score = raw head
   output, calibrated_score = isotonic map to 1-5 fitted on the val split, else train,
   modality_pred; the held-out scenarios and those of the images trained on), ``calibration.json``, ``train_log.csv``, ``metrics.json``
   (``evaluate_lists`` on the test split, with CIs, chance and oracle). The
   predictions are scored by every process, each its shard of the lists,
   gathered to all (``score_scenarios``); the main process writes.

The loop uses only the ``Backbone`` interface (plus two optional hooks:
``modules_to_save``, backbone parts trained in full, and ``warm_cache``,
precomputing a frozen image trunk), so the embedded CPU backbones and the
paper's 7B VLMs train through the same code.

Determinism: ``set_seed`` (python, numpy, torch), a seeded generator for
ListMLE's tie-breaking, epoch data order derived from (seed, epoch),
``torch.use_deterministic_algorithms`` and image features computed in a fixed
order, so the same seed gives identical predictions on CPU (for the same
``torch_threads``). Note that ``train`` sets these process-wide.

GPUs: ``accelerate launch -m mmscale_core.cli train ... --mixed-precision bf16``
runs data parallel over every GPU (each process takes an equal share of each
epoch's batches); a single process uses the one accelerator it finds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import shutil
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from mmscale_core.data import ImageLoader, dataset_fingerprint, load_dataset
from mmscale_core.errors import MmscaleError
from mmscale_core.io import write_json
from mmscale_core.losses import make_objective
from mmscale_core.models import backbone_kwargs_for
from mmscale_core.training.checkpoint import (
    load_checkpoint, load_trainable_state, restore_rng_state, rng_state, save_checkpoint, trainable_state,
)
from mmscale_core.training.config import CHECKPOINT_FILE, CONFIG_FILE, LOG_FILE, TrainConfig
from mmscale_core.training.lists import (
    collate, collate_indexed, epoch_batches, frame_tensors, has_image_cache, padded_rows, prediction_rows,
    select_training_images, warm_caches,
)
from mmscale_core.training.model import build_model, loaded_checkpoint, make_optimizer
from mmscale_core.training.run_outputs import write_log, write_run_outputs
from mmscale_core.training.same_run import copy_run, finished_same_run
from mmscale_core.training.scoring import make_accelerator, score_scenarios


def check_run_dir(config: TrainConfig, resume: bool, overwrite: bool) -> None:
    """Refuse a run directory that holds another run (unless ``overwrite``) or, to resume, other settings.

    Only reads: ``train`` calls it before the model loads and again (through
    ``prepare_run_dir``) before writing, then with the checkpoint record filled in.
    """
    run_dir = Path(config.out)
    if not (run_dir / CONFIG_FILE).exists():
        return
    if resume:
        saved = TrainConfig.load(run_dir).to_dict()
        new = config.to_dict()
        if not config.backbone_checkpoint:  # not known before the model has loaded
            new["backbone_checkpoint"] = saved.get("backbone_checkpoint")
        if saved != new:
            diff = sorted(k for k, v in new.items() if saved.get(k) != v)
            raise MmscaleError(f"{run_dir}: cannot resume, the config differs in: {', '.join(diff)} "
                               f"(the dataset hash differs if the data changed, backbone_checkpoint if the "
                               f"checkpoint's files did)")
    elif not overwrite:
        raise MmscaleError(f"{run_dir}: already holds a run; pass --resume to continue it or --overwrite")


def prepare_run_dir(config: TrainConfig, resume: bool, overwrite: bool) -> Path:
    """``check_run_dir``, then clear an overwritten run and create the directory: the run's first write."""
    run_dir = Path(config.out)
    check_run_dir(config, resume, overwrite)
    if (run_dir / CONFIG_FILE).exists() and not resume:
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def train(config: TrainConfig, *, resume: bool = False, overwrite: bool = False,
          progress: bool = True, same_as: str | Path | list[str | Path] | None = None) -> Path:
    """Train one run (Algorithm 13) and write its outputs; returns the run directory.

    ``same_as``: finished runs to copy instead of training, when one has this config but for
    its directory (``same_run``; checked once the model has loaded, before anything is written).
    """
    from accelerate.utils import DistributedDataParallelKwargs, set_seed

    # ---- 1. config, data, run directory
    config.validate()
    config = dataclasses.replace(config, backbone_kwargs=backbone_kwargs_for(config.backbone, config.backbone_kwargs))
    if config.torch_threads > 0:
        torch.set_num_threads(config.torch_threads)
    # with a feature store every image was decoded (and so checked) when the store was built
    dataset = load_dataset(config.data, decode_images=not config.feature_store)
    config = dataclasses.replace(config, dataset_hash=dataset_fingerprint(dataset))
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
    accelerator = make_accelerator(
        config.mixed_precision, kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
    run_dir = Path(config.out)
    check_run_dir(config, resume, overwrite)  # refuse early, before the (slow) model load
    set_seed(config.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    frame = dataset.scenarios.reset_index(drop=True)
    train_images = select_training_images(frame, config.train_fraction, config.seed)

    # ---- 3. model; 4. optimizer and objective
    model = build_model(config)  # a missing checkpoint fails here, before anything is written
    config = dataclasses.replace(config, backbone_checkpoint=loaded_checkpoint(model))
    source = finished_same_run(config, same_as)
    if source is not None:  # bit-identical outputs on CPU: copy them
        if accelerator.is_main_process:
            prepare_run_dir(config, resume, overwrite)  # refuses another run's directory as training does
            copy_run(source, config)
        accelerator.wait_for_everyone()
        accelerator.print(f"{run_dir}: the same run as {source} (its config but for the directory): "
                          f"copied, not trained again")
        return run_dir
    if accelerator.is_main_process:
        prepare_run_dir(config, resume, overwrite)
        write_json(run_dir / CONFIG_FILE, config.to_dict())
    accelerator.wait_for_everyone()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(model, config)
    objective = make_objective(config.objective, aux_mse=config.aux_mse, modality_weight=config.modality_weight)
    loss_generator = torch.Generator().manual_seed(config.seed)  # ListMLE tie-breaking

    # ---- 5. resume: trainable weights, optimizer state, every RNG (the data order is a function of the epoch)
    start_epoch, global_step, log_rows, resumed_rng = 0, 0, [], None
    checkpoint_path = run_dir / CHECKPOINT_FILE
    if resume and checkpoint_path.exists():
        state = load_checkpoint(checkpoint_path)
        load_trainable_state(model, state["trainable"], str(checkpoint_path))
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, global_step, log_rows = state["epoch"], state["global_step"], state["log"]
        resumed_rng = state["rng"]
        accelerator.print(f"resuming {run_dir} after epoch {start_epoch}")

    model, optimizer = accelerator.prepare(model, optimizer)
    if resumed_rng is not None:
        restore_rng_state(resumed_rng, loss_generator)

    # ---- 6. the loop
    images = ImageLoader(dataset, config.max_image_side, lazy=has_image_cache(accelerator.unwrap_model(model)))
    # everything the run will predict, in one sorted pass: the cached features (computed in fixed chunks)
    # are then bit-identical to what ``mmscale predict`` computes on the same data, also under bf16
    # autocast, where a 1e-7 difference in a feature can flip the last bit of a score
    rows = prediction_rows(frame, train_images)
    warm_caches(accelerator.unwrap_model(model), rows, images, progress and accelerator.is_local_main_process)
    # frozen towers: every scenario's text embedding and every image's pooled vector as one table row,
    # looked up by integer index (``collate_indexed``); None (LoRA, a VLM): ``collate`` per list.
    # The lists are made over ``rows``, which keeps the training images' scenarios in the frame's order,
    # so they are the same lists as over the whole frame.
    tensors = frame_tensors(accelerator.unwrap_model(model), rows, images)
    started = time.perf_counter() - (log_rows[-1]["seconds"] if log_rows else 0.0)  # resumed: continue the clock
    for epoch in range(start_epoch, config.epochs):
        batches = epoch_batches(rows, train_images, config, epoch)
        n_proc = accelerator.num_processes
        if n_proc > 1:  # equal shares so every process takes the same number of steps
            batches = batches[: len(batches) // n_proc * n_proc][accelerator.process_index::n_proc]
        if tensors is not None:  # the epoch's lists as one padded (n_lists, m) index tensor; batch i = a slice
            index = padded_rows([item for lists in batches for item in lists], tensors.pad)
            starts = [0, *itertools.accumulate(len(lists) for lists in batches)]
        model.train()
        bar = tqdm(batches, desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch",
                   disable=not (progress and accelerator.is_local_main_process))
        running, parts_sum, n_micro, n_lists = 0.0, {}, 0, 0
        for i, lists in enumerate(bar):
            if tensors is None:
                batch, targets, modality = collate(lists, rows, images)
            else:
                batch, targets, modality = collate_indexed(index[starts[i]:starts[i + 1]], tensors)
            device = accelerator.device
            targets, modality, mask = targets.to(device), modality.to(device), batch.mask.to(device)
            group_start = i - i % config.grad_accum
            group_size = min(config.grad_accum, len(batches) - group_start)
            boundary = i == group_start + group_size - 1
            sync = contextlib.nullcontext() if boundary else accelerator.no_sync(model)
            with sync:
                scores, logits = model(batch)
                loss, parts = objective(scores, targets, mask, modality_logits=logits,
                                        modality_targets=modality if logits is not None else None,
                                        generator=loss_generator)
                accelerator.backward(loss / group_size)
            n_micro += 1
            n_lists += len(lists)
            for key, value in parts.items():
                parts_sum[key] = parts_sum.get(key, 0.0) + float(value)
            if not boundary:
                continue
            if config.max_grad_norm > 0:
                accelerator.clip_grad_norm_(params, config.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            global_step += 1
            step_loss = parts_sum["total"] / n_micro
            running = step_loss if global_step == 1 else 0.98 * running + 0.02 * step_loss
            bar.set_postfix(loss=f"{running:.4f}")
            log_rows.append({"epoch": epoch + 1, "step": global_step, "lists": n_lists,
                             **{f"loss_{k}": v / n_micro for k, v in parts_sum.items()},
                             "lr": optimizer.param_groups[0]["lr"], "head_lr": optimizer.param_groups[-1]["lr"],
                             "seconds": round(time.perf_counter() - started, 3)})
            parts_sum, n_micro, n_lists = {}, 0, 0
        bar.close()

        # ---- 7. checkpoint after every epoch
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            save_checkpoint(checkpoint_path, {
                "epoch": epoch + 1, "global_step": global_step, "log": log_rows,
                "trainable": trainable_state(accelerator.unwrap_model(model)),
                "optimizer": optimizer.state_dict(), "rng": rng_state(loss_generator),
                "config": config.to_dict(),
            })
            write_log(run_dir / LOG_FILE, log_rows)
        accelerator.wait_for_everyone()

    # ---- 8. outputs: every process scores its shard of the lists (the unwrapped model needs no
    # collectives in its forward), the main process writes
    predictions = score_scenarios(accelerator.unwrap_model(model), dataset, rows, list_size=config.max_list_size,
                                  lists_per_batch=config.predict_lists_per_batch,
                                  max_image_side=config.max_image_side, progress=progress, accelerator=accelerator,
                                  tensors=tensors)
    if accelerator.is_main_process:
        write_run_outputs(accelerator.unwrap_model(model), config, dataset, rows, run_dir, log_rows,
                          progress=progress, predictions=predictions)
    accelerator.wait_for_everyone()
    return run_dir
