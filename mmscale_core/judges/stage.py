"""``mmscale judge-stage``: one item of the pipeline's ``judge`` matrix (judge model x prompt type).

    mmscale judge-stage --params params.yaml --judge NAME --prompt zero_shot|icl3|cot --data DIR --out DIR

Reads ``judges`` (shared) and ``profiles.<profile>.judges`` (sizes, checkpoints)
from params.yaml and runs ``mmscale judge`` on the test split, writing
``OUT/predictions.jsonl``. A profile with ``random_stand_in: true`` (smoke,
default: the embedded default has no generative VLM) judges with the tiny
random-init Qwen2-VL, saved once to ``tiny_dir``: its ratings are noise and
exist to exercise the code, never as results. Otherwise the judge's checkpoint
is ``profiles.<profile>.judges.models.<NAME>.path`` (a local directory; nothing
is downloaded).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mmscale_core.errors import MmscaleError

TINY_BACKBONE = "qwen2-vl"


def judge_argv(settings: dict, sizes: dict, judge: str, prompt: str, data_dir: str, out_dir: str,
               tiny_dir: str, profile_name: str = "") -> list[str]:
    """The ``mmscale judge`` command line of one matrix item (``settings``: params ``judges``,
    ``sizes``: ``profiles.<profile>.judges``)."""
    where = f"profiles.{profile_name}.judges"
    scoring = str(sizes.get("scoring") or settings.get("scoring") or "expected")
    if prompt == "cot" and scoring == "expected":
        raise MmscaleError(f"params.yaml: {where}: the cot prompt needs --scoring generate (a rationale is "
                           f"generated text), but scoring is 'expected'")
    if sizes.get("random_stand_in"):
        backbone, backbone_args = TINY_BACKBONE, {"path": str(tiny_dir)}
    else:
        model = (sizes.get("models") or {}).get(judge)
        if not isinstance(model, dict) or not model.get("path"):
            raise MmscaleError(f"params.yaml: {where}.models.{judge}.path: no checkpoint directory for judge "
                               f"{judge!r} (each judge of judges.model needs a local path; nothing is downloaded)")
        model = dict(model)
        backbone = str(model.pop("backbone", judge))
        backbone_args = model
    argv = ["judge", "--data", str(data_dir), "--split", str(settings.get("split", "test")), "--prompt", prompt,
            "--scoring", scoring, "--backbone", backbone, "--out", str(Path(out_dir) / "predictions.jsonl"),
            "--no-progress"]
    for key, value in backbone_args.items():
        argv += ["--backbone-arg", f"{key}={value if isinstance(value, str) else json.dumps(value)}"]
    if "exemplar_seed" in settings:
        argv += ["--exemplar-seed", str(settings["exemplar_seed"])]
    if sizes.get("limit"):
        argv += ["--limit", str(int(sizes["limit"]))]
    for key, flag in (("device", "--device"), ("torch_threads", "--torch-threads"),
                      ("max_new_tokens", "--max-new-tokens")):
        if sizes.get(key):
            argv += [flag, str(sizes[key])]
    return argv


def _cmd_stage(args: argparse.Namespace) -> int:
    from mmscale_core.judges.cli import run_judge_command
    from mmscale_core.params import load_params, load_profile

    profile = load_profile(args.params, args.profile)
    settings = load_params(args.params).get("judges") or {}
    sizes = profile.get("judges") or {}
    tiny_dir = Path(args.tiny_dir)
    if sizes.get("random_stand_in") and not (tiny_dir / "config.json").is_file():
        save_seeded_tiny_judge(tiny_dir, int(settings.get("tiny_seed", 0)))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    return run_judge_command(judge_argv(settings, sizes, args.judge, args.prompt, args.data, str(out), str(tiny_dir),
                                       profile["name"]))


def save_seeded_tiny_judge(directory, seed: int = 0) -> str:
    """:func:`~mmscale_core.judges.local.save_tiny_qwen2_vl` under ``torch.manual_seed(seed)``: the same
    weights on every run (the builder draws them from torch's global generator)."""
    import torch

    from mmscale_core.judges.local import save_tiny_qwen2_vl

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return save_tiny_qwen2_vl(directory)


def _cmd_tiny(args: argparse.Namespace) -> int:
    print(f"tiny random-init Qwen2-VL (seed {args.seed}) written to {save_seeded_tiny_judge(args.out, args.seed)}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("judge-stage", help="pipeline stage: one judge model x prompt of the judge matrix",
                              description="Run `mmscale judge` for one item of dvc.yaml's judge matrix with the "
                                          "selected profile's judge settings (params.yaml judges, "
                                          "profiles.<profile>.judges).")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--profile", default=None, help="override the profile named in params.yaml")
    p.add_argument("--judge", required=True, help="judge name (judges.model in params.yaml)")
    p.add_argument("--prompt", required=True, help="prompt type")
    p.add_argument("--data", required=True, help="dataset directory")
    p.add_argument("--out", required=True, help="output directory (predictions.jsonl)")
    p.add_argument("--tiny-dir", default="runs/judge_models/tiny-qwen2-vl",
                   help="where the random stand-in checkpoint is (written if absent)")
    p.set_defaults(func=_cmd_stage)
    t = subparsers.add_parser("save-tiny-judge", help="write the tiny random-init Qwen2-VL judge checkpoint",
                              description="Save the tiny random-init Qwen2-VL (seeded, with a chat template) as a "
                                          "checkpoint directory: the smoke/default stand-in for a prompted judge.")
    t.add_argument("--out", required=True)
    t.add_argument("--seed", type=int, default=0, help="torch seed of the random weights (default 0)")
    t.set_defaults(func=_cmd_tiny)
