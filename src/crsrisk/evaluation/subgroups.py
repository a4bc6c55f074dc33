"""Performance and calibration within subgroups (age band, sex, product, costimulation, centre).

In the spirit of fairlearn's MetricFrame (one row of metrics per group level), without depending on it.
"""

from __future__ import annotations

import pandas as pd

from crsrisk.errors import InputError
from crsrisk.evaluation.bootstrap import bootstrap_ci
from crsrisk.evaluation.metrics import as_labels, as_scores, auroc, brier, calibration_intercept_slope

AGE_BANDS = [0, 3, 12, 18, 26, 200]  # under 3 differ (CIBMTR: 7.4 % severe CRS under age 3; confirmed)
AGE_LABELS = ["<3", "3-11", "12-17", "18-25", "26+"]
MISSING_LEVEL = "(missing)"


def age_band(age: pd.Series) -> pd.Series:
    """Age bands used in subgroup audits."""
    return pd.cut(age, AGE_BANDS, right=False, labels=AGE_LABELS).astype("string")


def subgroup_metrics(
    y: object, p: object, groups: pd.Series, n_boot: int = 200, seed: int = 0, min_size: int = 30, min_events: int = 5
) -> pd.DataFrame:
    """Per group level: n, events, AUROC with bootstrap CI, Brier, calibration intercept/slope, warnings.

    ``groups`` is aligned with ``y`` by position; a missing level is reported as "(missing)". Levels with
    fewer than ``min_size`` infusions or ``min_events`` events carry a "small group" warning; metrics that are
    undefined in a level (one class only) are NaN.
    """
    labels = as_labels(y)
    scores = as_scores(p, labels.size, probabilities=True)
    if len(groups) != labels.size:
        raise InputError(f"groups: {len(groups)} values for {labels.size} labels; expected one per label")
    levels = groups.astype("string").fillna(MISSING_LEVEL).to_numpy(dtype=object)
    rows = []
    for level in sorted(set(levels)):
        mask = levels == level
        yk, pk = labels[mask], scores[mask]
        n, events = int(mask.sum()), int(yk.sum())
        ci = bootstrap_ci(yk, pk, {"auroc": auroc}, n_boot=n_boot, seed=seed)["auroc"]
        intercept, slope = calibration_intercept_slope(yk, pk)
        small = n < min_size or events < min_events
        rows.append(
            {
                "group": groups.name,
                "level": level,
                "n": n,
                "events": events,
                "auroc": ci["value"],
                "auroc_ci_low": ci["ci_low"],
                "auroc_ci_high": ci["ci_high"],
                "brier": brier(yk, pk),
                "mean_predicted": float(pk.mean()),
                "observed_rate": float(yk.mean()),
                "calibration_intercept": intercept,
                "calibration_slope": slope,
                "warning": f"small group: n={n}, events={events}" if small else "",
            }
        )
    return pd.DataFrame(rows)
