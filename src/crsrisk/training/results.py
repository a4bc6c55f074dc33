"""From out-of-fold predictions to the result rows of metrics.json (pure; no I/O)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from crsrisk.evaluation import metrics as m


def pooled_predictions(oof: pd.DataFrame, n_rows: int) -> dict[str, np.ndarray]:
    """Mean out-of-fold probability per infusion across repeats, for each model (rows in X order)."""
    pooled = oof.groupby(["model", "row"])["probability"].mean()
    out = {}
    for model in oof["model"].unique():
        values = np.full(n_rows, np.nan)
        series = pooled.loc[model]
        values[series.index.to_numpy()] = series.to_numpy()
        out[str(model)] = values
    return out


def per_repeat_auroc(oof: pd.DataFrame, y: np.ndarray) -> dict[str, list[float]]:
    """AUROC of each repeat separately: the spread that the choice of folds alone produces."""
    out: dict[str, list[float]] = {}
    for (model, _), part in oof.groupby(["model", "repeat"], sort=True):
        out.setdefault(str(model), []).append(float(m.auroc(y[part["row"].to_numpy()], part["probability"].to_numpy())))
    return out


def attribution_stability(importance: pd.DataFrame, top: int = 10) -> dict[str, Any]:
    """How much the folds' XGBoost models agree on what matters: mean pairwise Spearman rank correlation of
    mean |SHAP| over all features, overlap of their top-``top`` sets, and the mean importance table."""
    from scipy.stats import spearmanr

    folds = importance.to_numpy()
    pairs = [(i, j) for i in range(len(folds)) for j in range(i + 1, len(folds))]
    varied = [np.ptp(row) > 0 for row in folds]  # a fold whose model used no feature has no ranking
    rho = [spearmanr(folds[i], folds[j]).statistic for i, j in pairs if varied[i] and varied[j]]
    tops = [set(importance.columns[np.argsort(-row)[:top]]) for row in folds]
    overlap = [len(tops[i] & tops[j]) / top for i, j in pairs]
    mean = importance.mean().sort_values(ascending=False)
    in_top = {name: int(sum(name in t for t in tops)) for name in mean.index[:top]}
    return {
        "folds": int(len(folds)),
        "mean_spearman": float(np.mean(rho)) if rho else None,
        "mean_top_overlap": float(np.mean(overlap)) if overlap else None,
        "top": top,
        "top_features": [
            {"feature": name, "mean_abs_shap": float(mean[name]), "folds_in_top": in_top[name]}
            for name in mean.index[:top]
        ],
    }
