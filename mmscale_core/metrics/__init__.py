"""Metrics of the paper's tables: exact definitions, chance levels, bootstrap CIs.

Modules (one concept each): ``ranking`` (NDCG@k, reciprocal rank, Kendall
tau-b per list, single and padded/vectorized), ``safety`` (Unsafe Rate,
AUC-Safety), ``calibration`` (reliability curve, ECE, isotonic rescaling to
1-5), ``agreement`` (Krippendorff's alpha, modality accuracy / macro-F1),
``pairwise`` (the upstream release's within-image pairwise accuracy, also
stratified by modality pair), ``scalar`` (its MAE, RMSE, AUC-acceptability, ECE),
``evaluate`` (all Table 3/4 metrics with CIs, chance, oracle; paired
comparisons), ``upstream`` (every metric of ``mmscale evaluate``, ours and the
release's, under one bootstrap), ``as_released`` (the release's definitions
where they are ill-posed, for the audit), ``padding`` (long frame -> padded arrays). ``mmscale bench metrics``
lives in ``mmscale_core.bench.metrics``, outside this package, so that building the CLI's
parser does not import scikit-learn.
"""

from mmscale_core.metrics.agreement import krippendorff_alpha, modality_scores
from mmscale_core.metrics.calibration import (
    acceptability,
    calibrate_scores,
    expected_calibration_error,
    fit_score_calibrator,
    reliability_curve,
)
from mmscale_core.metrics.evaluate import (
    METRICS,
    compare,
    evaluate_lists,
    per_list_metrics,
    to_metrics_dict,
)
from mmscale_core.metrics.padding import PaddedLists, pad_lists
from mmscale_core.metrics.pairwise import PAIR_TYPES, pairwise_accuracy, wilson_interval
from mmscale_core.metrics.ranking import (
    kendall_tau,
    kendall_tau_padded,
    ndcg_at_k,
    ndcg_padded,
    reciprocal_rank,
    reciprocal_rank_padded,
)
from mmscale_core.metrics.safety import UNSAFE_THRESHOLD, auc_safety, unsafe_rate
from mmscale_core.metrics.scalar import auc_acceptability, ece_acceptability, mae, rmse
from mmscale_core.metrics.subset_compare import compare_subset

__all__ = [
    "METRICS", "PAIR_TYPES", "UNSAFE_THRESHOLD", "PaddedLists",
    "acceptability", "auc_acceptability", "auc_safety", "ece_acceptability", "mae", "pairwise_accuracy", "rmse",
    "wilson_interval", "calibrate_scores", "compare", "compare_subset", "evaluate_lists",
    "expected_calibration_error", "fit_score_calibrator", "kendall_tau", "kendall_tau_padded",
    "krippendorff_alpha", "modality_scores", "ndcg_at_k", "ndcg_padded", "pad_lists",
    "per_list_metrics", "reciprocal_rank", "reciprocal_rank_padded", "reliability_curve",
    "to_metrics_dict", "unsafe_rate",
]
