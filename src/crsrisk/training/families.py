"""The model families ``train`` fits, each a small class chosen once by name from ``FAMILIES``.

A family builds its unfitted estimator, names its tuning space, reads a fitted model's raw score (log-odds
margin), gives the out-of-fold margins its calibrator is fitted on, and (when it can) exact per-feature
contributions. The bundle holds models of one family, ``bundle.format.BUNDLE_MODEL``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import xgboost as xgb
from scipy.stats import loguniform
from sklearn.base import clone
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from xgboost import XGBClassifier

from crsrisk.errors import InputError
from crsrisk.features import LogTransform, log_scale_columns
from crsrisk.training.config import TrainConfig


class Family(ABC):
    """One model family: estimator, tuning space, margin, inner-fold margins and contributions."""

    name: ClassVar[str]
    search_space: ClassVar[Mapping[str, Any]]

    @abstractmethod
    def estimator(self, columns: list[str], config: TrainConfig) -> Any:
        """An unfitted model over these feature columns."""

    @abstractmethod
    def margin(self, model: Any, X: pd.DataFrame) -> np.ndarray:
        """A fitted model's raw score on the log-odds scale (what calibration works on)."""

    def inner_margin(
        self, tuned: Any, X: pd.DataFrame, y: np.ndarray, folds: StratifiedGroupKFold, groups: np.ndarray
    ) -> np.ndarray:
        """Out-of-fold margins of ``tuned`` over ``folds`` (its calibrator is fitted on them)."""
        return cross_val_predict(tuned, X, y, cv=folds, groups=groups, method="decision_function")

    def contributions(self, model: Any, X: pd.DataFrame) -> np.ndarray | None:
        """Exact per-feature contributions to the margin (rows x features), or None when the family has none."""
        return None


class Logistic(Family):
    """Penalised logistic regression: log-scaled, median-imputed (with missing indicators) and standardised."""

    name = "logistic"
    search_space = MappingProxyType({"model__C": loguniform(1e-3, 10.0)})

    def estimator(self, columns: list[str], config: TrainConfig) -> Pipeline:
        return Pipeline(
            [
                ("log", LogTransform(log_scale_columns(columns))),
                ("impute", SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)),
                ("scale", StandardScaler()),
                ("model", LogisticRegression(C=0.1, max_iter=2000)),
            ]
        )

    def margin(self, model: Any, X: pd.DataFrame) -> np.ndarray:
        return np.asarray(model.decision_function(X), dtype=float)


class XGBoost(Family):
    """Gradient-boosted trees with missing values native; exact tree SHAP contributions."""

    name = "xgboost"
    search_space = MappingProxyType(
        {
            "n_estimators": [100, 200, 300],
            "max_depth": [2, 3, 4],
            "learning_rate": loguniform(0.02, 0.2),
            "subsample": [0.7, 0.85, 1.0],
            "colsample_bytree": [0.5, 0.8, 1.0],
            "min_child_weight": [1, 3, 5, 10],
            "reg_lambda": loguniform(0.5, 10.0),
        }
    )

    def estimator(self, columns: list[str], config: TrainConfig) -> XGBClassifier:
        return XGBClassifier(
            n_estimators=200,
            max_depth=3,
            learning_rate=0.05,
            subsample=0.85,
            colsample_bytree=0.8,
            min_child_weight=3,
            tree_method="hist",
            n_jobs=config.xgboost_threads,
            random_state=config.seed,
            eval_metric="logloss",
        )

    def margin(self, model: Any, X: pd.DataFrame) -> np.ndarray:
        return np.asarray(model.predict(X, output_margin=True), dtype=float)

    def inner_margin(
        self, tuned: Any, X: pd.DataFrame, y: np.ndarray, folds: StratifiedGroupKFold, groups: np.ndarray
    ) -> np.ndarray:
        out = np.empty(len(y))
        for train, test in folds.split(X, y, groups):
            out[test] = clone(tuned).fit(X.iloc[train], y[train]).predict(X.iloc[test], output_margin=True)
        return out

    def contributions(self, model: Any, X: pd.DataFrame) -> np.ndarray:
        matrix = xgb.DMatrix(X.to_numpy(dtype=float), missing=np.nan, feature_names=list(X.columns))
        return model.get_booster().predict(matrix, pred_contribs=True)[:, :-1]


FAMILIES: Mapping[str, Family] = MappingProxyType({family.name: family for family in (Logistic(), XGBoost())})


def get_family(name: str) -> Family:
    """The registered family, or an InputError listing the known names."""
    if name not in FAMILIES:
        raise InputError(f"model: expected one of {list(FAMILIES)}, got {name!r}")
    return FAMILIES[name]
