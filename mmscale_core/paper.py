"""The MM-SCALE paper's published numbers, transcribed exactly, and its internal contradictions.

One place for every number the notebooks and tests compare against. Values are
as printed (proportions stay proportions, percentages stay percentages).
Section references are to the paper's text (/work/shared/paper/mm-scale-paper.txt).

Where the paper disagrees with itself, :data:`CONTRADICTIONS` records both
sides with the arithmetic, and which side this project follows (the simulator
matches Table 2).
"""

from __future__ import annotations

from dataclasses import dataclass

TITLE = "MM-SCALE: Grounded Multimodal Moral Reasoning via Scalar Judgment and Listwise Alignment"

# --------------------------------------------------------------------------- Table 1
# Dataset comparison: (dataset, size, judgment type, preference optimization, grounding, annotated by)
TABLE1 = (
    ("VGuard [31]", 3000, "Binary (Safe/Unsafe)", None, False, "GPT-4"),
    ("MM-SafetyBench [17]", 5040, "Binary (Safe/Unsafe)", None, False, "GPT-4"),
    ("M3oralBench [27]", 1160, "Binary (Morally wrong or not)", None, False, "GPT-4o"),
    ("VLBiasBench [26]", 128342, "Binary (Biased/Unbiased)", None, False, "Automated+ Heuristic"),
    ("MSS [29]", 1820, "Binary (Safe/Unsafe)", None, False, "GPT-4V"),
    ("SPA-VL [28]", 100788, "Pairwise preference (A vs. B)", "RLHF (Pairwise)", False, "GPT-4V"),
    ("MM-SCALE (Ours)", 32212, "Scalar (1-5)", "List-wise (ListMLE)", True, "Human"),
)
TABLE1_COLUMNS = ("dataset", "size", "judgment_type", "preference_optimization", "grounding", "annotated_by")

# --------------------------------------------------------------------------- Section 3 statistics
DATASET = {
    "scenarios": 32212,              # sec 1, 3.1, 6, Table 1
    "images": 9260,                  # sec 3.3 "9,260 unique image contexts"
    "mean_list_size": 3.48,          # sec 3.3
    "list_size_range": (1, 5),       # sec 4.3 "sets of n=1-5"
    "raters_per_item": 3,            # sec 3.2
    "rating_scale": (1, 5),
    "max_image_size": 336,           # sec 13 "336x336"
    "normbank_triplets": 266000,     # sec 3.1 "266K action-situation-question triplets"
    "train_test_ratio": (9, 1),      # sec 4.3
}
STATISTICS = {
    "divergent_per_image": 1.36,             # sec 3.3
    "divergent_percent": 68.1,               # sec 3.3 (sec 1 and 6 round it to 68%)
    "divergent_image_or_both_percent": 78,   # sec 3.3 "among these, 78% ..."
    "modality_agreement_text": 0.82,         # sec 3.3 and 11
    "modality_agreement_image": 0.61,        # sec 3.3 and 11
    "alpha_ratings": 0.74,                   # sec 3.3 (scalar scores)
    "alpha_modality": 0.71,                  # sec 3.3 and 11
    "shift_reinforce": 0.90,                 # sec 11 (+0.9 in sec 3.3)
    "shift_contradict": -0.48,               # sec 3.3 and 11
    "high_variance_sd": 1.2,                 # sec 3.3 "standard deviation > 1.2"
    "high_variance_removed_percent": 4.8,    # sec 3.3 "~4.8% of the data"
    "canary_pass_percent_min": 98,           # sec 3.2 "> 98% pass rate"
    "annotator_screening_removed_percent": 2,  # sec 3.2 "> 2% removals"
    "image_qc_minor_percent": 9,             # sec 3.1
    "image_qc_lighting_percent": 4,          # sec 3.1 "lighting or texture issues"
    "image_qc_severe_percent": 2,            # sec 3.1
    "images_audited": 32000,                 # sec 3.1 "We manually audit 32K generated images"
    "images_removed_generation_qc": 1742,    # sec 10
    "reconfirmed_items_percent_max": 7,      # sec 3.4 "Fewer than 7%"
    "reconfirmation_delta_ndcg_max": 0.01,   # sec 3.4
    "real_image_validation_images": 1000,    # sec 3.1 "1K caption-matched images"
    "real_image_delta_max_text": 0.01,       # sec 3.1 text: delta NDCG@5, delta Unsafe <= 0.01
    "real_image_delta_max_caption": 0.02,    # Fig. 3 caption: differences <= 0.02
    "real_image_kendall_tau": 0.69,          # sec 3.1 "Kendall tau ~ 0.69"
    "extreme_shift_points": 3,               # sec 3.4 "three or more points"
    "fig6b_should_down_image": 4045,         # sec 3.4 (+1 labels, image-grounded, downward)
    "fig6b_should_not_up_image": 3802,       # sec 3.4 (-1 labels, image-grounded, upward)
    "unsafe_threshold": 2.5,                 # sec 5.1 and 12.2
    "discrepancy_threshold": 1,              # sec 3.2 "deviates ... by >= 1 point"
    "ranking_saturation_list_size": 4,       # sec 5.2 "saturates around m=4"
    "data_efficiency_fraction": 0.5,         # sec 5.2
    "discrepancy_split_tolerance": 0.02,     # sec 5.1 "(+/- 0.02)"
}

# --------------------------------------------------------------------------- Table 2
# Judgment shifts by attributed modality: (up = more acceptable, neutral, down = less acceptable, total)
TABLE2 = {
    "image": (4884, 2615, 6967, 14466),
    "text": (2109, 1100, 2899, 6108),
    "both": (2631, 1412, 3969, 8012),
}
TABLE2_DIRECTIONS = ("up", "neutral", "down")
# The anchor of each NormBank label on the 1-5 scale (direction = rounded mean rating vs anchor).
LABEL_ANCHOR = {-1: 2, 0: 3, 1: 4}


def table2_total() -> int:
    """All scenarios in Table 2 (28,586; not the 32,212 of the text, see CONTRADICTIONS)."""
    return sum(row[3] for row in TABLE2.values())


def table2_shares() -> dict[tuple[str, str], float]:
    """Each (modality, direction) cell as a percentage of Table 2's total."""
    total = table2_total()
    return {(m, d): 100.0 * row[i] / total for m, row in TABLE2.items() for i, d in enumerate(TABLE2_DIRECTIONS)}


# --------------------------------------------------------------------------- Table 3
# Main results on the test set: model -> supervision -> (NDCG@5, MRR, Unsafe Rate, AUC-Safety)
TABLE3_METRICS = ("ndcg@5", "mrr", "unsafe_rate", "auc_safety")
TABLE3 = {
    "LLaVA-OneVision-7B": {"listwise": (0.89, 0.58, 0.45, 0.76), "bpo": (0.85, 0.52, 0.40, 0.72),
                           "bce": (0.73, 0.40, 0.63, 0.58)},
    "Qwen2-VL-7B Instruct": {"listwise": (0.89, 0.60, 0.42, 0.79), "bpo": (0.86, 0.53, 0.39, 0.75),
                             "bce": (0.76, 0.42, 0.60, 0.61)},
    "Phi-3 Vision (Instruct)": {"listwise": (0.87, 0.56, 0.47, 0.75), "bpo": (0.84, 0.51, 0.44, 0.71),
                                "bce": (0.72, 0.39, 0.65, 0.59)},
    "InstructBLIP-Vicuna-7B": {"listwise": (0.86, 0.54, 0.49, 0.72), "bpo": (0.82, 0.49, 0.46, 0.69),
                               "bce": (0.70, 0.38, 0.67, 0.54)},
}
SUPERVISION_NAMES = {"listwise": "Ours (Listwise PO)", "bpo": "BPO (Binary PO)", "bce": "BCE (Binary Class.)"}

# --------------------------------------------------------------------------- Table 4
# Agreement with aggregated annotator rankings: supervision -> (Kendall's tau, NDCG@5)
TABLE4 = {"bce": (0.55, 0.75), "bpo": (0.60, 0.81), "listwise": (0.68, 0.84)}

# --------------------------------------------------------------------------- Table 5
# Modality classification: method -> (accuracy %, macro F1 %)
TABLE5 = {
    "Majority Class": (56.3, 41.2),
    "Random Guessing": (33.6, 32.9),
    "Frozen Encoder + Head": (64.5, 60.1),
    "Ours (LoRA-tuned)": (72.8, 68.9),
}

# --------------------------------------------------------------------------- Table 6
# Divergent scenarios by grounding modality: (count, percent)
TABLE6 = {"image": (10891, 51.4), "both": (5837, 27.5), "text": (4465, 21.1)}
TABLE6_TOTAL = (21193, 100.0)

# sec 5.1: "Results remain consistent on the discrepancy-augmented split (± 0.02)": the largest
# change of a Table 3 metric when the test split gains MORALE's annotator-added scenarios (sec 3.2)
EXPANSION_CONSISTENCY = {"max_abs_difference": 0.02, "section": "sec 5.1"}

# --------------------------------------------------------------------------- training details (sec 4.3, 13)
TRAINING = {
    "lora_rank": 4, "lora_alpha": 16, "lora_dropout": 0.05,
    "lora_targets": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "learning_rate": 1e-4, "epochs": 5, "batch_size": 1, "optimizer": "AdamW",
    "gpus": "4 x RTX A6000 (48GB)",
}


# --------------------------------------------------------------------------- contradictions

@dataclass(frozen=True)
class Contradiction:
    """Two places where the paper disagrees with itself, the arithmetic, and what we follow."""

    key: str
    claim_a: str
    claim_b: str
    arithmetic: str
    resolution: str


def _pct(a: float, b: float) -> str:
    return f"{100 * a / b:.1f}%"


def _contradictions() -> tuple[Contradiction, ...]:
    t2 = table2_total()
    t2_neutral = sum(row[1] for row in TABLE2.values())
    t2_div = t2 - t2_neutral
    n, imgs = DATASET["scenarios"], DATASET["images"]
    t6 = TABLE6_TOTAL[0]
    per_image = STATISTICS["divergent_per_image"] * imgs
    agree_img = STATISTICS["modality_agreement_image"]
    return (
        Contradiction(
            "table2_total",
            f"Table 1 / sec 3.1: {n:,} annotated scenarios",
            f"Table 2 rows sum to {t2:,} scenarios",
            f"{TABLE2['image'][3]:,} + {TABLE2['text'][3]:,} + {TABLE2['both'][3]:,} = {t2:,}; "
            f"{n:,} - {t2:,} = {n - t2:,} scenarios ({_pct(n - t2, n)}) are missing from Table 2",
            "The simulator matches Table 2's cell shares (percent of its total), at the 32,212-scenario size.",
        ),
        Contradiction(
            "divergence_rate",
            f"sec 3.3: {STATISTICS['divergent_percent']}% of scenarios diverge from the text-only label "
            f"(sec 1 and 6: 68%), and {STATISTICS['divergent_per_image']} per image",
            f"Table 2: {t2_div:,} of {t2:,} are not neutral; Table 6: {t6:,} divergent",
            f"Table 2: {t2_div:,}/{t2:,} = {_pct(t2_div, t2)}; Table 6: {t6:,}/{n:,} = {_pct(t6, n)} "
            f"(or {_pct(t6, t2)} of Table 2's total); {STATISTICS['divergent_percent']}% x {n:,} = "
            f"{STATISTICS['divergent_percent'] / 100 * n:,.0f} != {t6:,}; "
            f"{STATISTICS['divergent_per_image']} x {imgs:,} = {per_image:,.0f} = {_pct(per_image, n)} of {n:,}",
            "Four different divergence rates (82.1%, 74.1%/65.8%, 68.1%, 39.1%); the simulator follows Table 2.",
        ),
        Contradiction(
            "table6_vs_table2",
            "Table 6: divergent scenarios by modality " + ", ".join(f"{k} {v[0]:,}" for k, v in TABLE6.items()),
            "Table 2: up + down by modality " + ", ".join(
                f"{k} {TABLE2[k][0] + TABLE2[k][2]:,}" for k in TABLE6),
            "; ".join(f"{k}: {TABLE2[k][0] + TABLE2[k][2]:,} - {TABLE6[k][0]:,} = "
                      f"{TABLE2[k][0] + TABLE2[k][2] - TABLE6[k][0]:,}" for k in TABLE6)
            + f"; the shares agree closely ({_pct(TABLE2['image'][0] + TABLE2['image'][2], t2_div)} vs "
              f"{TABLE6['image'][1]}% image)",
            "Table 2 is matched; Table 6's counts are reported beside the simulated ones, not targeted.",
        ),
        Contradiction(
            "modality_agreement_vs_alpha",
            f"sec 3.3 / 11: modality agreement {STATISTICS['modality_agreement_text']:.0%} (text), "
            f"{agree_img:.0%} (image)",
            f"sec 3.3 / 11: Krippendorff's alpha = {STATISTICS['alpha_modality']} for modality labels",
            "If agreement were pairwise percent agreement, alpha = 1 - D_o/D_e with D_e <= 2/3 (three labels) "
            f"needs overall agreement >= 1 - 0.29 x 2/3 = {1 - 0.29 * 2 / 3:.3f}; with half the items "
            f"(image, Table 2: {_pct(TABLE2['image'][3], t2)}) at {agree_img:.2f} the rest would need "
            f"{(1 - 0.29 * 2 / 3 - 0.506 * agree_img) / 0.494:.2f}. And the share of labels matching the "
            "majority is at least 2/3 for any majority-labelled item, above 61%.",
            "We read 'agreement' as the share of items whose three annotators all chose the same label "
            "(unanimity), grouped by majority label; that is consistent with alpha = 0.71.",
        ),
        Contradiction(
            "extreme_shift_fig6a",
            "Fig. 6 caption: image-grounded contexts produce the highest number of large reinterpretations",
            "sec 3.4: scenarios grounded in both image and text exhibit the highest rate of extreme re-evaluations",
            f"Counts and rates differ because the groups differ in size (Table 2: image {TABLE2['image'][3]:,}, "
            f"both {TABLE2['both'][3]:,}): both can hold at once.",
            "The simulator targets the highest extreme-shift rate for 'both' and reports counts too.",
        ),
        Contradiction(
            "list_size_range",
            "sec 4.3: scenarios are grouped by image into sets of n = 1-5",
            "sec 8.2: workers were shown an image with 3-5 textual scenarios",
            f"{n:,} / {imgs:,} = {n / imgs:.4f} (the stated mean 3.48 is consistent with either range)",
            "The simulator uses lists of 1-5 (the release format and the training code allow 1).",
        ),
        Contradiction(
            "images_audited",
            "sec 3.1: 'We manually audit 32K generated images'",
            f"sec 3.3: {imgs:,} unique image contexts; sec 10: 1,742 images removed in generation QC",
            f"32,000 vs {imgs:,} (+ 1,742 removed = {imgs + 1742:,}); 32K matches the scenario count "
            f"{n:,}, not the image count",
            "Image QC shares (9/4/2%) are applied per released image.",
        ),
        Contradiction(
            "real_image_delta",
            "sec 3.1 text: delta NDCG@5, delta Unsafe <= 0.01 between synthetic and real images",
            "Fig. 3 caption: differences delta <= 0.02",
            "0.01 vs 0.02 for the same comparison",
            "The real-image notebook reports its measured deltas against both bounds.",
        ),
        Contradiction(
            "vlm_count",
            "sec 4.3: 'three pre-trained VLMs'",
            "sec 4.3 / 5.1 list four: LLaVA-OneVision, Qwen2-VL-7B-Instruct, Phi-3-Vision, InstructBLIP",
            "3 != 4 (Table 3 has four backbones)",
            "Table 3's four backbones are transcribed.",
        ),
        Contradiction(
            "table4_vs_table3",
            f"Table 4: scalar listwise NDCG@5 = {TABLE4['listwise'][1]}",
            "Table 3: listwise NDCG@5 = " + ", ".join(f"{v['listwise'][0]}" for v in TABLE3.values()),
            f"mean of Table 3 listwise NDCG@5 = {sum(v['listwise'][0] for v in TABLE3.values()) / 4:.4f} "
            f"!= {TABLE4['listwise'][1]} (no backbone in Table 3 is as low)",
            "Both are transcribed; Table 4 may be computed on a different split or aggregation.",
        ),
        Contradiction(
            "table5_majority",
            f"Table 5: majority-class modality accuracy {TABLE5['Majority Class'][0]}%",
            f"Table 2: largest modality (image) is {_pct(TABLE2['image'][3], t2)} of scenarios",
            f"{TABLE2['image'][3]:,}/{t2:,} = {_pct(TABLE2['image'][3], t2)} vs {TABLE5['Majority Class'][0]}%",
            "Could be a test-split effect; reported side by side, not targeted.",
        ),
        Contradiction(
            "image_qc_text_grounded",
            "sec 3.1: 9% minor, 4% lighting/texture, 2% severe; 'They are marked text-grounded'",
            "It is ambiguous whether 'they' is all 15% of flagged images or only the severe 2%",
            "9 + 4 + 2 = 15% of images",
            "Only severe images are treated as text-grounded and excluded from visual analyses.",
        ),
    )


CONTRADICTIONS: tuple[Contradiction, ...] = _contradictions()
