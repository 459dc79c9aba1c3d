"""Reliability curve / ECE definitions and the isotonic rescaling to the 1-5 scale."""

from __future__ import annotations

import numpy as np
import pytest

from mmscale_core.metrics import (
    acceptability,
    calibrate_scores,
    expected_calibration_error,
    fit_score_calibrator,
    reliability_curve,
)


def test_acceptability_maps_scale_to_unit_interval():
    np.testing.assert_allclose(acceptability([1, 3, 5, 0, 7]), [0, 0.5, 1, 0, 1])


def test_oracle_is_perfectly_calibrated():
    y = np.random.default_rng(0).integers(1, 6, size=(500, 3)).mean(axis=1)
    assert expected_calibration_error(y, y) == pytest.approx(0.0, abs=1e-12)


def test_ece_by_hand():
    # predicted acceptability 0.0, 0.0 | 1.0, 1.0 (bins 0 and 9); observed 0.25 and 0.75 means
    y_true = np.array([1.0, 3.0, 5.0, 3.0])  # acceptability 0, .5 | 1, .5
    y_score = np.array([1.0, 1.0, 5.0, 5.0])
    curve = reliability_curve(y_true, y_score, n_bins=10)
    assert list(curve["bin"]) == [0, 9]
    np.testing.assert_allclose(curve["mean_predicted"], [0.0, 1.0])
    np.testing.assert_allclose(curve["mean_observed"], [0.25, 0.75])
    assert expected_calibration_error(y_true, y_score) == pytest.approx(0.25)


def test_reliability_curve_counts_every_scenario_once():
    rng = np.random.default_rng(1)
    y_true, y_score = rng.uniform(1, 5, 1000), rng.uniform(0, 6, 1000)
    curve = reliability_curve(y_true, y_score, n_bins=7)
    assert curve["count"].sum() == 1000
    assert (curve["mean_predicted"].between(curve["bin_low"], curve["bin_high"])).all()
    weights = curve["count"] / 1000
    assert expected_calibration_error(y_true, y_score, 7) == pytest.approx(
        (weights * (curve["mean_predicted"] - curve["mean_observed"]).abs()).sum())


def test_isotonic_calibration_recovers_a_monotone_scale():
    rng = np.random.default_rng(2)
    raw = rng.normal(size=3000)  # e.g. ListMLE logits: order right, scale arbitrary
    human = 1 + 4 / (1 + np.exp(-2 * raw))
    test_raw = rng.normal(size=500)
    calibrated = calibrate_scores(raw, human, test_raw)
    assert calibrated.min() >= 1 and calibrated.max() <= 5
    assert np.all(np.diff(calibrated[np.argsort(test_raw)]) >= 0)
    np.testing.assert_allclose(calibrated, 1 + 4 / (1 + np.exp(-2 * test_raw)), atol=0.05)
    # out-of-range inputs are clipped to the fitted range, never extrapolated off-scale
    assert fit_score_calibrator(raw, human).predict([100.0, -100.0]).tolist() == pytest.approx(
        [human.max(), human.min()])


def test_calibration_input_errors():
    with pytest.raises(ValueError):
        calibrate_scores([1, 2], [1, 2, 3], [1])
    with pytest.raises(ValueError):
        reliability_curve([1, 2], [1, 2, 3])
