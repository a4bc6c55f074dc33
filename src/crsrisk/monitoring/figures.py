"""One group's figures in one period: volume, pending, O/E, calibration intercept and slope, AUROC (each with a
percentile bootstrap CI), band shares and input drift.

The bootstrap is not stratified by outcome: a resample that kept the number of events would hide the very
uncertainty O/E and the calibration intercept are about (how many events a period has). It resamples patients when
one has several predictions in the period."""

from __future__ import annotations

from typing import Any

import numpy as np

from crsrisk.bundle.format import BAND_NAMES
from crsrisk.evaluation.bootstrap import bootstrap_ci
from crsrisk.evaluation.metrics import auroc, calibration_intercept, calibration_slope, observed_expected
from crsrisk.monitoring.join import EVENT, NO_EVENT, PENDING, PRIOR, UNMATCHED, GroupState, describe_group
from crsrisk.monitoring.plan import Plan

METRICS = {
    "oe": observed_expected,
    "calibration_intercept": calibration_intercept,
    "calibration_slope": calibration_slope,
    "auroc": auroc,
}


def group_figures(state: GroupState, plan: Plan, seed: int = 0) -> dict[str, Any]:
    """The period's figures of one group (plain data; NaN where a metric is undefined, e.g. one class only)."""
    counts = state.counts
    volume = counts["volume"]
    y = np.frombuffer(state.y, dtype=np.int8).astype(float)
    p = np.frombuffer(state.p, dtype=np.float64)
    who = np.frombuffer(state.who, dtype=np.int64)
    figures: dict[str, Any] = {
        **describe_group(state.group),
        "volume": volume,
        "matched": volume - counts[UNMATCHED],
        "unmatched": counts[UNMATCHED],
        "pending": counts[PENDING],
        "prior_outcome": counts[PRIOR],
        "labelled": int(counts[EVENT] + counts[NO_EVENT]),
        "events": int(counts[EVENT]),
        "pending_share": counts[PENDING] / volume if volume else None,
        "unmatched_share": counts[UNMATCHED] / volume if volume else None,
        "mean_predicted": float(p.mean()) if p.size else None,
        "observed_rate": float(y.mean()) if y.size else None,
        "bands": {name: state.bands[name] / volume for name in (*BAND_NAMES, "none") if state.bands[name]},
        "metrics": {},
        "drift": None,
    }
    if y.size:
        repeated = np.unique(who).size < who.size
        figures["metrics"] = bootstrap_ci(
            y, p, METRICS, n_boot=plan.n_boot, seed=seed, groups=who if repeated else None, stratify=False
        )
    if state.drift is not None:
        figures["drift"] = state.drift.figures(plan.drift.psi, plan.drift.alpha)
    return figures
