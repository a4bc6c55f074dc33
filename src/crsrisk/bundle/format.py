"""What a trained model is: per task and landmark, a booster, a calibrator, its features and risk bands."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import xgboost as xgb

from crsrisk.bundle.calibration import Calibrator
from crsrisk.errors import InputError
from crsrisk.features.spec import feature_names
from crsrisk.landmarks import Hours, Landmark, parse_landmark
from crsrisk.tasks import TaskBase, get_task, task_from_settings

FORMAT_VERSION = 2  # 2: typed landmarks (a grid is {start, stop, step}), dynamic tasks
BAND_NAMES = ("low", "intermediate", "high")
BUNDLE_MODEL = "xgboost"  # the model family a bundle holds (a booster), as result rows name it
FLOAT32_MAX = float(np.finfo(np.float32).max)
_FEW_ROWS = 64  # up to this many rows, the single-threaded booster copy answers (see ``row_booster``)


def model_ready(matrix: np.ndarray) -> np.ndarray:
    """Features within float32's range (NaN kept): XGBoost reads float32 and refuses a larger value (an
    IL-6/sgp130 ratio over a near-zero sgp130), and every split threshold is a float32, so a value beyond the
    largest float32 takes exactly the branch the largest float32 takes: the model's answer does not change."""
    return np.clip(np.asarray(matrix, dtype=np.float64), -FLOAT32_MAX, FLOAT32_MAX)


@dataclass
class TaskModel:
    """One task at one landmark (or a landmark grid, for a super-model): XGBoost booster (raw score = log-odds
    margin) and its calibration."""

    task: str
    landmark: Landmark
    booster: xgb.Booster
    calibrator: Calibrator
    feature_names: list[str]
    bands: dict[str, float]  # probability cut-offs: < low -> low, >= high -> high, else intermediate
    metrics: dict[str, Any] = field(default_factory=dict)
    label_rule_version: str = ""
    task_settings: dict[str, Any] = field(default_factory=dict)  # the Task definition it was trained for

    def __post_init__(self) -> None:
        self.landmark = parse_landmark(self.landmark)  # also reads the plain-data form stored in bundle.json

    @property
    def key(self) -> str:
        """File-name-safe identifier, e.g. ``severe_crs__36h``, ``severe_crs_dynamic__every12h_0-168h``."""
        return f"{self.task}__{self.landmark.label}"

    @cached_property
    def definition(self) -> TaskBase:
        """The task definition (landmarks, thresholds, windows) this model was trained for."""
        return task_from_settings(self.task_settings) if self.task_settings else get_task(self.task)

    @cached_property
    def outcome_words(self) -> str:
        """The outcome and its window in the task definition's words, read at the model's first landmark point
        (a first dose's window is counted from the dose): ``ICANS (any grade) in the next 48 h``."""
        first = self.landmark.points()[0]
        return self.definition.outcome_window(first.hours if isinstance(first, Hours) else math.nan)

    @cached_property
    def words(self) -> str:
        """What this model answers, to name it to people: its ``outcome_words``; a model read at one fixed hour
        says which (``severe CRS ... by day 28, as of hour 36``)."""
        if isinstance(self.landmark, Hours):
            return self.definition.question(self.landmark.hours)
        return self.outcome_words

    @cached_property
    def row_booster(self) -> xgb.Booster:
        """The same trees set up for one row at a time: a single thread, since on one row OpenMP workers cost
        more than they save and keep spinning on the other core afterwards (benchmarks/bench_predict.py)."""
        booster = self.booster.copy()
        booster.set_param({"nthread": 1})
        return booster

    @cached_property
    def columns(self) -> np.ndarray:
        """Position of each of the model's features in the full feature matrix (``feature_names(True)``)."""
        position = {name: i for i, name in enumerate(feature_names(True))}
        unknown = [name for name in self.feature_names if name not in position]
        if unknown:
            raise InputError(f"model {self.key}: features {unknown} are not features of this crsrisk version")
        return np.array([position[name] for name in self.feature_names])

    def _booster_for(self, rows: int) -> xgb.Booster:
        return self.row_booster if rows <= _FEW_ROWS else self.booster

    def margin(self, X: np.ndarray | xgb.DMatrix) -> np.ndarray:
        """The raw score (log-odds margin) of each row of ``X`` (columns in ``feature_names`` order, NaN = missing):
        the one place a raw score is computed. Values beyond float32's range are clipped (``model_ready``). A
        prepared DMatrix (already ``model_ready``, as for ``contributions``) gives the same margins bit for bit and,
        on one row, in half the time of converting the array again."""
        if isinstance(X, xgb.DMatrix):
            return self._booster_for(X.num_row()).predict(X, output_margin=True)
        values = model_ready(X)
        if values.ndim != 2 or values.shape[1] != len(self.feature_names):
            raise InputError(
                f"model {self.key}: expected rows of {len(self.feature_names)} features, got shape {values.shape}"
            )
        return self._booster_for(len(values)).inplace_predict(values, predict_type="margin", missing=np.nan)

    def contributions(self, X: np.ndarray | xgb.DMatrix) -> np.ndarray:
        """Exact tree SHAP of each row: one column per feature plus the base value last; a row adds up to its
        ``margin`` (to float32 rounding). A prepared DMatrix (already ``model_ready``) is used as it is."""
        matrix = X if isinstance(X, xgb.DMatrix) else xgb.DMatrix(model_ready(X), missing=np.nan, nthread=1)
        return self._booster_for(matrix.num_row()).predict(matrix, pred_contribs=True)

    def probability(self, X: np.ndarray) -> np.ndarray:
        """Calibrated probability of each row."""
        return self.calibrator.transform(self.margin(X))

    def band(self, probability: float | np.ndarray) -> Any:
        """The risk band of a calibrated probability (a str), or of each of an array of them (an array)."""
        position = np.searchsorted([self.bands["low"], self.bands["high"]], probability, side="right")
        return BAND_NAMES[position] if np.ndim(position) == 0 else np.asarray(BAND_NAMES, dtype=object)[position]
