"""``mmscale bench prefix``: the paper's pair-at-a-time path vs the shared-prefix path, side by side.

Both paths run on the same lists in the same process, list by list back to
back (the order alternating), after warm-up; the median over repeats of the
summed time is reported. A step is one training step on one list (the
paper's batch of one list): encode, a fixed random projection of the pair
vectors summed as the loss, backward into the LoRA parameters (paper
settings). ``--forward-only`` times inference instead. On the CPU the default
is one torch thread: on a machine shared with other work, intra-op threads
stall on each other and the timings (and so the ratio) swing several-fold;
one thread measures the work.

For the VLMs the processor work (resize, pixel values, tokenization) runs once
before timing, since a data loader does it off the critical path and it is
the same for both paths; the timed part is the model. Other backbones (the
embedded CPU ones) are timed through ``encode``/``encode_naive``.

Without ``--backbone-path`` a VLM is the tiny random-init config of
:mod:`mmscale_core.models.tiny` (real modelling code, real image processor,
so a 336x336 image gives Qwen2-VL's realistic 144 image tokens);
``--full-size`` builds random-init Qwen2-VL-7B shapes for the GPU row of
BENCHMARKS.md (``--device cuda --dtype bf16 --full-size``). FLOPs per step are
counted with ``torch.utils.flop_counter``; MFU = counted FLOPs / median step
time / the GPU's dense bf16 peak (``--peak-tflops``, or known for H100/H200/A100).
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mmscale_core.bench.timing import Timing, alternate, ratio_line
from mmscale_core.errors import MmscaleError

if TYPE_CHECKING:  # torch is imported where it is used, so `mmscale --help` stays fast
    import torch

    from mmscale_core.models.base import ListBatch

SCENARIOS = [
    "A man helps an elderly neighbour carry heavy grocery bags up the stairs.",
    "A man walks past the elderly neighbour without offering to help with the bags.",
    "A teenager takes one of the grocery bags and runs off with it.",
    "A woman offers a stranger a ride home late at night in the rain.",
    "A driver honks repeatedly at a pedestrian who is crossing slowly.",
    "Two friends share their lunch with a classmate who forgot theirs.",
    "A student copies answers from the person sitting next to them during the exam.",
    "A shop owner gives back the extra change a customer paid by mistake.",
    "A child feeds the ducks in the park with pieces of bread.",
    "A cyclist rides on the pavement through a crowd of pedestrians.",
    "A nurse stays after her shift to comfort a frightened patient.",
    "A man throws his empty bottle into the river from the bridge.",
    "A neighbour records a loud party next door and posts the video online.",
    "A woman returns a lost wallet to the police station with all the cash inside.",
    "A boy laughs at a classmate who fell down in the corridor.",
    "A volunteer hands out blankets to people sleeping on the street.",
]
PEAK_BF16_TFLOPS = {"H100": 989.4, "H200": 989.4, "A100": 312.0, "L40S": 362.1, "A6000": 154.8}


def synthetic_lists(n_lists: int, min_size: int, max_size: int, image_size: int, seed: int
                    ) -> list[ListBatch]:
    """Lists of ``min_size..max_size`` scenarios (cycling), each with its own noise image."""
    import numpy as np
    from PIL import Image

    from mmscale_core.models.base import ListBatch

    if not 1 <= min_size <= max_size:
        raise MmscaleError(f"need 1 <= --min-list <= --max-list, got {min_size}, {max_size}")
    rng = np.random.default_rng(seed)
    sizes = [min_size + i % (max_size - min_size + 1) for i in range(n_lists)]
    lists = []
    for size in sizes:
        pixels = rng.integers(0, 256, (image_size, image_size, 3), dtype=np.uint8)
        texts = [SCENARIOS[j] for j in rng.choice(len(SCENARIOS), size=size, replace=False)]
        lists.append(ListBatch.from_lists([Image.fromarray(pixels)], [texts]))
    return lists


def build_backbone(args: argparse.Namespace):
    """The backbone to benchmark: tiny/full-size random init, a local checkpoint, or an embedded one."""
    import torch

    from mmscale_core.models import BACKBONES, load_backbone
    from mmscale_core.models.vlm.checkpoint import parse_dtype

    dtype, device = parse_dtype(args.dtype), torch.device(args.device)
    if args.backbone not in BACKBONES:
        raise MmscaleError(f"unknown backbone {args.backbone!r}; choose one of: {', '.join(sorted(BACKBONES))}")
    is_vlm = BACKBONES[args.backbone].startswith("mmscale_core.models.vlm:")
    if args.full_size and args.backbone != "qwen2-vl":
        raise MmscaleError("--full-size is only available for --backbone qwen2-vl")
    if args.backbone_path is not None:
        if not is_vlm:
            raise MmscaleError(f"--backbone-path applies to the real VLMs, not {args.backbone!r}")
        backbone, origin = load_backbone(args.backbone, path=args.backbone_path, torch_dtype=dtype), "checkpoint"
    elif is_vlm:
        from mmscale_core.models.tiny import tiny_backbone, tiny_qwen2_vl

        origin = "full-size random-init config" if args.full_size else "tiny random-init config"
        if args.backbone == "qwen2-vl":  # built in place: a 7B model is initialised on the GPU, in dtype
            model, processor = tiny_qwen2_vl(full_size=args.full_size, dtype=dtype, device=device, seed=args.seed)
            return load_backbone("qwen2-vl", model=model, processor=processor), origin
        backbone = tiny_backbone(args.backbone, seed=args.seed)
    else:
        backbone, origin = load_backbone(args.backbone), "embedded pretrained"
    return backbone.to(device=device, dtype=dtype), origin


@dataclass
class PathResult(Timing):
    """A side's timing plus what only the prefix benchmark measures."""

    peak_bytes: int | None = None
    flops: int | None = None


def _sync(device: torch.device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_steps(backbone, lists: list[ListBatch], forward_only: bool, seed: int
               ) -> tuple[dict[str, list[Callable[[], None]]], dict[str, int | None]]:
    """Per path, one step callable per list; and the LM tokens per path over all lists (VLMs only)."""
    import torch

    prepare = getattr(backbone, "prepare", None)
    if prepare is not None:
        prepared = [prepare(batch) for batch in lists]
        encoders = {"naive (paper)": [lambda p=p: backbone.encode_naive_prepared(p) for p in prepared],
                    "shared prefix": [lambda p=p: backbone.encode_prepared(p) for p in prepared]}
        tokens = {"naive (paper)": sum(p.lm_tokens(shared_prefix=False) for p in prepared),
                  "shared prefix": sum(p.lm_tokens(shared_prefix=True) for p in prepared)}
    else:
        encoders = {"naive (paper)": [lambda b=b: backbone.encode_naive(b) for b in lists],
                    "shared prefix": [lambda b=b: backbone.encode(b) for b in lists]}
        tokens = {name: None for name in encoders}
    generator = torch.Generator().manual_seed(seed)
    device = next(backbone.parameters()).device
    projection = torch.randn(backbone.hidden_size, generator=generator).to(device)

    def step(encode: Callable[[], torch.Tensor]) -> None:
        if forward_only:
            with torch.no_grad():
                encode()
            return
        (encode().float() @ projection).sum().backward()
        backbone.zero_grad(set_to_none=True)

    steps = {name: [lambda e=e: step(e) for e in per_list] for name, per_list in encoders.items()}
    return steps, tokens


def count_flops(steps: list[Callable[[], None]]) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        for step in steps:
            step()
    return int(counter.get_total_flops())


def measure(steps: dict[str, list[Callable[[], None]]], device: torch.device, warmup: int, repeats: int
            ) -> list[PathResult]:
    """Every list under both paths back to back (``bench.timing.alternate``), synchronised, with peaks."""
    import torch

    peaks: dict[str, int | None] = dict.fromkeys(steps)

    def before(name: str) -> None:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        _sync(device)

    def after(name: str, kept: bool) -> None:
        _sync(device)
        if device.type == "cuda" and kept:
            peaks[name] = max(peaks[name] or 0, torch.cuda.max_memory_allocated(device))

    timings = alternate(steps, warmup=warmup, repeats=repeats, before=before, after=after)
    return [PathResult(t.name, t.seconds, peak_bytes=peaks[t.name]) for t in timings]


def peak_tflops(device: torch.device, given: float | None) -> float | None:
    import torch

    if given is not None:
        return given
    if device.type != "cuda":
        return None
    gpu = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_BF16_TFLOPS.items() if key in gpu), None)


def run_bench(args: argparse.Namespace) -> int:
    import torch

    from mmscale_core.models._torchvision_compat import ensure_torchvision_importable

    ensure_torchvision_importable()  # peft imports transformers, which imports torchvision
    from mmscale_core.models.lora import apply_lora

    torch.manual_seed(args.seed)
    threads = args.threads if args.threads is not None else (1 if args.device == "cpu" else 0)
    if threads:
        torch.set_num_threads(threads)
    backbone, origin = build_backbone(args)
    device = next(backbone.parameters()).device
    if not args.forward_only:
        apply_lora(backbone, backbone.lora_target_modules)
    backbone.train(not args.forward_only)
    lists = synthetic_lists(args.lists, args.min_list, args.max_list, args.image_size, args.seed)
    steps, tokens = make_steps(backbone, lists, args.forward_only, args.seed)
    results = measure(steps, device, args.warmup, args.repeats)
    if not args.no_flops:
        for result in results:
            result.flops = count_flops(steps[result.name])

    n_scenarios = sum(int(b.mask.sum()) for b in lists)
    peak = peak_tflops(device, args.peak_tflops)
    print(describe(args, backbone, origin, lists))
    rows = []
    header = (f"{'path':<15} {'scenarios/s':>12} {'LM tokens/s':>12} {'ms/list':>9} {'peak mem':>10} "
              f"{'GFLOP/list':>11} {'TFLOP/s':>8} {'MFU':>6}")
    print(header)
    for result in results:
        per_s = n_scenarios / result.median
        tok = f"{tokens[result.name] / result.median:,.0f}" if tokens[result.name] is not None else "n/a"
        mem = f"{result.peak_bytes / 2**30:.2f} GiB" if result.peak_bytes is not None else "n/a"
        gflop = f"{result.flops / len(lists) / 1e9:,.2f}" if result.flops is not None else "n/a"
        achieved = result.flops / result.median / 1e12 if result.flops is not None else None
        tflops = f"{achieved:.3f}" if achieved is not None else "n/a"
        mfu = f"{achieved / peak:.1%}" if achieved is not None and peak else "n/a"
        print(f"{result.name:<15} {per_s:>12,.2f} {tok:>12} {1000 * result.median / len(lists):>9.1f} {mem:>10} "
              f"{gflop:>11} {tflops:>8} {mfu:>6}")
        rows.append(dict(path=result.name, scenarios_per_s=per_s, seconds=result.seconds,
                         lm_tokens=tokens[result.name], peak_bytes=result.peak_bytes, flops=result.flops))
    ratio = results[0].median / results[1].median
    print(ratio_line("shared-prefix speed-up (scenarios/s, shared / naive)", (results[0].name, results[0].median),
                     (results[1].name, results[1].median)))
    if args.json:
        from mmscale_core.io import write_json

        write_json(args.json, dict(backbone=args.backbone, origin=origin, device=str(device), dtype=args.dtype,
                                   lists=len(lists), scenarios=n_scenarios, image_size=args.image_size,
                                   forward_only=args.forward_only, peak_tflops=peak, ratio=ratio, paths=rows))
    return 0


def describe(args: argparse.Namespace, backbone, origin: str, lists: list[ListBatch]) -> str:
    import torch

    sizes = [int(b.mask.sum()) for b in lists]
    trainable = sum(p.numel() for p in backbone.parameters() if p.requires_grad)
    total = sum(p.numel() for p in backbone.parameters())
    where = str(next(backbone.parameters()).device)
    if where == "cuda" or where.startswith("cuda:"):
        where += f" ({torch.cuda.get_device_name()})"
    tuned = "no LoRA" if args.forward_only else f"{trainable / 1e6:,.3f}M trainable (LoRA r=4)"
    lines = [
        f"backbone {args.backbone} ({origin}), {total / 1e6:,.1f}M parameters, {tuned}, {where}, {args.dtype}, "
        f"{torch.get_num_threads()} CPU threads",
        f"{len(lists)} lists of {min(sizes)}-{max(sizes)} scenarios (mean {statistics.mean(sizes):.2f}), "
        f"{args.image_size}x{args.image_size} images",
    ]
    prepare = getattr(backbone, "prepare", None)
    if prepare is not None:
        prepared = prepare(lists[0])
        prefix = prepared.prefixes[0].input_ids
        n_image = int((prefix == backbone.image_token_id).sum())
        suffix = statistics.mean(s.numel() for s in prepared.suffix_ids[0])
        lines.append(f"prefix {prefix.numel()} tokens ({n_image} image tokens), scenario suffix {suffix:.1f} "
                     f"tokens on average")
    step = "forward only (no grad)" if args.forward_only else "forward + backward (training step)"
    lines.append(f"step: {step}, one list per step; warmup {args.warmup}, median of {args.repeats} repeats")
    return "\n".join(lines)


def register_bench(subparsers) -> None:
    parser = subparsers.add_parser(
        "prefix", help="naive (one pair per forward) vs shared-prefix lists, scenarios/s side by side",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="qwen2-vl", help="registry name (default qwen2-vl)")
    parser.add_argument("--backbone-path", help="a local checkpoint of a real VLM (default: random init)")
    parser.add_argument("--full-size", action="store_true", help="random-init Qwen2-VL-7B shapes (needs a GPU)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--dtype", default="fp32", help="fp32 or bf16 (default fp32)")
    parser.add_argument("--lists", type=int, default=8, help="lists per repeat (default 8)")
    parser.add_argument("--min-list", type=int, default=3, help="smallest list (default 3)")
    parser.add_argument("--max-list", type=int, default=5, help="largest list (default 5)")
    parser.add_argument("--image-size", type=int, default=336, help="square image side in px (default 336)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed repeats first (default 1)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats, median reported (default 5)")
    parser.add_argument("--forward-only", action="store_true", help="time inference instead of a training step")
    parser.add_argument("--no-flops", action="store_true", help="skip the FLOP count (and MFU)")
    parser.add_argument("--peak-tflops", type=float, help="GPU dense bf16 peak for MFU (default: known GPUs)")
    parser.add_argument("--threads", type=int,
                        help="torch CPU threads; 0 = torch's choice (default: 1 on --device cpu, where intra-op "
                             "threads on a shared machine make timings swing several-fold, else 0)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the numbers to this JSON file")
    parser.set_defaults(func=run_bench)
