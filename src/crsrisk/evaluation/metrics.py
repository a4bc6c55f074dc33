"""Point metrics on (label, probability) pairs; NaN where a metric is undefined (one class only)."""

from __future__ import annotations

import numpy as np
from scipy.special import expit
from sklearn.metrics import average_precision_score, roc_auc_score

EPS = 1e-6


def _two_classes(y: np.ndarray) -> bool:
    return 0 < y.sum() < len(y)


def auroc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve."""
    y = np.asarray(y)
    return float(roc_auc_score(y, p)) if _two_classes(y) else float("nan")


def auprc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the precision-recall curve (average precision)."""
    y = np.asarray(y)
    return float(average_precision_score(y, p)) if _two_classes(y) else float("nan")


def brier(y: np.ndarray, p: np.ndarray) -> float:
    """Mean squared error of the probabilities."""
    return float(np.mean((np.asarray(p, float) - np.asarray(y, float)) ** 2))


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, float), EPS, 1 - EPS)
    return np.log(p / (1 - p))


def _fit_logistic(y: np.ndarray, x: np.ndarray | None, offset: np.ndarray, iterations: int = 50) -> np.ndarray:
    """Unpenalised maximum-likelihood logistic regression of y on [1, x] with an offset (Newton-Raphson)."""
    design = np.ones((len(y), 1)) if x is None else np.column_stack([np.ones(len(y)), x])
    beta = np.zeros(design.shape[1])
    for _ in range(iterations):
        mu = expit(offset + design @ beta)
        hessian = design.T @ (design * (mu * (1 - mu))[:, None])
        step = np.linalg.lstsq(hessian, design.T @ (y - mu), rcond=None)[0]
        beta = beta + step
        if np.max(np.abs(step)) < 1e-10:
            break
    return beta


def calibration_intercept_slope(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """Calibration-in-the-large (intercept with logit(p) as offset) and slope (Van Calster et al.)."""
    y = np.asarray(y, float)
    if not _two_classes(y):
        return float("nan"), float("nan")
    lp = _logit(p)
    intercept = _fit_logistic(y, None, lp)[0]
    slope = _fit_logistic(y, lp, np.zeros(len(y)))[1]
    return float(intercept), float(slope)


def threshold_metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    """Sensitivity, specificity, PPV and NPV when p >= threshold counts as positive."""
    y = np.asarray(y).astype(bool)
    flagged = np.asarray(p) >= threshold

    def ratio(a: int, b: int) -> float:
        return a / b if b else float("nan")

    tp, fp = int((flagged & y).sum()), int((flagged & ~y).sum())
    fn, tn = int((~flagged & y).sum()), int((~flagged & ~y).sum())
    return {"sensitivity": ratio(tp, tp + fn), "specificity": ratio(tn, tn + fp),
            "ppv": ratio(tp, tp + fp), "npv": ratio(tn, tn + fn)}
