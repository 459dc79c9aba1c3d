"""``mmscale train`` and ``mmscale predict``.

Settings come from, in increasing priority: ``TrainConfig``'s defaults (the
paper's: LoRA, batch one list, five epochs, slow on a CPU), a profile's
``training`` block from params.yaml (``--profile NAME``), a ``--config`` file
(YAML or JSON mapping of ``TrainConfig`` fields), then the flags given.
``backbone_kwargs`` may hold shared keys and per-backbone blocks; the block of
the chosen backbone is resolved before the flags apply. torch and the models
are imported only when a command runs, so other commands start fast.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from mmscale_core.errors import MmscaleError

# flag -> TrainConfig field (only the ones given on the command line override)
_FIELD_FLAGS = (
    "backbone", "objective", "aux_mse", "modality_weight", "tuning", "epochs", "lr", "head_lr", "weight_decay",
    "lists_per_batch", "grad_accum", "max_list_size", "train_fraction", "head_hidden", "seed", "mixed_precision",
    "torch_threads", "max_image_side",
)
_BACKBONE_FLAGS = ("image_size", "max_length")  # -> backbone_kwargs


def _read_config_file(path: str) -> dict[str, Any]:
    import yaml

    file = Path(path)
    if not file.is_file():
        raise MmscaleError(f"{path}: config file not found")
    try:
        values = yaml.safe_load(file.read_text(encoding="utf-8")) or {}  # YAML is a superset of JSON
    except yaml.YAMLError as err:
        raise MmscaleError(f"{path}: not valid YAML/JSON: {err}") from None
    if not isinstance(values, dict):
        raise MmscaleError(f"{path}: expected a mapping of training settings")
    return values


def config_from_args(args: argparse.Namespace):
    """The ``TrainConfig`` that the parsed flags describe."""
    from mmscale_core.training import CONFIG_FILE, TrainConfig

    values: dict[str, Any] = {}
    saved = Path(args.out) / CONFIG_FILE
    if args.resume and saved.is_file():  # start from the run's own settings; flags may only repeat them
        values = TrainConfig.load(args.out).to_dict()
        values.pop("dataset_hash")
        values.pop("backbone_checkpoint", None)
    if args.profile:
        from mmscale_core.params import load_profile

        values.update(load_profile(args.params, args.profile).get("training") or {})
    if args.config:
        values.update(_read_config_file(args.config))
    if args.data is not None:
        values["data"] = args.data
    if "data" not in values:
        raise MmscaleError("--data is required (except with --resume of an existing run)")
    values["out"] = args.out
    for name in _FIELD_FLAGS:
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    if args.modality_head:
        values["modality_head"] = True
    from mmscale_core.models import backbone_kwargs_for, parse_backbone_args

    kwargs = backbone_kwargs_for(values.get("backbone", TrainConfig.backbone), values.get("backbone_kwargs"))
    for name in _BACKBONE_FLAGS:
        if getattr(args, name) is not None:
            kwargs[name] = getattr(args, name)
    kwargs.update(parse_backbone_args(args.backbone_arg))
    values["backbone_kwargs"] = kwargs
    config = TrainConfig.from_dict(values)
    config.validate()
    return config


def _cmd_train(args: argparse.Namespace) -> int:
    from mmscale_core.training import METRICS_FILE, train

    config = config_from_args(args)
    run_dir = train(config, resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress)
    metrics = json.loads((run_dir / METRICS_FILE).read_text(encoding="utf-8"))
    table = metrics.get("min_list_size_2", {})
    shown = ", ".join(f"{name} {m['value']:.3f} [{m['ci_low']:.3f}, {m['ci_high']:.3f}]"
                      for name, m in table.items() if isinstance(m, dict) and m.get("value") is not None)
    print(f"run written to {run_dir}")
    if shown:
        print(f"test ({metrics['split']}, lists >= 2): {shown}")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from mmscale_core.predict import predict_to_file

    predictions = predict_to_file(args.run, args.data, args.out, progress=not args.no_progress, fmt=args.format,
                                  device=args.device, mixed_precision=args.mixed_precision)
    print(f"{len(predictions)} predictions written to {args.out}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="fine-tune a backbone + scalar head with a listwise objective (paper Alg. 13)",
        description="Train one run: LoRA (r=4, alpha=16, dropout 0.05) + MLP score head, AdamW, "
                    "lists of 1-5 scenarios per image. Writes adapter/, head.safetensors, predictions.parquet, "
                    "train_log.csv, metrics.json and a per-epoch checkpoint to --out. "
                    "The defaults are the paper's settings (LoRA, 5 epochs, one list per batch: slow on a CPU); "
                    "--profile NAME takes a params.yaml profile's training block instead (e.g. smoke, default). "
                    "Nothing is written to --out until the backbone has loaded. "
                    "Multi-GPU / bf16: accelerate launch -m mmscale_core.cli train ... --mixed-precision bf16",
    )
    p.add_argument("--data", help="dataset directory (release format); with --resume, defaults to the run's")
    p.add_argument("--out", required=True, help="run directory to write")
    p.add_argument("--profile", help="start from this params.yaml profile's training block (smoke, default, paper); "
                                     "without it the defaults are the paper's")
    p.add_argument("--params", default="params.yaml", help="parameters file for --profile (default params.yaml)")
    p.add_argument("--config", help="YAML/JSON file of training settings (TrainConfig fields)")
    p.add_argument("--backbone", help="minilm-effnet (default), minilm-text, effnet-image, or a VLM name")
    p.add_argument("--objective", help="lipo (default), lipo+mse, bpo, bce, pairwise, mse")
    p.add_argument("--aux-mse", type=float, help="weight of the auxiliary MSE term")
    p.add_argument("--modality-weight", type=float, help="> 0 trains a modality head with this loss weight")
    p.add_argument("--modality-head", action="store_true", help="add a modality head even with weight 0")
    p.add_argument("--tuning", choices=["lora", "frozen"], help="LoRA (default) or frozen encoder + heads")
    p.add_argument("--epochs", type=int)
    p.add_argument("--lr", type=float, help="learning rate of the LoRA weights (default 1e-4, the paper's)")
    p.add_argument("--head-lr", type=float, help="learning rate of the heads and fusion (default: --lr)")
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--lists-per-batch", type=int, help="lists per micro-batch (padded; default 1)")
    p.add_argument("--grad-accum", type=int, help="micro-batches per optimizer step")
    p.add_argument("--max-list-size", type=int, help="m: scenarios per list (default 5)")
    p.add_argument("--train-fraction", type=float, help="f: fraction of the training images (default 1)")
    p.add_argument("--head-hidden", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--mixed-precision", choices=["no", "bf16", "fp16"])
    p.add_argument("--torch-threads", type=int, help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--image-size", type=int,
                   help="image input size: the embedded image tower's (default 224); a VLM's longer image side "
                        "(default 336, the paper's); at most --max-image-side")
    p.add_argument("--max-length", type=int,
                   help="scenario tokens: the embedded text tower's maximum (default 32); a VLM truncates each "
                        "scenario to it (default: no truncation)")
    p.add_argument("--max-image-side", type=int,
                   help="cap on the longer image side when images are loaded, before the backbone's own resize "
                        "(default 336, the paper's); raise it with --image-size above 336")
    p.add_argument("--backbone-arg", action="append", metavar="KEY=VALUE",
                   help="extra backbone factory argument (JSON value), repeatable, e.g. path=DIR (a local VLM "
                        "checkpoint), torch_dtype=bf16, attn_implementation=eager; one the backbone does not "
                        "take is an error")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last checkpoint, with its saved settings")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_train)

    q = subparsers.add_parser(
        "predict", help="score a dataset with a trained run",
        description="Score every scenario of a dataset (release format) with a run from mmscale train; "
                    "writes scenario_id, image_id, split, score, calibrated_score, modality_pred. "
                    "Runs through accelerate like training: accelerate launch -m mmscale_core.cli predict ... "
                    "shards the lists over the processes and the main process writes --out.",
    )
    q.add_argument("--run", required=True, help="run directory written by mmscale train")
    q.add_argument("--data", required=True, help="dataset directory to score")
    q.add_argument("--out", required=True, help="output file (parquet, or JSONL with --format upstream)")
    q.add_argument("--format", choices=["parquet", "upstream"], default="parquet",
                   help="parquet (default) or upstream: the release's inference JSONL (prediction = calibrated "
                        "1-5 score, provider mmscale, prompt_type trained), scored by mmscale evaluate or the "
                        "authors' evaluators")
    q.add_argument("--device", help="cpu, or a torch device such as cuda:1 (default: accelerate's choice, the GPU "
                                    "of this process if there is one)")
    q.add_argument("--mixed-precision", choices=["no", "bf16", "fp16"],
                   help="autocast while scoring (default: the run's own, as its calibration was fitted on)")
    q.add_argument("--no-progress", action="store_true", help="no progress bars")
    q.set_defaults(func=_cmd_predict)
