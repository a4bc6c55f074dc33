"""Margin-calibrated fitting of a model family inside a training set."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import RandomizedSearchCV, StratifiedGroupKFold

from crsrisk.bundle.calibration import Calibrator, fit_calibrator
from crsrisk.training.config import TrainConfig
from crsrisk.training.families import Family, get_family


@dataclass
class FittedModel:
    """A tuned model refitted on a whole training set, with a calibrator fitted on its inner-fold margins."""

    name: str
    model: Any
    calibrator: Calibrator
    best_params: dict[str, Any]

    @property
    def family(self) -> Family:
        """The model family it belongs to."""
        return get_family(self.name)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Calibrated probability of the positive class."""
        return self.calibrator.transform(self.family.margin(self.model, X))


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
    family = get_family(name)
    groups = np.arange(len(y)) if groups is None else np.asarray(groups)
    inner = StratifiedGroupKFold(config.tuning.inner_splits, shuffle=True, random_state=seed)
    base = family.estimator(list(X.columns), config)
    search = RandomizedSearchCV(
        base,
        dict(family.search_space),
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
    inner_margin = family.inner_margin(tuned, X, y, inner, groups)
    calibrator = fit_calibrator(inner_margin, y, config.calibration, n_boot=calibration_boot, seed=seed, groups=groups)
    return FittedModel(name, tuned.fit(X, y), calibrator, _plain(search.best_params_))


def _plain(params: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in params.items()}
