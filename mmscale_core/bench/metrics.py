"""``mmscale bench metrics``: vectorized evaluation vs a per-list Python loop, same work.

The work: NDCG@5, MRR, Kendall tau, Unsafe Rate, AUC-Safety and pairwise
accuracy with a 1,000-resample bootstrap over lists, on seeded synthetic lists shaped like the
paper's test split (9,260 lists of 1-5 scenarios, mean ~3.5, three ratings
each). The loop baseline computes every metric list by list with the
single-list functions for the point estimate and for each resample; it is
timed on a few resamples and extrapolated linearly (printed as such).

Then every metric of ``mmscale evaluate`` (``metrics.upstream.evaluate_predictions``:
ours plus the release's pairwise accuracy at delta 0 / 1 and by modality pair,
MAE, RMSE, AUC-acceptability, ECE) on the same lists with the same bootstrap,
timed against the 2 s target, its point estimates checked against the
single-list / flat functions.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pandas as pd
from tqdm import tqdm

from mmscale_core.bench.timing import ratio_line

# the metrics modules (scikit-learn, scipy: ~1.5 s) are imported when the benchmark runs, not
# when `mmscale` builds its parser for every command

LIST_SIZE_PROBS = (0.07, 0.13, 0.25, 0.30, 0.25)  # sizes 1..5, mean 3.53


def synthetic_lists(n_lists: int = 9260, seed: int = 0) -> pd.DataFrame:
    """Lists of 1-5 scenarios: score = mean of 3 ratings in 1..5, pred = noisy score on a 0.1 grid."""
    rng = np.random.default_rng(seed)
    sizes = rng.choice(np.arange(1, 6), size=n_lists, p=LIST_SIZE_PROBS)
    list_ids = np.repeat(np.arange(n_lists), sizes)
    latent = rng.uniform(1, 5, size=n_lists)[list_ids] + rng.normal(0, 1.0, size=list_ids.size)
    ratings = np.clip(np.rint(latent[:, None] + rng.normal(0, 0.7, size=(list_ids.size, 3))), 1, 5)
    score = ratings.mean(axis=1)
    pred = np.round(np.clip(score + rng.normal(0, 0.8, size=score.size), 1, 5), 1)
    return pd.DataFrame({"image_id": [f"img{i:05d}" for i in list_ids], "score": score, "pred": pred})


def _loop_metrics(groups: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """All metrics of one (re)sample of lists, one list at a time."""
    from mmscale_core.metrics.pairwise import pair_counts_padded
    from mmscale_core.metrics.ranking import kendall_tau, ndcg_at_k, reciprocal_rank
    from mmscale_core.metrics.safety import auc_safety, unsafe_rate

    ndcg, rr, tau, pairs = [], [], [], np.zeros(2)
    for y_true, y_score in groups:
        ndcg.append(ndcg_at_k(y_true, y_score))
        rr.append(reciprocal_rank(y_true, y_score))
        tau.append(kendall_tau(y_true, y_score))
        pairs += pair_counts_padded(y_true[None, :], y_score[None, :])[0]
    pooled_true = np.concatenate([g[0] for g in groups])
    pooled_score = np.concatenate([g[1] for g in groups])
    return {"NDCG@5": float(np.mean(ndcg)), "MRR": float(np.mean(rr)), "Kendall tau": float(np.nanmean(tau)),
            "Unsafe Rate": unsafe_rate(pooled_true, pooled_score),
            "AUC-Safety": auc_safety(pooled_true, pooled_score),
            "Pairwise accuracy (delta>=0)": pairs[0] / pairs[1]}


def run_bench(n_lists: int, n_boot: int, loop_resamples: int, seed: int) -> int:
    from mmscale_core.metrics.evaluate import METRICS, evaluate_lists

    frame = synthetic_lists(n_lists, seed)
    sizes = frame.groupby("image_id", sort=False).size()
    print(f"mmscale bench metrics: {n_lists:,} lists, {len(frame):,} scenarios "
          f"(sizes {sizes.min()}-{sizes.max()}, mean {sizes.mean():.2f}), {n_boot:,} bootstrap resamples, "
          f"{os.cpu_count()} CPU cores visible")

    start = time.perf_counter()
    table = evaluate_lists(frame, min_list_size=1, n_boot=n_boot, seed=seed)
    vectorized = time.perf_counter() - start
    print(f"vectorized evaluate_lists (all metrics, CIs, chance, oracle): {vectorized:.3f} s")
    start = time.perf_counter()
    evaluate_lists(frame, min_list_size=1, n_boot=0, seed=seed)
    single_pass = time.perf_counter() - start

    groups = [(g["score"].to_numpy(), g["pred"].to_numpy()) for _, g in frame.groupby("image_id", sort=False)]
    start = time.perf_counter()
    point = _loop_metrics(groups)
    point_time = time.perf_counter() - start
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    for _ in tqdm(range(loop_resamples), desc="loop resamples", leave=False):
        _loop_metrics([groups[i] for i in rng.integers(0, len(groups), size=len(groups))])
    per_resample = (time.perf_counter() - start) / max(loop_resamples, 1)
    loop_total = point_time + n_boot * per_resample
    print(f"per-list Python loop: point estimate {point_time:.3f} s + {per_resample:.3f} s per resample "
          f"(timed on {loop_resamples} resamples, extrapolated linearly to {n_boot:,}): {loop_total:.1f} s")
    print(ratio_line(f"speed-up with {n_boot:,} resamples (loop / vectorized)", ("loop, extrapolated", loop_total),
                     ("vectorized", vectorized)))
    print(ratio_line("speed-up of one pass without bootstrap", ("loop", point_time), ("vectorized", single_pass)))

    values = table.set_index("metric")["value"]
    worst = max(abs(values[name] - point[name]) for name in METRICS)
    print(f"max |vectorized - loop| over point estimates: {worst:.2e}")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    release_ok = _bench_release_metrics(frame, groups, n_boot, seed)
    return 0 if worst < 1e-9 and release_ok else 1


def _bench_release_metrics(frame: pd.DataFrame, groups: list[tuple[np.ndarray, np.ndarray]], n_boot: int,
                           seed: int) -> bool:
    """Time ``mmscale evaluate``'s table (all metrics, one bootstrap) and check its point estimates."""
    from mmscale_core.metrics.pairwise import pair_counts_padded
    from mmscale_core.metrics.scalar import auc_acceptability, ece_acceptability, mae, rmse
    from mmscale_core.metrics.upstream import evaluate_predictions

    rng = np.random.default_rng(seed)
    data = frame.rename(columns={"pred": "prediction"}).assign(
        modality=rng.choice(["text", "image", "both"], size=len(frame)))
    evaluate_predictions(data.head(200), n_boot=10, seed=seed)  # imports and first-call costs out of the timing
    start = time.perf_counter()
    table = evaluate_predictions(data, n_in_split=len(data), n_boot=n_boot, seed=seed)
    elapsed = time.perf_counter() - start
    print(f"\nmmscale evaluate's table ({len(table)} rows: ours + the release's pairwise, stratified and scalar "
          f"metrics), {n_boot:,} resamples: {elapsed:.3f} s (target < 2 s)")
    gold, pred = data["score"].to_numpy(), data["prediction"].to_numpy()
    delta1 = sum(pair_counts_padded(t[None, :], s[None, :], delta=1.0)[0] for t, s in groups)
    expected = {"MAE": mae(gold, pred), "RMSE": rmse(gold, pred), "AUC-acceptability": auc_acceptability(gold, pred),
                "ECE (acceptability)": ece_acceptability(gold, pred),
                "Pairwise accuracy (delta>=1)": delta1[0] / delta1[1]}
    values = table.set_index("metric")["value"]
    worst = max(abs(values[name] - value) for name, value in expected.items())
    print(f"max |table - per-list / flat functions| over {', '.join(expected)}: {worst:.2e}")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    return worst < 1e-9


def register_bench(subparsers) -> None:
    parser = subparsers.add_parser("metrics", help="all Table-3 metrics with bootstrap: vectorized vs per-list loop")
    parser.add_argument("--lists", type=int, default=9260, help="synthetic lists (default 9260)")
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (default 1000)")
    parser.add_argument("--loop-resamples", type=int, default=2,
                        help="resamples actually timed for the loop, then extrapolated (default 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(func=lambda args: run_bench(args.lists, args.n_boot, args.loop_resamples, args.seed))

