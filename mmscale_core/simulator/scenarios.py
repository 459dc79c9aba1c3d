"""Scenes and the scenarios written about them: the latent truth of the simulator.

For each image: a target setting, the cues it shows, an image-QC flag and a list
size. For each scenario: a sentence from the place's composition pool, chosen
the way the simulated scenario writers choose (a calibrated mix of grounding
kind x NormBank label x direction of the scene's effect, with a preferred band
of base acceptability), then

    shift = sign * scale[kind, sign] * |sum of present cue effects| ** power[kind] * exp(N(0, jitter^2))
    true  = clip(base + shift, 1, 5)

Text-grounded scenarios, and every scenario of a severely broken image (whose
cues annotators cannot see, so they fall back on the text), get no shift.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mmscale_core.data import QC_FLAGS
from mmscale_core.simulator.lexicon import (
    ACTIONS, CUES, KINDS, OPTIONAL_CUE_PROBS, SETTINGS, normbank_label, pool_for,
)
from mmscale_core.simulator.params import ScenarioParams

RELATIONS = {1: "reinforce", -1: "contradict", 0: "neutral"}
LABELS = (-1, 0, 1)


def draw_scenes(n: int, rng: np.random.Generator, params: ScenarioParams) -> pd.DataFrame:
    """Settings, cues, QC flags and list sizes of ``n`` candidate images."""
    setting_idx = rng.integers(0, len(SETTINGS), n)
    cue_draws = rng.random((n, len(CUES)))
    cues = np.zeros((n, len(CUES)), dtype=bool)
    places = np.array([SETTINGS[i].place for i in setting_idx], dtype=object)
    for j, cue in enumerate(CUES):
        fixed = np.array([cue in SETTINGS[i].cues for i in setting_idx])
        prob = np.array([OPTIONAL_CUE_PROBS[cue].get(p, 0.0) for p in places])
        cues[:, j] = fixed | (cue_draws[:, j] < prob)
    frame = pd.DataFrame({
        "setting": [SETTINGS[i].text for i in setting_idx],
        "place": places,
        "qc": np.array(QC_FLAGS, dtype=object)[rng.choice(len(QC_FLAGS), n, p=params.qc_probs)],
        "list_size": rng.choice(np.arange(1, len(params.list_size_probs) + 1), n, p=params.list_size_probs),
    })
    for j, cue in enumerate(CUES):
        frame[f"cue_{cue}"] = cues[:, j]
    return frame


def _bucket_mass(params: ScenarioParams) -> dict[tuple[int, int, int], float]:
    """Target probability of each (kind, label, direction) bucket."""
    mass = {}
    for k, kind in enumerate(KINDS):
        for li, label in enumerate(LABELS):
            p = params.kind_share[k] * params.label_share[kind][li]
            if kind == "text":
                mass[(k, label, 0)] = p
            else:
                up = params.reinforce[(kind, label)]
                mass[(k, label, 1)] = p * up
                mass[(k, label, -1)] = p * (1 - up)
    return mass


class ScenarioWriter:
    """Chooses the scenarios of an image; the weights of a (place, cues) pair are cached."""

    def __init__(self, params: ScenarioParams):
        self.params = params
        self.mass = _bucket_mass(params)
        self._cum: dict[tuple[str, bytes], tuple[np.ndarray, int]] = {}

    def weights(self, place: str, cue_row: np.ndarray) -> np.ndarray:
        """Sampling probability of every sentence of the place's pool for an image with these cues."""
        pool = pool_for(place)
        p = self.params
        raw = pool.effects @ cue_row.astype(float)
        direction = np.where(np.abs(raw) >= p.min_effect, np.sign(raw), 0).astype(int)
        text_kind = pool.kind == KINDS.index("text")
        eligible = text_kind | (direction != 0)
        direction = np.where(text_kind, 0, direction)
        labels = normbank_label(pool.base, p.normbank_thresholds)
        weight = np.zeros(len(pool))
        kind_total = np.zeros(len(KINDS))
        for (k, label, d), mass in self.mass.items():
            in_bucket = eligible & (pool.kind == k) & (labels == label) & (direction == d)
            if not in_bucket.any() or mass == 0:
                continue
            lo, hi = p.bands[(KINDS[k], label)]
            band = np.where((pool.base >= lo) & (pool.base <= hi), 1.0, p.out_of_band_weight)[in_bucket]
            # an action's share of the bucket follows the mean band weight of its sentences (every
            # action gets a say, but not regardless of its acceptability); within the action each
            # sentence follows its own band weight
            _, inv = np.unique(pool.action[in_bucket], return_inverse=True)
            sum_band = np.bincount(inv, weights=band)
            mean_band = sum_band / np.bincount(inv)
            weight[in_bucket] = mass * (mean_band / mean_band.sum())[inv] * band / sum_band[inv]
            kind_total[k] += mass
        # a bucket this scene cannot fill hands its mass to the other buckets of its kind,
        # so the share of each grounding kind stays on target
        for k in range(len(KINDS)):
            if kind_total[k] > 0:
                weight[pool.kind == k] *= p.kind_share[k] / kind_total[k]
        return weight / weight.sum()

    def _cumulative(self, place: str, cue_row: np.ndarray) -> tuple[np.ndarray, int]:
        key = (place, cue_row.tobytes())
        if key not in self._cum:
            prob = self.weights(place, cue_row)
            self._cum[key] = (np.cumsum(prob), len(np.unique(pool_for(place).action[prob > 0])))
        return self._cum[key]

    def choose(self, place: str, cue_row: np.ndarray, k: int, rng: np.random.Generator,
               exclude_actions: frozenset[int] = frozenset()) -> list[int]:
        """Indices of ``k`` sentences for one image, no action used twice (nor one of
        ``exclude_actions``: those of scenarios the image already has).

        Rejection sampling from the cached cumulative weights (fast); after 64 misses in a
        row, an explicit draw over the unused actions (exact, and bounded in time).
        """
        cum, n_actions = self._cumulative(place, cue_row)
        action = pool_for(place).action
        used: set[int] = set(exclude_actions)
        if used:
            n_actions = len(set(action[np.diff(cum, prepend=0.0) > 0].tolist()) - used)
        chosen: list[int] = []
        misses = 0
        while len(chosen) < min(k, n_actions):
            if misses < 64:
                i = min(int(np.searchsorted(cum, rng.random() * cum[-1], side="right")), len(cum) - 1)
            else:
                prob = np.diff(cum, prepend=0.0) * ~np.isin(action, list(used))
                i = int(rng.choice(len(prob), p=prob / prob.sum()))
            if int(action[i]) in used:
                misses += 1
                continue
            used.add(int(action[i]))
            chosen.append(i)
            misses = 0
        return chosen


def write_scenarios(scenes: pd.DataFrame, rng: np.random.Generator, params: ScenarioParams) -> pd.DataFrame:
    """One row per (image, scenario) with the latent truth of each."""
    writer = ScenarioWriter(params)
    cue_cols = [f"cue_{c}" for c in CUES]
    cue_matrix = scenes[cue_cols].to_numpy()
    rows_img, rows_pos, rows_idx = [], [], []
    places = scenes["place"].to_numpy()
    sizes = scenes["list_size"].to_numpy()
    for i in range(len(scenes)):
        chosen = writer.choose(places[i], cue_matrix[i], int(sizes[i]), rng)
        rows_img += [i] * len(chosen)
        rows_pos += list(range(len(chosen)))
        rows_idx += chosen
    return describe_scenarios(scenes, np.array(rows_img, dtype=int), np.array(rows_pos, dtype=int),
                              np.array(rows_idx, dtype=int), rng, params)


def describe_scenarios(scenes: pd.DataFrame, img: np.ndarray, positions: np.ndarray, idx: np.ndarray,
                       rng: np.random.Generator, params: ScenarioParams) -> pd.DataFrame:
    """The latent truth of chosen sentences ``idx`` (of their place's pool) about scene rows
    ``img``: one row per scenario (also used for the annotator-added scenarios)."""
    cue_cols = [f"cue_{c}" for c in CUES]
    cue_matrix = scenes[cue_cols].to_numpy()
    places = scenes["place"].to_numpy()
    n = len(idx)
    text = np.empty(n, dtype=object)
    action = np.empty(n, dtype=int)
    kind = np.empty(n, dtype=int)
    base = np.empty(n)
    raw = np.empty(n)
    negated = np.empty(n, dtype=bool)
    for place in np.unique(places[img]) if n else []:
        m = places[img] == place
        pool = pool_for(place)
        j = idx[m]
        text[m], action[m], kind[m], base[m], negated[m] = (
            pool.text[j], pool.action[j], pool.kind[j], pool.base[j], pool.negated[j])
        raw[m] = (pool.effects[j] * cue_matrix[img[m]]).sum(axis=1)

    text_kind = kind == KINDS.index("text")
    direction = np.where(text_kind, 0, np.sign(raw)).astype(int)
    scale = np.ones(n)
    power = np.ones(n)
    for (kname, sign), s in params.effect_scale.items():
        scale[(kind == KINDS.index(kname)) & (direction == sign)] = s
    for kname, pw in params.effect_power.items():
        power[kind == KINDS.index(kname)] = pw
    magnitude = scale * np.abs(raw) ** power * np.exp(rng.normal(0.0, params.shift_jitter, n))
    shift = np.where(direction == 0, 0.0, direction * magnitude)

    severe = scenes["qc"].to_numpy()[img] == "severe"
    grounding = np.where(severe, KINDS.index("text"), kind)
    relation = np.where(severe, 0, direction)
    shift = np.where(severe, 0.0, shift)

    out = pd.DataFrame({
        "image_index": img,
        "position": positions,
        "scenario": text,
        "action": [ACTIONS[a].phrase for a in action],
        "lexicon_kind": np.array(KINDS, dtype=object)[kind] if n else [],
        "grounding": np.array(KINDS, dtype=object)[grounding] if n else [],
        "relation": [RELATIONS[r] for r in relation],
        "scene_relation": [RELATIONS[r] for r in direction],
        "negated": negated,
        "normbank_label": normbank_label(base, params.normbank_thresholds),
        "base_acceptability": base,
        "cue_effect": raw,
        "image_shift": shift,
        "true_acceptability": np.clip(base + shift, 1.0, 5.0),
    })
    return out
