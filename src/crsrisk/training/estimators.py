"""The two model families, their tuning spaces, and margin-calibrated fitting inside a training set."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import loguniform
from sklearn.base import clone
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import RandomizedSearchCV, StratifiedGroupKFold, cross_val_predict
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from xgboost import XGBClassifier

from crsrisk.bundle.calibration import Calibrator, fit_calibrator
from crsrisk.errors import InputError
from crsrisk.features import LogTransform, log_scale_columns
from crsrisk.training.config import TrainConfig


def base_estimator(name: str, columns: list[str], config: TrainConfig) -> Any:
    """An unfitted model: penalised logistic (log, impute, scale inside the pipeline) or XGBoost (native NaN)."""
    if name == "logistic":
        return Pipeline(
            [
                ("log", LogTransform(log_scale_columns(columns))),
                ("impute", SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)),
                ("scale", StandardScaler()),
                ("model", LogisticRegression(C=0.1, max_iter=2000)),
            ]
        )
    if name == "xgboost":
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
    raise InputError(f"model: expected 'logistic' or 'xgboost', got {name!r}")


SEARCH_SPACES: dict[str, dict[str, Any]] = {
    "logistic": {"model__C": loguniform(1e-3, 10.0)},
    "xgboost": {
        "n_estimators": [100, 200, 300],
        "max_depth": [2, 3, 4],
        "learning_rate": loguniform(0.02, 0.2),
        "subsample": [0.7, 0.85, 1.0],
        "colsample_bytree": [0.5, 0.8, 1.0],
        "min_child_weight": [1, 3, 5, 10],
        "reg_lambda": loguniform(0.5, 10.0),
    },
}


def margin(model: Any, X: pd.DataFrame) -> np.ndarray:
    """The model's raw score on the log-odds scale (what calibration and SHAP work on)."""
    if isinstance(model, XGBClassifier):
        return np.asarray(model.predict(X, output_margin=True), dtype=float)
    return np.asarray(model.decision_function(X), dtype=float)


@dataclass
class FittedModel:
    """A tuned model refitted on a whole training set, with a calibrator fitted on its inner-fold margins."""

    name: str
    model: Any
    calibrator: Calibrator
    best_params: dict[str, Any]

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Calibrated probability of the positive class."""
        return self.calibrator.transform(margin(self.model, X))


def fit_model(
    name: str,
    X: pd.DataFrame,
    y: np.ndarray,
    config: TrainConfig,
    seed: int,
    groups: np.ndarray | None = None,
    calibration_boot: int = 0,
) -> FittedModel:
    """Tune on inner folds, calibrate on inner-fold margins, refit on all of ``X`` - nothing outside it is seen.
    ``calibration_boot`` Platt refits on resampled margins give the final model's probabilities an interval.

    Inner folds are grouped by ``groups`` (the infusion), so a landmark super-model never tunes or calibrates on
    one landmark of an infusion while validating on another of the same infusion.
    """
    groups = np.arange(len(y)) if groups is None else np.asarray(groups)
    inner = StratifiedGroupKFold(config.tuning.inner_splits, shuffle=True, random_state=seed)
    base = base_estimator(name, list(X.columns), config)
    search = RandomizedSearchCV(
        base,
        SEARCH_SPACES[name],
        n_iter=config.tuning.n_iter,
        scoring="roc_auc",
        cv=inner,
        random_state=seed,
        refit=False,
        n_jobs=1,
        error_score="raise",
    )
    search.fit(X, y, groups=groups)
    tuned = clone(base).set_params(**search.best_params_)
    if name == "xgboost":
        inner_margin = _xgb_oof_margin(tuned, X, y, inner, groups)
    else:
        inner_margin = cross_val_predict(tuned, X, y, cv=inner, groups=groups, method="decision_function")
    calibrator = fit_calibrator(inner_margin, y, config.calibration, n_boot=calibration_boot, seed=seed, groups=groups)
    return FittedModel(name, tuned.fit(X, y), calibrator, _plain(search.best_params_))


def _xgb_oof_margin(
    model: XGBClassifier, X: pd.DataFrame, y: np.ndarray, folds: StratifiedGroupKFold, groups: np.ndarray
) -> np.ndarray:
    out = np.empty(len(y))
    for train, test in folds.split(X, y, groups):
        out[test] = clone(model).fit(X.iloc[train], y[train]).predict(X.iloc[test], output_margin=True)
    return out


def _plain(params: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in params.items()}
