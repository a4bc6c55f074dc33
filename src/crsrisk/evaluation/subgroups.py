"""Performance and calibration within subgroups (age band, sex, product, costimulation, centre)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from crsrisk.evaluation.bootstrap import bootstrap_ci
from crsrisk.evaluation.metrics import auroc, brier, calibration_intercept_slope

AGE_BANDS = [0, 3, 12, 18, 26, 200]  # under 3 differ (CIBMTR: 7.4 % severe CRS under age 3; confirmed)
AGE_LABELS = ["<3", "3-11", "12-17", "18-25", "26+"]


def age_band(age: pd.Series) -> pd.Series:
    """Age bands used in subgroup audits."""
    return pd.cut(age, AGE_BANDS, right=False, labels=AGE_LABELS).astype("string")


def subgroup_metrics(y: np.ndarray, p: np.ndarray, groups: pd.Series, n_boot: int = 200, seed: int = 0,
                     min_size: int = 30, min_events: int = 5) -> pd.DataFrame:
    """Per group level: n, events, AUROC with bootstrap CI, Brier, calibration intercept/slope, warnings."""
    y = np.asarray(y)
    p = np.asarray(p, float)
    levels = groups.fillna("(missing)").astype(str).to_numpy()
    rows = []
    for level in sorted(set(levels)):
        mask = levels == level
        yk, pk = y[mask], p[mask]
        events = int(yk.sum())
        ci = bootstrap_ci(yk, pk, {"auroc": auroc}, n_boot=n_boot, seed=seed)["auroc"] if 0 < events < len(yk) \
            else {"value": np.nan, "ci_low": np.nan, "ci_high": np.nan}
        intercept, slope = calibration_intercept_slope(yk, pk)
        warning = f"small group: n={mask.sum()}, events={events}" if mask.sum() < min_size or events < min_events else ""
        rows.append({"group": groups.name, "level": level, "n": int(mask.sum()), "events": events,
                     "auroc": ci["value"], "auroc_ci_low": ci["ci_low"], "auroc_ci_high": ci["ci_high"],
                     "brier": brier(yk, pk), "mean_predicted": float(pk.mean()), "observed_rate": float(yk.mean()),
                     "calibration_intercept": intercept, "calibration_slope": slope, "warning": warning})
    return pd.DataFrame(rows)
