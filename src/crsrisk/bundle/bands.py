"""The risk-band rule, stated once: each model's cut-offs are relative to how often its outcome happened among
the infusions it was trained on, so a band says how this patient compares with them, not an absolute risk."""

from __future__ import annotations

from typing import Mapping

import numpy as np

BAND_FACTORS = (0.5, 2.0)  # low below half the training event rate, high from twice it
HIGH_CAP = 0.9  # high never needs more than 90 %, however common the outcome
_ROUNDING = 5e-4  # cut-offs are stored to 4 decimals: the rate read back from them is that close

RULE = (
    f"low is below {BAND_FACTORS[0]:g} times, high at least {BAND_FACTORS[1]:g} times the share of the training "
    f"infusions that had the outcome (high from {HIGH_CAP:.0%} at most), intermediate in between"
)


def _cutoffs(rate: float) -> dict[str, float]:
    return {"low": round(rate * BAND_FACTORS[0], 4), "high": round(min(rate * BAND_FACTORS[1], HIGH_CAP), 4)}


def relative_bands(y: np.ndarray) -> dict[str, float]:
    """The cut-offs of a model trained on outcomes ``y`` (1 = event), by ``RULE``."""
    return _cutoffs(float(np.mean(y)))


def training_rate(bands: Mapping[str, float]) -> float | None:
    """The training event rate ``relative_bands`` set these cut-offs from, or None when they do not follow
    ``RULE`` (cut-offs set some other way are then shown as they are, never explained by a rule they break)."""
    rate = bands["low"] / BAND_FACTORS[0]
    expected = _cutoffs(rate)
    return rate if all(abs(expected[k] - bands[k]) <= _ROUNDING for k in ("low", "high")) else None
