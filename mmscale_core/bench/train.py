"""``mmscale bench train``: one full training step of the embedded default vs its bare arithmetic, side by side.

The default profile trains with both towers frozen: a step is collation, the
fusion and the two heads forward, the objective, backward, gradient clipping
and the AdamW step. The bare side is the forward/backward of the same batch
already collated (the arithmetic the step cannot avoid); their ratio is the
step's overhead (target: within 2x). Both sides run on the real
``minilm-effnet`` backbone and heads with the default profile's settings
(``lists_per_batch``, ``max_list_size``, objective, modality weight), on lookup
tables of the default data's shape filled with random unit vectors: the
features' values do not change the time. One torch thread by default, as
the pipeline's runs on a shared 2-core machine.
"""

from __future__ import annotations

from mmscale_core.bench.timing import alternate, medians, ratio_line

DEFAULT_SCENARIOS = 32500  # the default profile's dataset (``mmscale simulate --images 9260``)
DEFAULT_IMAGES = 9260


def run_bench(steps: int, repeats: int, threads: int, profile: str = "default",
              params: str = "params.yaml") -> int:
    import numpy as np
    import torch

    from mmscale_core.losses import make_objective
    from mmscale_core.params import load_profile
    from mmscale_core.training import ScenarioList, TrainConfig, build_model, make_optimizer
    from mmscale_core.training.lists import FrameTensors, collate_indexed, padded_rows

    if threads > 0:
        torch.set_num_threads(threads)
    training = dict(load_profile(params, profile)["training"])
    training.pop("feature_store", None)
    config = TrainConfig(data="", out="", **{k: v for k, v in training.items() if k in TrainConfig.__dataclass_fields__})
    model = build_model(config)
    model.train()
    rng = np.random.default_rng(0)
    text = torch.nn.functional.normalize(torch.from_numpy(rng.standard_normal((DEFAULT_SCENARIOS, 384),
                                                                              dtype=np.float32)), dim=-1)
    tensors = FrameTensors(
        pad=DEFAULT_SCENARIOS,
        score=torch.cat([torch.from_numpy(rng.integers(1, 6, DEFAULT_SCENARIOS).astype(np.float32)), torch.zeros(1)]),
        modality=torch.cat([torch.from_numpy(rng.integers(0, 3, DEFAULT_SCENARIOS)), torch.tensor([-1])]),
        image_of_row=torch.from_numpy(rng.integers(0, DEFAULT_IMAGES, DEFAULT_SCENARIOS + 1)),
        text_table=torch.cat([text, torch.zeros(1, 384)]),
        image_table=torch.from_numpy(np.abs(rng.standard_normal((DEFAULT_IMAGES, 1280), dtype=np.float32))),
    )
    k = config.lists_per_batch
    sizes = rng.integers(1, config.max_list_size + 1, size=steps * k)  # the default's lists: 1..m scenarios
    lists = [ScenarioList("x", tuple(int(r) for r in rng.choice(DEFAULT_SCENARIOS, size=n, replace=False)))
             for n in sizes]
    index = padded_rows(lists, tensors.pad)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(model, config)  # the loop's
    objective = make_objective(config.objective, aux_mse=config.aux_mse, modality_weight=config.modality_weight)
    generator = torch.Generator().manual_seed(0)
    collated = [collate_indexed(index[i * k:(i + 1) * k], tensors) for i in range(steps)]

    def forward_backward(batch, targets, modality):
        scores, logits = model(batch)
        loss, parts = objective(scores, targets, batch.mask, modality_logits=logits,
                                modality_targets=modality if logits is not None else None, generator=generator)
        loss.backward()
        return parts

    def full_step(i):
        batch, targets, modality = collate_indexed(index[i * k:(i + 1) * k], tensors)
        parts = forward_backward(batch, targets, modality)
        if config.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return {key: float(value) for key, value in parts.items()}

    def bare(i):
        forward_backward(*collated[i])
        optimizer.zero_grad(set_to_none=True)

    timings = alternate({"full step": [lambda: [full_step(i) for i in range(steps)]],
                         "forward/backward": [lambda: [bare(i) for i in range(steps)]]},
                        warmup=1, repeats=repeats)
    times = medians(timings)
    full, arithmetic = times["full step"] / steps, times["forward/backward"] / steps
    print(f"training step of the {profile} profile ({config.backbone}, tuning {config.tuning}, "
          f"{k} lists of 1..{config.max_list_size}, objective {config.objective}, "
          f"{torch.get_num_threads()} torch thread(s)); median of {repeats} repeats of {steps} steps")
    print(f"  full step (collation, forward, loss, backward, clip, AdamW): {full * 1e3:.2f} ms")
    print(f"  bare forward/backward of the same batch:                    {arithmetic * 1e3:.2f} ms")
    print("  " + ratio_line("full step / arithmetic (target <= 2x)", ("full", full), ("bare", arithmetic)))
    return 0


def register_bench(subparsers) -> None:
    p = subparsers.add_parser("train", help="one default training step vs its bare forward/backward, side by side")
    p.add_argument("--steps", type=int, default=50, help="steps per repeat (default 50)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1; 0: torch's default)")
    p.add_argument("--profile", default="default", help="params.yaml profile whose training block is timed")
    p.add_argument("--params", default="params.yaml", help="parameters file (default params.yaml)")
    p.set_defaults(func=lambda a: run_bench(a.steps, a.repeats, a.threads, a.profile, a.params))
