"""What a trained model is: per task and landmark, a booster, a calibrator, its features and risk bands."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import xgboost as xgb

from crsrisk.calibration import Calibrator
from crsrisk.features.spec import feature_names
from crsrisk.tasks import Task, get_task, landmark_label, task_from_settings

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
        return f"{self.task}__{landmark_label(self.landmark)}"

    @cached_property
    def definition(self) -> Task:
        """The task definition (landmarks, thresholds, windows) this model was trained for."""
        return task_from_settings(self.task_settings) if self.task_settings else get_task(self.task)

    @cached_property
    def row_booster(self) -> xgb.Booster:
        """The same trees set up for one row at a time: a single thread, since on one row OpenMP workers cost
        more than they save and keep spinning on the other core afterwards (benchmarks/bench_predict.py)."""
        booster = self.booster.copy()
        booster.set_param({"nthread": 1})
        return booster

    @property
    def window(self) -> bool:
        """True when the model reads post-infusion features (any landmark after infusion)."""
        return isinstance(self.landmark, str) or float(self.landmark) > 0

    @cached_property
    def columns(self) -> np.ndarray:
        """Position of each of the model's features in the full feature matrix (``feature_names(True)``)."""
        position = {name: i for i, name in enumerate(feature_names(True))}
        unknown = [name for name in self.feature_names if name not in position]
        if unknown:
            raise ValueError(f"model {self.key}: features {unknown} are not features of this crsrisk version")
        return np.array([position[name] for name in self.feature_names])

    def band(self, probability: float | np.ndarray) -> Any:
        """The risk band of a calibrated probability (a str), or of each of an array of them (an array)."""
        position = np.searchsorted([self.bands["low"], self.bands["high"]], probability, side="right")
        return BAND_NAMES[position] if np.ndim(position) == 0 else np.asarray(BAND_NAMES, dtype=object)[position]
