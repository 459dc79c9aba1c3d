"""Tables as the report shows them: no index, estimates with CI and chance, 3 significant digits, "—"."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from mmscale_core.display import display_table, estimate_cell, format_number
from mmscale_core.experiments import metric_cell, metrics_wide
from mmscale_core.outputs import SavedFiles


def test_numbers_get_three_significant_digits_and_missing_a_dash():
    assert format_number(0.841234) == "0.841"
    assert format_number(1.0) == "1.00"
    assert format_number(12.345) == "12.3"
    assert format_number(-0.0123456) == "-0.0123"
    assert format_number(123.4) == "123"
    assert format_number(9260) == "9260" and format_number(np.int64(14)) == "14"
    assert format_number(float("nan")) == "—" and format_number(None) == "—" and format_number(pd.NA) == "—"
    assert format_number("lipo") == "lipo"


def test_estimate_cell_leaves_out_what_does_not_exist():
    assert estimate_cell(0.8412, 0.8, 0.88, 0.5) == "0.841 [0.800, 0.880] (chance 0.500)"
    assert estimate_cell(0.8412, math.nan, math.nan, math.nan) == "0.841"
    assert estimate_cell(math.nan, 0.1, 0.2, 0.5) == "—"


def test_paper_rows_without_ci_and_companion_rows_with_one():
    frame = pd.DataFrame({"source": ["paper (transcribed)", "companion, simulated data"],
                          "metric": ["NDCG@5", "NDCG@5"], "value": [0.84, 0.7123456],
                          "ci_low": [np.nan, 0.70], "ci_high": [np.nan, 0.73], "chance": [np.nan, 0.61],
                          "n_lists": [np.nan, 14]})
    md = display_table(frame, caption="Table").to_markdown()
    assert md.startswith("Table\n\n")
    assert "| 0.840 " in md and "0.712 [0.700, 0.730] (chance 0.610)" in md
    assert "value [95% CI] (chance)" in md and "ci_low" not in md
    assert "nan" not in md.lower().replace("companion", "") and "NaN" not in md and "—" in md
    assert "| 14 " in md and "14.0" not in md
    header = md.splitlines()[2]
    assert header.split("|")[1].strip() == "source"  # no index column


def test_paired_differences_merge_diff_and_its_ci():
    frame = pd.DataFrame({"metric": ["MRR"], "diff": [0.0312], "ci_low": [-0.01], "ci_high": [0.07],
                          "p_value": [0.000999]})
    md = display_table(frame).to_markdown()
    assert "diff [95% CI]" in md and "0.0312 [-0.0100, 0.0700]" in md and "0.000999" in md


def test_a_wide_table_keeps_its_row_labels_as_columns():
    table = pd.DataFrame({"objective": ["lipo", "lipo"], "metric": ["MRR", "Kendall tau"],
                          "value": [0.9, np.nan], "ci_low": [0.8, np.nan], "ci_high": [0.95, np.nan],
                          "chance": [0.5, np.nan]})
    wide = metrics_wide(table, ["objective"])
    md = display_table(wide).to_markdown()
    first_row = md.splitlines()[2]
    assert "lipo" in first_row and "0.900 [0.800, 0.950] (chance 0.500)" in first_row and "—" in first_row
    assert metric_cell(table.iloc[1]) == "—"


def test_jupyter_renders_markdown_and_save_calls_print_nothing():
    table = display_table(pd.DataFrame({"a": [1.23456]}))
    assert table._repr_markdown_() == repr(table) and "1.23" in repr(table)
    saved = SavedFiles(["x.png"])
    assert saved == ["x.png"] and saved._ipython_display_() is None


def test_a_saved_tables_markdown_shows_an_undefined_number_as_a_dash(tmp_path):
    """NAME.md prints NaN (a Kendall tau of constant scores) as "—", like the site; the CSV keeps it empty."""
    from mmscale_core.outputs import save_table

    frame = pd.DataFrame({"source": ["companion, simulated data"] * 2, "metric": ["NDCG@5", "Kendall tau"],
                          "value": [0.85664, np.nan], "n_lists": [865, 865], "n": [np.nan, 3183.0],
                          "share": [1.0, np.nan]})
    save_table(frame, "t", tmp_path)
    md = (tmp_path / "t.md").read_text()
    kendall = next(line for line in md.splitlines() if "Kendall" in line)
    assert [cell.strip() for cell in kendall.strip("|").split("|")][2] == "—"
    assert "nan" not in md and "0.857" in md and "865" in md
    assert "3183" in md and "3183.0" not in md  # a count that NaN made float is still printed as a count
    assert "1.000" in md  # a proportion that happens to be whole keeps its decimals
    assert pd.read_csv(tmp_path / "t.csv")["value"].isna().tolist() == [False, True]
    full = frame.drop(columns=["n", "share"]).dropna()
    save_table(full, "full", tmp_path)  # nothing missing: the same Markdown as pandas writes
    assert (tmp_path / "full.md").read_text().strip() == full.to_markdown(index=False, floatfmt=".3f")
