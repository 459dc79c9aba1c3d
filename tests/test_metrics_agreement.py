"""Krippendorff's alpha wrapper and modality classification scores."""

from __future__ import annotations

import krippendorff
import numpy as np
import pandas as pd
import pytest

from mmscale_core.metrics import krippendorff_alpha, modality_scores

NAN = np.nan
# Krippendorff's own example (also the krippendorff package's doctest): raters x units
DOC_DATA = [[NAN, NAN, NAN, NAN, NAN, 3, 4, 1, 2, 1, 1, 3, 3, NAN, 3],
            [1, NAN, 2, 1, 3, 3, 4, 3, NAN, NAN, NAN, NAN, NAN, NAN, NAN],
            [NAN, NAN, 2, 1, 3, 4, 4, NAN, 2, 1, 1, 3, 3, NAN, 4]]


def per_unit_lists(data):
    return pd.Series([[v for v in col if not np.isnan(v)] for col in np.asarray(data).T])


@pytest.mark.parametrize("level, expected", [("nominal", 0.691358), ("interval", 0.810845)])
def test_known_values(level, expected):
    assert krippendorff_alpha(DOC_DATA, level) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval", "ratio"])
def test_per_unit_lists_equal_reliability_matrix(level):
    rng = np.random.default_rng(0)
    data = rng.integers(1, 6, size=(6, 80)).astype(float)
    data[rng.random(data.shape) < 0.5] = np.nan
    expected = krippendorff.alpha(reliability_data=data, level_of_measurement=level)
    assert krippendorff_alpha(data, level) == pytest.approx(expected, abs=1e-10)
    assert krippendorff_alpha(per_unit_lists(data), level) == pytest.approx(expected, abs=1e-10)


def test_labels_at_nominal_level():
    modalities = pd.Series([["text", "text", "image"], ["both", "both"], ["image", "image", "image"], ["text"]])
    as_codes = pd.Series([[0, 0, 1], [2, 2], [1, 1, 1], [0]])
    assert krippendorff_alpha(modalities, "nominal") == pytest.approx(krippendorff_alpha(as_codes, "nominal"))
    matrix = np.array([["text", "both", "image", "text"], ["text", "both", "image", None],
                       ["image", None, "image", None]], dtype=object)
    assert krippendorff_alpha(matrix, "nominal") == pytest.approx(krippendorff_alpha(as_codes, "nominal"))
    with pytest.raises(ValueError):
        krippendorff_alpha(modalities, "interval")


def test_perfect_agreement_and_undefined():
    assert krippendorff_alpha(pd.Series([[1, 1], [5, 5, 5], [3, 3]])) == pytest.approx(1.0)
    assert np.isnan(krippendorff_alpha(pd.Series([[2, 2], [2, 2]])))
    with pytest.raises(ValueError):
        krippendorff_alpha(DOC_DATA, "cardinal")


def test_modality_scores():
    y_true = ["text", "image", "both", "both", "text"]
    y_pred = ["text", "image", "text", "both", "image"]
    scores = modality_scores(y_true, y_pred)
    assert scores["accuracy"] == pytest.approx(3 / 5)
    f1_text, f1_image, f1_both = 2 * 1 / (2 + 2), 2 * 1 / (1 + 2), 2 * 1 / (2 + 1)
    assert scores["macro_f1"] == pytest.approx((f1_text + f1_image + f1_both) / 3)
    assert scores["n"] == 5
    # a class never predicted nor present still counts (F1 = 0) in the macro average
    assert modality_scores(["text"], ["text"])["macro_f1"] == pytest.approx(1 / 3)


@pytest.mark.parametrize("level, values", [("interval", [1, 2, 3, 4, 5]), ("nominal", ["text", "image", "both"])])
def test_bootstrap_resamples_rows_of_counts_like_recomputing_on_resampled_units(level, values):
    from mmscale_core.metrics.agreement import krippendorff_alpha_bootstrap

    rng = np.random.default_rng(3)
    # few units and a rare value, so some resamples lose a value entirely
    units = pd.Series([list(rng.choice(values[:-1], 3)) for _ in range(25)] + [[values[-1], values[-1]]])
    point, boots = krippendorff_alpha_bootstrap(units, level, 40, np.random.default_rng(0))
    assert point == pytest.approx(krippendorff_alpha(units, level), abs=1e-12)
    draw = np.random.default_rng(0)
    naive = [krippendorff_alpha(units.iloc[draw.integers(0, len(units), len(units))].reset_index(drop=True), level)
             for _ in range(40)]
    np.testing.assert_allclose(boots, naive, rtol=1e-12, atol=1e-12)
