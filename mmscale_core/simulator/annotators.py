"""The simulated crowd: who rates what, how they rate, and the canaries that catch the careless.

An attentive annotator ``a`` rating a scenario whose latent acceptability is ``t``::

    rating = clip(round(t + bias_a + noise_a * (1 - ambiguity * |t - 3| / 2) * z) + slip, 1, 5)

with ``z ~ N(0, 1)``: people disagree most on middling cases and least on flagrant
ones. ``slip`` is +-2 or +-3 for a small share of judgments (misreads, misclicks),
the main source of the high-variance items the paper removes.

Modality labels: a clear-cut item gets its latent grounding from nearly everyone;
an ambiguous one (image-grounded judgments are, per the paper, more dispersed)
draws labels from a per-grounding distribution; each annotator also leans on a
favourite label. A careless annotator answers a share of items (ratings and
modality) uniformly at random; canaries (unmistakable items with a known side)
and per-annotator variance screening (``quality.py``) catch them.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from mmscale_core.simulator.lexicon import KINDS
from mmscale_core.simulator.params import AnnotatorParams

MODALITY_ORDER = KINDS  # text, image, both: the label codes used below

# Canaries: flagrant items whose side of the scale nobody attentive gets wrong.
CANARIES: tuple[tuple[str, float], ...] = (
    ("pushing a child into a busy road", 1.0),
    ("setting fire to a neighbor's house", 1.0),
    ("poisoning a friend's drink", 1.0),
    ("stealing an old woman's purse", 1.05),
    ("helping a child who fell off a bike", 4.95),
    ("calling an ambulance for someone who collapsed", 5.0),
    ("returning a lost child to their parents", 5.0),
    ("thanking a nurse for caring for you", 4.9),
)


def make_pool(n_judgments: int, rng: np.random.Generator, params: AnnotatorParams) -> pd.DataFrame:
    """Annotators with their bias, noise, carelessness, workload and favourite modality label."""
    n = max(12, int(round(n_judgments / params.judgments_per_annotator)))
    preferred = rng.integers(0, len(MODALITY_ORDER), n)
    return pd.DataFrame({
        "annotator": [f"ann{i:04d}" for i in range(n)],
        "bias": rng.normal(0.0, params.bias_sd, n),
        "noise": params.noise * rng.lognormal(0.0, params.noise_spread, n),
        "careless": rng.random(n) < params.careless_share,
        "workload": rng.lognormal(0.0, params.workload_sd, n),
        "preferred_modality": np.array(MODALITY_ORDER, dtype=object)[preferred],
        "preference": rng.uniform(0.0, params.preference_max, n),
    })


def assign(n_items: int, per_item: int, workload: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(n_items, per_item) distinct annotator indices, drawn in proportion to workload."""
    p = workload / workload.sum()
    who = rng.choice(len(p), size=(n_items, per_item), p=p)
    while True:
        s = np.sort(who, axis=1)
        dup = (s[:, 1:] == s[:, :-1]).any(axis=1)
        if not dup.any():
            return who
        who[dup] = rng.choice(len(p), size=(int(dup.sum()), per_item), p=p)


def replacement(who_row_sets: np.ndarray, workload: np.ndarray, allowed: np.ndarray,
                rng: np.random.Generator) -> np.ndarray:
    """One new annotator per row, allowed and not already among the row's annotators."""
    w = workload * allowed
    p = w / w.sum()
    new = rng.choice(len(p), size=len(who_row_sets), p=p)
    while True:
        clash = (who_row_sets == new[:, None]).any(axis=1)
        if not clash.any():
            return new
        new[clash] = rng.choice(len(p), size=int(clash.sum()), p=p)


def rate(truth: np.ndarray, who: np.ndarray, pool: pd.DataFrame, rng: np.random.Generator,
         params: AnnotatorParams) -> np.ndarray:
    """Integer ratings 1..5, same shape as ``who`` (``truth`` broadcasts over its columns)."""
    truth = np.asarray(truth, dtype=float).reshape(-1, *([1] * (who.ndim - 1)))
    bias = pool["bias"].to_numpy()[who]
    noise = pool["noise"].to_numpy()[who] * (1.0 - params.ambiguity * np.abs(truth - 3.0) / 2.0)
    slip = (rng.random(who.shape) < params.slip_rate) * rng.choice([-3, -2, 2, 3], who.shape)
    ratings = np.clip(np.rint(truth + bias + noise * rng.standard_normal(who.shape)) + slip, 1, 5)
    random_answer = pool["careless"].to_numpy()[who] & (rng.random(who.shape) < params.careless_rate)
    ratings = np.where(random_answer, rng.integers(1, 6, who.shape), ratings)
    return ratings.astype(np.int8)


def modality_clarity(grounding: np.ndarray, rng: np.random.Generator, params: AnnotatorParams) -> np.ndarray:
    """Per item: is its grounding clear-cut (True) or ambiguous between modalities (False)?"""
    share = np.array([params.modality_clear[k] for k in MODALITY_ORDER])
    return rng.random(len(grounding)) < share[grounding]


def label_modality(grounding: np.ndarray, clear: np.ndarray, who: np.ndarray, pool: pd.DataFrame,
                   rng: np.random.Generator, params: AnnotatorParams) -> np.ndarray:
    """Modality label codes (index into ``MODALITY_ORDER``), same shape as ``who``.

    A clear item is labelled with its latent grounding with probability
    ``modality_accuracy`` (the rest split evenly); an ambiguous one follows the
    ``modality_ambiguous`` row of its grounding. Each annotator mixes in their
    favourite label with weight ``preference``.
    """
    n_labels = len(MODALITY_ORDER)
    shape = (-1, *([1] * (who.ndim - 1)))
    grounding = np.broadcast_to(np.asarray(grounding).reshape(shape), who.shape)
    clear = np.broadcast_to(np.asarray(clear).reshape(shape), who.shape)
    eye = np.eye(n_labels)
    acc = params.modality_accuracy
    clear_rows = eye * acc + (1.0 - eye) * (1.0 - acc) / (n_labels - 1)
    ambiguous_rows = np.array([params.modality_ambiguous[k] for k in MODALITY_ORDER])
    probs = np.where(clear[..., None], clear_rows[grounding], ambiguous_rows[grounding])
    pref_code = pd.Index(MODALITY_ORDER).get_indexer(pool["preferred_modality"])[who]
    pref_w = pool["preference"].to_numpy()[who][..., None]
    probs = (1.0 - pref_w) * probs + pref_w * eye[pref_code]
    labels = (rng.random(who.shape)[..., None] > probs.cumsum(axis=-1)).sum(axis=-1)
    labels = np.minimum(labels, n_labels - 1)
    random_answer = pool["careless"].to_numpy()[who] & (rng.random(who.shape) < params.careless_rate)
    return np.where(random_answer, rng.integers(0, n_labels, who.shape), labels).astype(np.int8)


def answer_canaries(pool: pd.DataFrame, rng: np.random.Generator, params: AnnotatorParams,
                    judgments_per_annotator: np.ndarray) -> pd.DataFrame:
    """Each annotator's canary answers (one per ``canary_every`` judgments, at least ``min_canaries``)."""
    counts = np.maximum(params.min_canaries, judgments_per_annotator // params.canary_every).astype(int)
    who = np.repeat(np.arange(len(pool)), counts)
    item = rng.integers(0, len(CANARIES), len(who))
    truth = np.array([CANARIES[i][1] for i in item])
    # canaries are unmistakable: attentive annotators do not slip on them
    ratings = rate(truth, who[:, None], pool, rng, replace(params, slip_rate=0.0))[:, 0]
    expected = np.where(truth >= 3, "acceptable", "unacceptable")
    passed = np.where(truth >= 3, ratings >= 4, ratings <= 2)
    return pd.DataFrame({
        "annotator": pool["annotator"].to_numpy()[who],
        "canary": [CANARIES[i][0] for i in item],
        "expected": expected,
        "rating": ratings,
        "passed": passed,
    })
