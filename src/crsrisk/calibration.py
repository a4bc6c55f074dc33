"""Calibration maps from a model's raw score (log-odds margin) to a probability, as plain parameters.

Kept free of pickled sklearn objects so a model bundle can store a calibrator as JSON and the
clinician's predict path can apply it with numpy alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy.special import expit

Method = Literal["platt", "isotonic"]
METHODS: tuple[str, ...] = ("platt", "isotonic")


@dataclass(frozen=True)
class Calibrator:
    """Platt: p = sigmoid(a * margin + b). Isotonic: p = piecewise-linear interpolation through (x, y)."""

    method: Method
    params: dict[str, Any]

    def transform(self, margin: np.ndarray) -> np.ndarray:
        """Map raw scores (log-odds) to calibrated probabilities."""
        margin = np.asarray(margin, dtype=float)
        if self.method == "platt":
            return expit(self.params["a"] * margin + self.params["b"])
        return np.clip(np.interp(margin, self.params["x"], self.params["y"]), 0.0, 1.0)  # interp can overshoot by 1 ulp

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form (floats and lists only)."""
        return {"method": self.method, "params": self.params}

    @classmethod
    def from_dict(cls, data: Any) -> "Calibrator":
        """Rebuild from ``to_dict`` output, checking the fields rather than trusting them: every number finite;
        isotonic x strictly increasing and y non-decreasing within [0, 1]. Raises ValueError naming the fault."""
        method = data.get("method") if isinstance(data, dict) else None
        params = data.get("params") if isinstance(data, dict) else None
        if method == "platt" and isinstance(params, dict) and set(params) == {"a", "b"}:
            return cls("platt", {name: finite_number(params[name], f"calibrator: parameter {name}") for name in "ab"})
        if (method == "isotonic" and isinstance(params, dict) and set(params) == {"x", "y"}
                and all(isinstance(params[k], list) for k in "xy") and len(params["x"]) == len(params["y"]) > 0):
            x = [finite_number(v, f"calibrator: parameter x[{i}]") for i, v in enumerate(params["x"])]
            y = [finite_number(v, f"calibrator: parameter y[{i}]") for i, v in enumerate(params["y"])]
            if any(b <= a for a, b in zip(x, x[1:])):
                raise ValueError("calibrator: isotonic x must be strictly increasing")
            if any(b < a for a, b in zip(y, y[1:])) or not 0.0 <= y[0] <= y[-1] <= 1.0:
                raise ValueError("calibrator: isotonic y must be non-decreasing probabilities in [0, 1]")
            return cls("isotonic", {"x": x, "y": y})
        raise ValueError(f"calibrator: expected method 'platt' with a, b or 'isotonic' with x, y; got {data!r:.200}")


def finite_number(value: Any, name: str) -> float:
    """A stored parameter as a float, refused (ValueError) unless a finite real number (not a bool or text)."""
    try:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
            raise ValueError
    except (ValueError, OverflowError):
        raise ValueError(f"{name} must be a finite number, got {value!r:.50}") from None
    return float(value)


def fit_calibrator(margin: np.ndarray, y: np.ndarray, method: Method) -> Calibrator:
    """Fit a calibrator on out-of-sample margins (never on the margins the model was trained on)."""
    margin = np.asarray(margin, dtype=float)
    y = np.asarray(y, dtype=float)
    if method == "platt":
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(C=1e6, max_iter=1000).fit(margin.reshape(-1, 1), y)
        return Calibrator("platt", {"a": float(model.coef_[0, 0]), "b": float(model.intercept_[0])})
    if method == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        model = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(margin, y)
        return Calibrator("isotonic", {"x": [float(v) for v in model.X_thresholds_],
                                       "y": [float(v) for v in model.y_thresholds_]})
    raise ValueError(f"calibration method: expected one of {METHODS}, got {method!r}")
