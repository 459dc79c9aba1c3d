"""Rated scenarios as release records and their latent truth, row for row.

One builder for both the source release (``generate``) and MORALE's added scenarios
(``expansion``), so the two tables always have the same columns in the same order.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mmscale_core.simulator.lexicon import CUES, KINDS

LATENT_COLUMNS = ("scenario", "action", "lexicon_kind", "grounding", "relation", "scene_relation", "negated",
                  "modality_clear", "normbank_label", "base_acceptability", "cue_effect", "image_shift",
                  "true_acceptability")
SCENE_COLUMNS = ("setting", "place", "qc", *(f"cue_{c}" for c in CUES))


def release_frames(items: pd.DataFrame, scenes: pd.DataFrame, ratings: np.ndarray, modalities: np.ndarray,
                   who: np.ndarray, names: np.ndarray, split, origin: str | None = None
                   ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The release-format records of the kept ``items`` (one row each; ``ratings``, ``modalities`` and
    ``who`` are their n x 3 judgments) and their latent rows. ``scenes`` row i is image index i;
    ``split`` maps image id to split; ``origin``, when given, becomes the records' ``origin`` column."""
    idx = items["image_index"].to_numpy()
    kinds = np.array(KINDS, dtype=object)
    columns = {
        "image_id": items["image_id"],
        "scenario_id": items["scenario_id"],
        "setting": scenes["setting"].to_numpy()[idx],
        "scenario": items["scenario"],
        "normbank_label": items["normbank_label"].astype(int),
        "ratings": [list(map(int, r)) for r in ratings],
        "modalities": [list(kinds[m]) for m in modalities],
        "annotators": [list(names[w]) for w in who],
        "split": items["image_id"].map(split),
        "image_source": "synthetic",
        "qc": scenes["qc"].to_numpy()[idx],
    }
    if origin is not None:
        columns["origin"] = origin
    latent = pd.concat([items[["scenario_id", "image_id"]], scenes[list(SCENE_COLUMNS)].iloc[idx].reset_index(drop=True),
                        items[list(LATENT_COLUMNS)]], axis=1)
    return pd.DataFrame(columns), latent
