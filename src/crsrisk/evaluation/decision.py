"""Decision-curve analysis (Vickers & Elkin 2006): net benefit of acting when risk >= threshold."""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd


def net_benefit_curve(y: np.ndarray, p: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Net benefit = TP/n - FP/n * pt / (1 - pt) at each threshold pt (as in dcurves)."""
    y = np.asarray(y).astype(bool)
    flagged = np.asarray(p)[None, :] >= thresholds[:, None]
    tp = (flagged & y).sum(axis=1) / len(y)
    fp = (flagged & ~y).sum(axis=1) / len(y)
    return tp - fp * thresholds / (1 - thresholds)


def net_benefit(y: np.ndarray, predictions: Mapping[str, np.ndarray], thresholds: np.ndarray) -> pd.DataFrame:
    """Long table: threshold, model, net_benefit - with the treat-all and treat-none strategies."""
    y = np.asarray(y)
    rows = [pd.DataFrame({"threshold": thresholds, "model": name, "net_benefit": net_benefit_curve(y, p, thresholds)})
            for name, p in predictions.items()]
    rows.append(pd.DataFrame({"threshold": thresholds, "model": "treat_all",
                              "net_benefit": net_benefit_curve(y, np.ones(len(y)), thresholds)}))
    rows.append(pd.DataFrame({"threshold": thresholds, "model": "treat_none", "net_benefit": 0.0}))
    return pd.concat(rows, ignore_index=True)
