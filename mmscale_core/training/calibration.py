"""The isotonic map from a run's raw scores to the 1-5 scale, stored as its breakpoints."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def fit_calibration(predictions: pd.DataFrame, frame: pd.DataFrame) -> dict[str, Any]:
    """Isotonic map raw score -> 1-5 (``metrics.fit_score_calibrator``), fitted on the val split
    when the dataset has one (scenarios the model was not trained on), else on the train split;
    ``fitted_on`` says which.

    Stored as its breakpoints; applying it is linear interpolation with
    clipping, exactly what scikit-learn's ``IsotonicRegression.predict`` does.
    """
    from mmscale_core.metrics import fit_score_calibrator

    split = predictions["split"].to_numpy()
    fitted_on = "val" if (split == "val").any() else "train"
    rows = split == fitted_on
    iso = fit_score_calibrator(predictions["score"].to_numpy()[rows], frame["score"].to_numpy()[rows])
    return {"x": iso.X_thresholds_.tolist(), "y": iso.y_thresholds_.tolist(), "fitted_on": fitted_on}


def apply_calibration(calibration: dict[str, list[float]], scores: np.ndarray) -> np.ndarray:
    return np.interp(np.asarray(scores, dtype=np.float64), calibration["x"], calibration["y"])
