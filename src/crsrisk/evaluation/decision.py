"""Decision-curve analysis (Vickers & Elkin, Med Decis Making 2006): net benefit of acting when risk >= threshold."""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from crsrisk.errors import InputError
from crsrisk.evaluation.metrics import as_labels, as_scores


def _thresholds(thresholds: object) -> np.ndarray:
    values = np.asarray(thresholds, dtype=float).ravel()
    bad = np.flatnonzero(~((values >= 0) & (values < 1)))
    if bad.size:
        raise InputError(f"thresholds: position {bad[0]} is {values[bad[0]]!r}; expected 0 <= threshold < 1")
    return values


def net_benefit_curve(y: object, p: object, thresholds: object) -> np.ndarray:
    """Net benefit TP/n - FP/n * pt/(1 - pt) at each threshold pt, flagging p >= pt (as the dcurves package)."""
    pt = _thresholds(thresholds)
    labels = as_labels(y).astype(bool)
    flagged = as_scores(p, labels.size, probabilities=True)[None, :] >= pt[:, None]
    n = max(labels.size, 1)
    tp = (flagged & labels).sum(axis=1) / n
    fp = (flagged & ~labels).sum(axis=1) / n
    return tp - fp * pt / (1 - pt)


def net_benefit(y: object, predictions: Mapping[str, object], thresholds: object) -> pd.DataFrame:
    """One row per (threshold, model): the model's net benefit beside treat-all and treat-none.

    Rows where a model has no prediction (NaN) are left out for that model, treat-all included, so each row
    compares strategies on the same infusions.
    """
    labels = as_labels(y)
    pt = _thresholds(thresholds)
    frames = []
    for name, p in predictions.items():
        scores = np.asarray(p, dtype=float).ravel()
        if scores.shape != labels.shape:
            raise InputError(f"predictions[{name!r}]: {scores.size} values for {labels.size} labels")
        keep = ~np.isnan(scores)
        frames.append(
            pd.DataFrame(
                {
                    "threshold": pt,
                    "model": name,
                    "n": int(keep.sum()),
                    "net_benefit": net_benefit_curve(labels[keep], scores[keep], pt),
                    "treat_all": net_benefit_curve(labels[keep], np.ones(int(keep.sum())), pt),
                    "treat_none": 0.0,
                }
            )
        )
    columns = ["threshold", "model", "n", "net_benefit", "treat_all", "treat_none"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
