"""MORALE's discrepancy-guided expansion, simulated (sec 3.2, Fig. 4).

In the paper, an annotator who rates an image-scenario pair within one point of the
model's score (|s_user - s_model| <= 1) is asked to add a new scenario grounded in the
same image. Here: a simulated model scores every released scenario (true acceptability
plus noise); an image one of whose scenarios its first annotator agreed on, with room in
its list, gets one or two added scenarios with probability ``image_share``. The added
scenarios are written the way the scenario writers write (same pool, same calibrated
mix, no action the image already has), then rated and labelled by three unscreened
annotators of the same crowd and put through the same SD rule.

Every draw comes from two streams of their own, so the source release (and everything
trained on it) is the same with or without expansion.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mmscale_core.simulator import annotators as crowd
from mmscale_core.simulator.lexicon import CUES, KINDS, pool_for
from mmscale_core.simulator.params import SimulationParams
from mmscale_core.simulator.release import release_frames
from mmscale_core.simulator.scenarios import ScenarioWriter, describe_scenarios

RATERS = 3


def agreeing_images(release: pd.DataFrame, latent: pd.DataFrame, rng: np.random.Generator,
                    agree_within: float, model_noise: float) -> set[str]:
    """Images where the first annotator's rating of some scenario is within ``agree_within``
    of the simulated model's score (Fig. 4's 'agree' branch)."""
    truth = latent.set_index("scenario_id").loc[release["scenario_id"], "true_acceptability"].to_numpy()
    s_model = np.clip(truth + rng.normal(0.0, model_noise, len(truth)), 1.0, 5.0)
    s_user = release["ratings"].map(lambda r: r[0]).to_numpy(dtype=float)
    agree = np.abs(s_user - s_model) <= agree_within
    return set(release["image_id"].to_numpy()[agree])


def expand(release: pd.DataFrame, latent: pd.DataFrame, scenes: pd.DataFrame, pool: pd.DataFrame,
           screened: np.ndarray, draw: np.random.Generator, rate: np.random.Generator,
           params: SimulationParams) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The added scenarios as release records (``origin: expansion``) and their latent rows.

    ``scenes``: every candidate scene (row i is image ``sim{i}``); ``screened``: the pool's
    annotators removed by screening (they rate nothing more); ``draw`` / ``rate``: the
    expansion's own random streams (which scenarios, then their judgments).
    """
    ep = params.expansion
    agreed = agreeing_images(release, latent, draw, ep.agree_within, ep.model_noise)
    sizes = release.groupby("image_id", sort=False).size()
    split = release.groupby("image_id", sort=False)["split"].first()
    candidates = [i for i in sizes.index if split[i] in ep.splits and i in agreed and sizes[i] < ep.max_list_size]
    chosen = [i for i, u in zip(candidates, draw.random(len(candidates))) if u < ep.image_share]
    n_add = {i: min(1 + int(u < ep.two_share), ep.max_list_size - int(sizes[i]))
             for i, u in zip(chosen, draw.random(len(chosen)))}

    writer = ScenarioWriter(params.scenario)
    cue_matrix = scenes[[f"cue_{c}" for c in CUES]].to_numpy()
    index_of = {image_id: k for k, image_id in enumerate(scenes["image_id"])}
    texts = latent.groupby("image_id")["scenario"].agg(list)
    img, pos, idx = [], [], []
    for image_id, k in n_add.items():
        row = index_of[image_id]
        place = scenes["place"].iat[row]
        pool_text = pool_for(place).text
        have = frozenset(int(pool_for(place).action[np.flatnonzero(pool_text == t)[0]]) for t in texts[image_id])
        new = writer.choose(place, cue_matrix[row], k, draw, exclude_actions=have)
        img += [row] * len(new)
        pos += list(range(len(new)))
        idx += new
    items = describe_scenarios(scenes, np.array(img, dtype=int), np.array(pos, dtype=int),
                               np.array(idx, dtype=int), draw, params.scenario)
    image_ids = scenes["image_id"].to_numpy()[items["image_index"].to_numpy()]
    items.insert(0, "scenario_id", [f"{i}-x{p}" for i, p in zip(image_ids, items["position"].tolist())])
    items.insert(1, "image_id", image_ids)
    if items.empty:
        return release.iloc[:0].assign(origin=pd.Series(dtype=object)), latent.iloc[:0]

    ap = params.annotators
    workload = pool["workload"].to_numpy() * ~screened
    who = crowd.assign(len(items), RATERS, workload, rate)
    grounding = pd.Index(KINDS).get_indexer(items["grounding"])
    clear = crowd.modality_clarity(grounding, rate, ap)
    items["modality_clear"] = clear
    ratings = crowd.rate(items["true_acceptability"].to_numpy(), who, pool, rate, ap)
    modalities = crowd.label_modality(grounding, clear, who, pool, rate, ap)
    keep = ratings.std(axis=1, ddof=1) <= params.quality.max_rating_sd   # the same SD rule as the source
    items = items[keep].reset_index(drop=True)
    return release_frames(items, scenes, ratings[keep], modalities[keep], who[keep], pool["annotator"].to_numpy(),
                          split, origin="expansion")


def expanded_release(release: pd.DataFrame, added: pd.DataFrame) -> pd.DataFrame:
    """Source records (``origin: source``) and the added ones, each image's scenarios together."""
    both = pd.concat([release.assign(origin="source"), added], ignore_index=True)
    order = pd.Index(release["image_id"].unique())
    key = order.get_indexer(both["image_id"])
    return both.iloc[np.lexsort((both["origin"] == "expansion", key))].reset_index(drop=True)
