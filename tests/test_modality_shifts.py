"""The shift definitions notebook 02, dataset_stats and the simulator's calibration share."""

from __future__ import annotations

import pandas as pd

from mmscale_core import modality_shifts


def test_direction_rule_follows_the_label_anchor():
    frame = pd.DataFrame({"normbank_label": [-1, -1, 0, 0, 1, 1, None],
                          "score": [2.4, 1.4, 3.5, 2.34, 4.0, 3.4, 3.0]})
    got = modality_shifts.shift_direction(frame).tolist()
    assert got[:6] == ["neutral", "down", "up", "down", "neutral", "down"]
    assert pd.isna(got[6])


def test_modality_agreement_is_unanimity_by_majority_label():
    frame = pd.DataFrame({"ratings": [[3, 3, 3]] * 4,
                          "modalities": [["text"] * 3, ["text", "text", "image"], ["image"] * 3,
                                         ["text", "image", "both"]]})
    agree = modality_shifts.modality_agreement(frame)
    assert agree["text"] == 0.5 and agree["image"] == 1.0 and agree["both"] == 0.0


def test_table2_and_extreme_shifts_count_by_majority_modality():
    # anchors: label -1 -> 2, 0 -> 3, +1 -> 4; rounded means 5, 1, 3, 4, 2 and one unlabelled item
    frame = pd.DataFrame({"normbank_label": [-1, 1, 0, 0, 1, None],
                          "ratings": [[5, 5, 5], [1, 1, 2], [3, 3, 3], [4, 4, 4], [2, 2, 2], [5, 5, 5]],
                          "modalities": [["image"] * 3, ["image", "image", "both"], ["text"] * 3,
                                         ["both"] * 3, ["both", "both", "text"], ["text"] * 3]})
    t2 = modality_shifts.table2(frame)
    assert t2.loc["image", "up"] == 1 and t2.loc["image", "down"] == 1 and t2.loc["image", "neutral"] == 0
    assert t2.loc["text", "neutral"] == 1 and t2.loc["text", "total"] == 1     # the unlabelled item is left out
    assert t2.loc["both", "up"] == 1 and t2.loc["both", "down"] == 1
    assert t2["total"].sum() == 5
    extreme = modality_shifts.extreme_shift_rates(frame, points=3)
    # gaps: +3 (image), -3 (image), 0 (text), +1 (both), -2 (both)
    assert extreme.loc["image", "count"] == 2 and extreme.loc["image", "rate"] == 1.0
    assert extreme.loc["both", "count"] == 0 and extreme.loc["text", "count"] == 0
