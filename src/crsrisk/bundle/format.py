"""What a trained model is: per task and landmark, a booster, a calibrator, its features and risk bands."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import xgboost as xgb

from crsrisk.calibration import Calibrator

FORMAT_VERSION = 1
BAND_NAMES = ("low", "intermediate", "high")


@dataclass
class TaskModel:
    """One task at one landmark: XGBoost booster (raw score = log-odds margin) and its calibration."""

    task: str
    landmark: float | str
    booster: xgb.Booster
    calibrator: Calibrator
    feature_names: list[str]
    bands: dict[str, float]  # probability cut-offs: < low -> low, >= high -> high, else intermediate
    metrics: dict[str, Any] = field(default_factory=dict)
    label_rule_version: str = ""
    task_settings: dict[str, Any] = field(default_factory=dict)  # the Task definition it was trained for

    @property
    def key(self) -> str:
        """File-name-safe identifier, e.g. ``severe_crs__36h``."""
        landmark = f"{float(self.landmark):g}h" if not isinstance(self.landmark, str) else self.landmark
        return f"{self.task}__{landmark}"

    def band(self, probability: float) -> str:
        """The risk band of a calibrated probability."""
        if probability < self.bands["low"]:
            return BAND_NAMES[0]
        return BAND_NAMES[2] if probability >= self.bands["high"] else BAND_NAMES[1]
