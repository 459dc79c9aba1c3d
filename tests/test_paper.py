"""The paper's numbers in mmscale_core.paper: internal arithmetic, and a spot-check against the text."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from mmscale_core import paper

REPO = Path(__file__).resolve().parents[1]
PAPER_CANDIDATES = [
    Path(os.environ["MMSCALE_PAPER"]) if os.environ.get("MMSCALE_PAPER") else None,
    REPO.parent / "shared" / "paper" / "mm-scale-paper.txt",
    REPO / "shared" / "paper" / "mm-scale-paper.txt",
]


@pytest.fixture(scope="module")
def paper_text() -> str:
    for path in PAPER_CANDIDATES:
        if path is not None and path.is_file():
            return path.read_text(encoding="utf-8")
    pytest.skip("paper text not available (shared/paper/mm-scale-paper.txt beside the repo)")


def _num(text: str) -> float:
    return float(text.replace(",", ""))


# --------------------------------------------------------------------------- internal arithmetic

def test_table2_rows_sum_to_their_totals_and_to_28586():
    for modality, (up, neutral, down, total) in paper.TABLE2.items():
        assert up + neutral + down == total, modality
    assert paper.table2_total() == 28586
    shares = paper.table2_shares()
    assert sum(shares.values()) == pytest.approx(100.0)
    assert shares[("image", "down")] == pytest.approx(100 * 6967 / 28586)


def test_table6_counts_and_percents_agree():
    assert sum(v[0] for v in paper.TABLE6.values()) == paper.TABLE6_TOTAL[0] == 21193
    for count, pct in paper.TABLE6.values():
        assert 100 * count / paper.TABLE6_TOTAL[0] == pytest.approx(pct, abs=0.05)


def test_table3_shape_and_listwise_ranks_best():
    assert len(paper.TABLE3) == 4
    for model, rows in paper.TABLE3.items():
        assert set(rows) == {"listwise", "bpo", "bce"}
        for values in rows.values():
            assert len(values) == len(paper.TABLE3_METRICS)
            assert all(0 <= v <= 1 for v in values)
        ndcg = {k: v[0] for k, v in rows.items()}
        assert max(ndcg, key=ndcg.get) == "listwise", model
        unsafe = {k: v[2] for k, v in rows.items()}
        assert min(unsafe, key=unsafe.get) == "bpo", model  # the caption's point


def test_dataset_statistics_are_mutually_consistent_where_the_paper_is():
    assert paper.DATASET["scenarios"] / paper.DATASET["images"] == pytest.approx(paper.DATASET["mean_list_size"],
                                                                                 abs=0.005)
    assert paper.TABLE1[-1][1] == paper.DATASET["scenarios"]
    assert paper.LABEL_ANCHOR == {-1: 2, 0: 3, 1: 4}


def test_contradictions_carry_the_arithmetic():
    by_key = {c.key: c for c in paper.CONTRADICTIONS}
    assert {"table2_total", "divergence_rate", "modality_agreement_vs_alpha", "table6_vs_table2"} <= set(by_key)
    assert "28,586" in by_key["table2_total"].arithmetic and "3,626" in by_key["table2_total"].arithmetic
    div = by_key["divergence_rate"].arithmetic
    for figure in ("82.1%", "65.8%", "21,936", "12,594", "39.1%"):
        assert figure in div, figure
    assert "1.01" in by_key["modality_agreement_vs_alpha"].arithmetic  # > 1: pairwise reading impossible
    for c in paper.CONTRADICTIONS:
        assert c.claim_a and c.claim_b and c.arithmetic and c.resolution


# --------------------------------------------------------------------------- against the text

def test_table2_matches_the_text(paper_text):
    names = {"image-only": "image", "text-only": "text", "both": "both"}
    found = {}
    for line in paper_text.splitlines():
        cells = line.strip().split("\t")
        if len(cells) == 5 and cells[0] in names:
            found[names[cells[0]]] = tuple(int(_num(c)) for c in cells[1:])
    assert found == paper.TABLE2


def test_table3_matches_the_text(paper_text):
    rows = re.findall(r"(Ours \(Listwise PO\)|BPO \(Binary PO\)|BCE \(Binary Class\.\))\t"
                      r"([\d.]+)\t([\d.]+)\t([\d.]+)\t([\d.]+)", paper_text)
    assert len(rows) == 12
    key = {v: k for k, v in paper.SUPERVISION_NAMES.items()}
    expected = [(key[name], values) for rows_ in paper.TABLE3.values() for name, values in
                ((paper.SUPERVISION_NAMES[k], v) for k, v in rows_.items())]
    got = [(key[name], tuple(float(x) for x in vals)) for name, *vals in rows]
    assert got == expected


def test_tables_4_5_6_match_the_text(paper_text):
    t4 = dict(re.findall(r"(Binary Classification \(BCE\)|Pairwise Preference \(BPO\)|Scalar Listwise \(Ours\))"
                         r"\t([\d.]+\t[\d.]+)", paper_text))
    assert t4["Binary Classification (BCE)"] == "0.55\t0.75"
    assert tuple(map(float, t4["Scalar Listwise (Ours)"].split("\t"))) == paper.TABLE4["listwise"]
    for method, (acc, f1) in paper.TABLE5.items():
        assert f"{method}\t{acc}\t{f1}" in paper_text
    for name, key in (("Image-only", "image"), ("Image + Text", "both"), ("Text-only", "text")):
        count, pct = paper.TABLE6[key]
        assert f"{name}\t{count:,}\t{pct}" in paper_text
    assert f"Total\t{paper.TABLE6_TOTAL[0]:,}\t{paper.TABLE6_TOTAL[1]}" in paper_text


def test_section3_statistics_appear_in_the_text(paper_text):
    s = paper.STATISTICS
    for snippet in ("32,212 annotated scenarios across 9,260 unique image contexts", "average of 3.48",
                    f"{s['divergent_per_image']} scenarios per image", f"{s['divergent_percent']}% of scenarios",
                    "82% for text-grounded and 61% for image-grounded", "reaches 0.74 for scalar scores",
                    "0.71 for modality labels", "+0.90 when visuals reinforced text", "-0.48",
                    "deviation >1.2", "4.8\\%", "9% minor distortions, 4% lighting or texture issues, and 2% severe",
                    "1,742 images were removed", "4,045 in *image*-grounded", "3,802 in *image*-grounded",
                    "$>98\\%$ pass rate", "$>2\\%$ removals"):
        assert snippet in paper_text, snippet
