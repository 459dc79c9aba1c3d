"""The authors' public release (``dbsltm/mmscale-submission``, ``dataset_card.md``) beside the paper.

The released data is a cleaned version of what the paper describes, so its
counts differ: these are the card's numbers, transcribed exactly, with the
paper's for the same quantity (``mmscale_core.paper``) and the arithmetic
that relates them. Provenance of every value: "dataset card" or "paper".
"""

from __future__ import annotations

import pandas as pd

from mmscale_core import paper

CARD = "dataset card"
PAPER = "paper"
CARD_REF = "dbsltm/mmscale-submission, dataset_card.md"

RELEASE = {
    "images": 8444,
    "scenarios": 21977,
    "split_images": {"train": 5910, "val": 844, "test": 1690},
    "modality_percent": {"text": 18.3, "image": 46.9, "both": 34.8},
}
#: (step, what it removed or merged), in the card's order
CLEANING_STEPS = (
    ("drop scenarios with conflicting ratings (spread > 1.0)", 2065, "scenarios removed"),
    ("drop scenarios with missing text", 14057, "scenarios removed"),
    ("drop images with fewer than 2 surviving scenarios", 802, "images removed"),
    ("collapse near-duplicates at cosine similarity >= 0.88", 6937, "groups merged"),
)


def _paper_modality_percent() -> dict[str, float]:
    """The paper's only modality distribution: the row totals of Table 2 (28,586 scenarios)."""
    total = paper.table2_total()
    return {m: round(100.0 * row[3] / total, 1) for m, row in paper.TABLE2.items()}


def release_vs_paper() -> pd.DataFrame:
    """One row per quantity: the paper's value, the release's (card), where each comes from, and a note
    (``source`` names both, since the two value columns have different provenances)."""
    split = RELEASE["split_images"]
    n_split = sum(split.values())
    paper_mod = _paper_modality_percent()
    rows = [
        ("images", f"{paper.DATASET['images']:,}", f"{RELEASE['images']:,}", "sec 3.3", ""),
        ("scenarios", f"{paper.DATASET['scenarios']:,}", f"{RELEASE['scenarios']:,}", "sec 1, 3.3, Table 1", ""),
        ("mean scenarios per image", f"{paper.DATASET['mean_list_size']:.2f}",
         f"{RELEASE['scenarios'] / RELEASE['images']:.2f}", "sec 3.3",
         "release: 21,977 / 8,444 (arithmetic on the card's counts)"),
        ("split", "train / test 9:1 (sec 4.3)",
         " / ".join(f"{k} {v:,}" for k, v in split.items()) + " images", "sec 4.3",
         "image-disjoint; " + " / ".join(f"{100 * v / n_split:.0f}%" for v in split.values())),
        *[(f"modality label {m}", f"{paper_mod[m]:.1f}%", f"{RELEASE['modality_percent'][m]:.1f}%",
           "Table 2 row totals", "paper: share of Table 2's 28,586 scenarios") for m in ("text", "image", "both")],
    ]
    columns = ["quantity", "paper", "release (dataset card)", "paper reference", "note"]
    return pd.DataFrame(rows, columns=columns).assign(source="paper and dataset card, transcribed")


def cleaning_steps() -> pd.DataFrame:
    """The card's cleaning pipeline, and what its counts imply about the data before cleaning."""
    rows = [{"step": step, "count": f"{count:,}", "unit": unit, "source": CARD} for step, count, unit in CLEANING_STEPS]
    dropped = CLEANING_STEPS[0][1] + CLEANING_STEPS[1][1]
    before = RELEASE["scenarios"] + dropped
    rows.append({"step": "scenarios before cleaning, at least (21,977 kept + 2,065 + 14,057 dropped; "
                         "merged duplicates come on top)", "count": f"{before:,}", "unit": "scenarios",
                 "source": f"arithmetic on the card (paper: {paper.DATASET['scenarios']:,})"})
    images_before = RELEASE["images"] + CLEANING_STEPS[2][1]
    rows.append({"step": "images before cleaning (8,444 kept + 802 dropped)", "count": f"{images_before:,}",
                 "unit": "images", "source": f"arithmetic on the card (paper: {paper.DATASET['images']:,})"})
    return pd.DataFrame(rows)
