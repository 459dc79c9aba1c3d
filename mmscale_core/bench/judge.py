"""``mmscale bench judge``: a prompted judge's two scorings side by side, scenarios/s.

``generate`` (the upstream's): greedy decoding of up to ``--max-new-tokens``
tokens, one (image, scenario) pair at a time, the image encoded for every
scenario. ``expected`` (shared prefix): one packed forward per image, the
expected rating read from the next-token distribution, no decoding. Both get
the same lists, the same prompt (zero_shot) and the same processor work per
list; the order alternates between repeats and the median is reported
(:mod:`mmscale_core.bench.timing`). Without ``--backbone-path`` the model is
the tiny random-init config of :mod:`mmscale_core.models.tiny`: it never
emits an end token, so ``generate`` always decodes the full
``--max-new-tokens``, as a real model asked for a long answer would.
"""

from __future__ import annotations

import argparse

from mmscale_core.bench.timing import alternate, medians, ratio_line


def run_bench(args: argparse.Namespace) -> int:
    import torch

    from mmscale_core.bench.prefix import synthetic_lists
    from mmscale_core.judges.local import LocalJudge
    from mmscale_core.judges.prompts import load_template
    from mmscale_core.models import load_backbone
    from mmscale_core.models.tiny import tiny_backbone

    torch.set_num_threads(args.threads if args.threads else (1 if args.device == "cpu" else torch.get_num_threads()))
    template = load_template("zero_shot")
    instruction = template.around_scenario()[0]
    if args.backbone_path:
        backbone = load_backbone(args.backbone, path=args.backbone_path, prompt=instruction)
    else:
        backbone = tiny_backbone(args.backbone, prompt=instruction)
    backbone.model.to(args.device)
    judge = LocalJudge(backbone, template, max_new_tokens=args.max_new_tokens)
    lists = synthetic_lists(args.lists, args.min_list, args.max_list, args.image_size, args.seed)
    items = [(batch.images[0], batch.texts[0]) for batch in lists]
    n_scenarios = sum(len(texts) for _, texts in items)
    sync = (lambda name, kept=None: torch.cuda.synchronize()) if args.device.startswith("cuda") else None
    timings = alternate({
        "generate per pair": [lambda im=im, t=t: judge.generate(im, t) for im, t in items],
        "expected, shared prefix": [lambda im=im, t=t: judge.expected(im, t) for im, t in items],
    }, warmup=args.warmup, repeats=args.repeats, before=sync, after=sync)
    seconds = medians(timings)
    print(f"{args.backbone} ({'checkpoint ' + args.backbone_path if args.backbone_path else 'tiny random init'}), "
          f"{args.device}, {len(items)} images, {n_scenarios} scenarios, generate up to {args.max_new_tokens} "
          f"new tokens; median of {args.repeats} repeats after {args.warmup} warm-up")
    for name, value in seconds.items():
        print(f"  {name:<24} {value:8.3f} s  {n_scenarios / value:8.1f} scenarios/s")
    slow, fast = "generate per pair", "expected, shared prefix"
    print(ratio_line("expected vs generate, scenarios/s", (slow, seconds[slow]), (fast, seconds[fast])))
    return 0


def register_bench(subparsers) -> None:
    parser = subparsers.add_parser(
        "judge", help="prompted judge: generate per pair vs expected rating with a shared prefix, side by side",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="qwen2-vl", help="a VLM registry name (default qwen2-vl)")
    parser.add_argument("--backbone-path", help="a local checkpoint (default: the tiny random-init model)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--lists", type=int, default=6, help="images (lists) per repeat (default 6)")
    parser.add_argument("--min-list", type=int, default=4, help="smallest list (default 4)")
    parser.add_argument("--max-list", type=int, default=8, help="largest list (default 8)")
    parser.add_argument("--image-size", type=int, default=336, help="square image side in px (default 336)")
    parser.add_argument("--max-new-tokens", type=int, default=16,
                        help="generate's answer limit (default 16, mmscale judge's for zero_shot)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed repeats first (default 1)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats, median reported (default 3)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default 1 on cpu)")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(func=run_bench)
