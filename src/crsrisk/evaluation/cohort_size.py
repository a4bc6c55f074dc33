"""Riley's sample-size figures for a task's dataset: what ``train``, ``evaluate`` and ``update`` state about a cohort.

The formulas live in ``evaluation.samplesize``; this module only says which counts go in. They assume independent
patients, so a landmark super-model (several rows per infusion) is counted in infusions: n is the number of
infusions, events the infusions with an event row. None of these refuses a cohort.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

from crsrisk.bundle.format import BUNDLE_MODEL
from crsrisk.evaluation.samplesize import Precision, Readiness, train_readiness, validation_precision


def infusion_counts(y: np.ndarray, groups: np.ndarray | pd.Series) -> tuple[int, int]:
    """Infusions, and infusions with an event, among the rows ``y`` grouped by infusion."""
    ids = pd.Series(np.asarray(groups))
    return int(ids.nunique()), int(ids[np.asarray(y) == 1].nunique())


def readiness(y: np.ndarray, groups: np.ndarray | pd.Series, parameters: int) -> Readiness:
    """Whether these infusions meet Riley et al.'s development criteria for ``parameters`` candidate predictors."""
    return train_readiness(*infusion_counts(y, groups), parameters)


def anticipated_cstatistic(recorded: Mapping[str, Any], observed: float) -> float:
    """The C-statistic to size a validation with, to 3 decimals: the model's recorded cross-validated AUROC (its
    card's figure), else the one observed on this cohort (0.5 when neither is usable)."""
    value = recorded.get(BUNDLE_MODEL, {}).get("auroc") if isinstance(recorded.get(BUNDLE_MODEL), dict) else None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0.5 < value < 1:
        return round(float(value), 3)
    return round(float(observed), 3) if np.isfinite(observed) and 0 < observed < 1 else 0.5


def precision(y: np.ndarray, groups: np.ndarray | pd.Series, cstatistic: float) -> Precision:
    """The 95% CI widths of O/E, calibration slope and C-statistic these infusions can give (Riley et al. 2021)."""
    return validation_precision(*infusion_counts(y, groups), cstatistic)
