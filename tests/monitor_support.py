"""Shared by the monitoring tests and benchmark: a small calibrated bundle and a drifting stream of cohorts.

The bundle is fitted directly (no tuning) on one synthetic cohort, its calibrator on out-of-fold margins so it is
calibrated on new patients of the same population, with its training population (bins per landmark hour included).
Synthetic cohorts all number their infusions SIM00000..., so each cohort of a stream is re-keyed with a prefix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold
from xgboost import XGBClassifier

from crsrisk.bundle.calibration import Calibrator, fit_calibrator
from crsrisk.cohort.io import load_cohort
from crsrisk.cohort.validated import Cohort
from crsrisk.simulate import simulate_cohort, write_simulated
from crsrisk.simulate.shift import Shift
from crsrisk.tasks import DEFAULT_TASKS, TaskBase
from tests_support import fitted_bundle

# the adult-centre shift of examples/shifts/adult-centre.yaml: case mix (adults, CD28 product) and a centre effect
SHIFT = Shift(
    adult_fraction=0.6,
    product_mix={"tisagenlecleucel": 0.4, "brexucabtagene_autoleucel": 0.5, "obecabtagene_autoleucel": 0.1},
    centre_shares={"C2": 1.0},
    centre_effect={"C2": 0.8},
)
# severe CRS by day 28 (0 h and 36 h) and in the next 48 h (a super-model, here on a short grid to stay fast)
TASKS = (
    DEFAULT_TASKS["severe_crs"],
    DEFAULT_TASKS["severe_crs_dynamic"].with_overrides(landmarks=[{"start": 0, "stop": 48, "step": 12}]),
)


def simulated(folder: Path, n: int, seed: int, shift: Shift | None = None) -> Cohort:
    """A synthetic cohort written and read back through the contract."""
    write_simulated(simulate_cohort(n=n, seed=seed, shift=shift), folder)
    return load_cohort(folder)


def rekeyed(cohort: Cohort, prefix: str) -> Cohort:
    """The cohort with every patient id prefixed (synthetic ids repeat across cohorts)."""
    tables = {}
    for name in ("patients", "measurements", "events"):
        table = getattr(cohort, name).copy()
        table["patient_id"] = prefix + table["patient_id"].astype(str)
        tables[name] = table
    return Cohort(tables["patients"], tables["measurements"], tables["events"], dict(cohort.metadata))


def joined(*cohorts: Cohort) -> Cohort:
    """One cohort holding every infusion of the given (re-keyed) cohorts: the outcome cohort of a stream."""
    tables = {
        name: pd.concat([getattr(c, name) for c in cohorts], ignore_index=True)
        for name in ("patients", "measurements", "events")
    }
    return Cohort(tables["patients"], tables["measurements"], tables["events"], dict(cohorts[0].metadata))


def calibrated_bundle(cohort: Cohort, out: Path, tasks: tuple[TaskBase, ...] = TASKS) -> Path:
    """A bundle of the tasks' models: small boosters, Platt calibration on 3-fold out-of-fold margins."""

    def fit(X: pd.DataFrame, y: np.ndarray) -> tuple[Any, Calibrator]:
        params = dict(n_estimators=40, max_depth=2, learning_rate=0.1, n_jobs=1, random_state=0)
        margins = np.zeros(len(y))
        for train, held in StratifiedKFold(3, shuffle=True, random_state=0).split(X, y):
            booster = XGBClassifier(**params).fit(X.iloc[train], y[train])
            margins[held] = booster.predict(X.iloc[held], output_margin=True)
        return XGBClassifier(**params).fit(X, y).get_booster(), fit_calibrator(margins, y, "platt")

    return fitted_bundle(cohort, out, tasks, fit, cohort.fingerprint(), by_hour=True)
