"""Point metrics on (label, probability) pairs; NaN where a metric is undefined (one class only).

Every metric is a :class:`Metric`: callable as ``metric(y, p)`` and, for the bootstrap, evaluable on many
resamples at once as ``metric.weighted(y, p, w)`` where ``w`` holds one row of case weights (resampling
counts) per resample. The plain call is the weighted one with unit weights, so both agree by construction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
from scipy.special import expit

from crsrisk.errors import InputError

EPS = 1e-6  # probabilities are clipped to [EPS, 1 - EPS] before taking logits
_NEWTON_ITERATIONS = 100
_NEWTON_TOLERANCE = 1e-9
_MAX_STEP = 5.0  # damped Newton: no coefficient moves by more than this per iteration

Weighted = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def as_labels(y: object) -> np.ndarray:
    """Labels as a 1-D float array of 0/1, or a ValueError naming the first bad row."""
    try:
        values = np.asarray(y, dtype=float).ravel()
    except (TypeError, ValueError) as error:
        raise InputError(f"y: expected 0/1 labels ({error})") from error
    bad = np.flatnonzero(~np.isin(values, (0.0, 1.0)))
    if bad.size:
        raise InputError(f"y: row {bad[0]} is {float(values[bad[0]])!r}; expected 0 or 1 (no missing labels)")
    return values


def as_scores(p: object, n: int, probabilities: bool) -> np.ndarray:
    """Scores as a finite 1-D float array of length ``n`` (in [0, 1] when ``probabilities``)."""
    values = np.asarray(p, dtype=float).ravel()
    if values.shape != (n,):
        raise InputError(f"p: {values.size} values for {n} labels; expected one score per label")
    bad = np.flatnonzero(~np.isfinite(values) | (probabilities & ((values < 0) | (values > 1))))
    if bad.size:
        expected = "a probability in [0, 1]" if probabilities else "a finite score"
        raise InputError(f"p: row {bad[0]} is {float(values[bad[0]])!r}; expected {expected}")
    return values


@dataclass(frozen=True)
class Metric:
    """A metric usable on one sample (``metric(y, p)``) and on a batch of weighted resamples (``.weighted``)."""

    name: str
    weighted: Weighted
    probabilities: bool = True  # False: any real-valued score is accepted (AUROC, AUPRC)

    def __call__(self, y: object, p: object) -> float:
        """The metric on one sample: float, NaN when undefined (no rows, or one class where both are needed)."""
        labels = as_labels(y)
        scores = as_scores(p, labels.size, self.probabilities)
        if not labels.size:
            return float("nan")
        return float(self.weighted(labels, scores, np.ones((1, labels.size)))[0])


def _per_distinct_score(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positive and negative weight at each distinct score, scores ascending: two arrays (resamples, distinct)."""
    order = np.argsort(p, kind="stable")
    sorted_p = p[order]
    starts = np.flatnonzero(np.r_[True, sorted_p[1:] != sorted_p[:-1]])
    ws = w[:, order]
    positive = y[order] == 1
    return (np.add.reduceat(ws * positive, starts, axis=1), np.add.reduceat(ws * ~positive, starts, axis=1))


def _divide(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.divide(a, b, out=np.full(np.broadcast(a, b).shape, np.nan), where=b > 0)


def _auroc(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted Mann-Whitney AUROC; ties count one half."""
    pos, neg = _per_distinct_score(y, p, w)
    below = np.cumsum(neg, axis=1) - neg
    return _divide((pos * (below + 0.5 * neg)).sum(axis=1), pos.sum(axis=1) * neg.sum(axis=1))


def _auprc(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Average precision (sum of recall increments times precision over distinct thresholds, as scikit-learn)."""
    pos, neg = _per_distinct_score(y, p, w)
    pos, neg = pos[:, ::-1], neg[:, ::-1]
    tp, flagged = np.cumsum(pos, axis=1), np.cumsum(pos + neg, axis=1)
    precision = np.divide(tp, flagged, out=np.zeros_like(tp), where=flagged > 0)
    events, non_events = pos.sum(axis=1), neg.sum(axis=1)
    return np.where(non_events > 0, _divide((pos * precision).sum(axis=1), events), np.nan)


def _brier(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted mean squared difference between probability and outcome."""
    return _divide(w @ (p - y) ** 2, w.sum(axis=1))


def _observed_expected(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Observed over expected events: the events over the sum of predicted risks (calibration in the large)."""
    return _divide(w @ y, w @ p)


def logit(p: np.ndarray) -> np.ndarray:
    """log(p / (1 - p)) with p clipped to [EPS, 1 - EPS]."""
    p = np.clip(np.asarray(p, float), EPS, 1 - EPS)
    return np.log(p / (1 - p))


def _two_classes(y: np.ndarray, w: np.ndarray) -> np.ndarray:
    return ((w @ y) > 0) & ((w @ (1 - y)) > 0)


def _separated(y: np.ndarray, w: np.ndarray, lp: np.ndarray) -> np.ndarray:
    """Per resample: do the drawn outcomes separate completely or quasi-completely along lp (infinite MLE)?"""
    drawn = w > 0
    pos, neg = drawn & (y == 1), drawn & (y == 0)
    pos_min, pos_max = np.where(pos, lp, np.inf).min(axis=1), np.where(pos, lp, -np.inf).max(axis=1)
    neg_min, neg_max = np.where(neg, lp, np.inf).min(axis=1), np.where(neg, lp, -np.inf).max(axis=1)
    return (neg_max <= pos_min) | (pos_max <= neg_min)


def _newton(y: np.ndarray, w: np.ndarray, lp: np.ndarray, with_slope: bool) -> np.ndarray:
    """Weighted ML logistic fits, one per row of ``w``: y ~ a + offset(lp), or y ~ a + b * lp.

    Returns (resamples, 2) coefficients [a, b] (b = 1 for the offset model); NaN where a resample holds one
    class only, lp separates the outcomes (slope model: infinite MLE), or the fit does not converge or is not
    identified (constant lp).
    """
    beta = np.tile([0.0, 1.0], (w.shape[0], 1))
    converged = np.zeros(w.shape[0], bool)
    estimable = _two_classes(y, w)
    if with_slope:
        estimable &= ~_separated(y, w, lp)
    active = np.flatnonzero(estimable)
    for _ in range(_NEWTON_ITERATIONS):
        if not active.size:
            break
        b, wa = beta[active], w[active]
        mu = expit(b[:, :1] + b[:, 1:] * lp)
        residual, curvature = wa * (y - mu), wa * mu * (1 - mu)
        g0, g1 = residual.sum(axis=1), residual @ lp
        h00, h01, h11 = curvature.sum(axis=1), curvature @ lp, curvature @ lp**2
        with np.errstate(divide="ignore", invalid="ignore"):
            if with_slope:
                det = h00 * h11 - h01**2
                step = np.stack([h11 * g0 - h01 * g1, h00 * g1 - h01 * g0], axis=1) / det[:, None]
            else:
                step = np.stack([g0 / h00, np.zeros(active.size)], axis=1)
        identified = np.isfinite(step).all(axis=1)
        beta[active] = b + np.clip(np.where(identified[:, None], step, 0.0), -_MAX_STEP, _MAX_STEP)
        done = identified & (np.abs(step).max(axis=1) < _NEWTON_TOLERANCE)
        converged[active[done]] = True
        active = active[identified & ~done]
    return np.where(converged[:, None], beta, np.nan)


def _calibration_intercept(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Calibration-in-the-large: intercept of a logistic regression of y with logit(p) as offset."""
    return _newton(y, w, logit(p), with_slope=False)[:, 0]


def _calibration_slope(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Calibration slope: coefficient of logit(p) in a logistic regression of y on logit(p)."""
    return _newton(y, w, logit(p), with_slope=True)[:, 1]


# Discrimination accepts any score (a published rule or log-EASIX); the rest need probabilities.
auroc = Metric("auroc", _auroc, probabilities=False)
auprc = Metric("auprc", _auprc, probabilities=False)
brier = Metric("brier", _brier)
observed_expected = Metric("oe", _observed_expected)
calibration_intercept = Metric("calibration_intercept", _calibration_intercept)
calibration_slope = Metric("calibration_slope", _calibration_slope)


def calibration_intercept_slope(y: object, p: object) -> tuple[float, float]:
    """Calibration intercept (in-the-large, logit(p) as offset) and slope (Van Calster et al. 2019)."""
    return calibration_intercept(y, p), calibration_slope(y, p)


THRESHOLD_KEYS = ("sensitivity", "specificity", "ppv", "npv")


def threshold_metric(key: str, threshold: float) -> Metric:
    """One of sensitivity/specificity/PPV/NPV when ``p >= threshold`` counts as positive, as a Metric."""
    if key not in THRESHOLD_KEYS:
        raise InputError(f"threshold metric {key!r}; expected one of {THRESHOLD_KEYS}")

    def weighted(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
        flagged = (p >= threshold).astype(float)
        tp, fp = w @ (flagged * y), w @ (flagged * (1 - y))
        fn, tn = w @ ((1 - flagged) * y), w @ ((1 - flagged) * (1 - y))
        numerator, denominator = {
            "sensitivity": (tp, tp + fn),
            "specificity": (tn, tn + fp),
            "ppv": (tp, tp + fp),
            "npv": (tn, tn + fn),
        }[key]
        return _divide(numerator, denominator)

    return Metric(f"{key}@{threshold:g}", weighted)


def threshold_metrics(y: object, p: object, threshold: float) -> dict[str, float]:
    """Sensitivity, specificity, PPV and NPV when ``p >= threshold`` counts as positive (NaN if undefined)."""
    return {key: threshold_metric(key, threshold)(y, p) for key in THRESHOLD_KEYS}


def standard_metrics(threshold: float) -> dict[str, Metric]:
    """Every metric the project reports: discrimination, Brier, calibration, and threshold metrics."""
    return {
        "auroc": auroc,
        "auprc": auprc,
        "brier": brier,
        "calibration_intercept": calibration_intercept,
        "calibration_slope": calibration_slope,
        **{key: threshold_metric(key, threshold) for key in THRESHOLD_KEYS},
    }


def metric_table(y: object, p: object, threshold: float) -> dict[str, float]:
    """All standard metrics of one set of predictions, as name -> value."""
    return {name: metric(y, p) for name, metric in standard_metrics(threshold).items()}


def calibration_bins(y: object, p: object, bins: int = 10) -> pd.DataFrame:
    """Reliability table: n, mean predicted risk and observed rate per quantile bin of p (per distinct value
    when p takes at most ``bins`` values, as a binary rule's recalibrated probabilities do)."""
    labels = as_labels(y)
    scores = as_scores(p, labels.size, probabilities=True)
    distinct = np.unique(scores)
    if distinct.size <= bins:
        group = np.searchsorted(distinct, scores)
    else:
        edges = np.unique(np.quantile(scores, np.linspace(0, 1, bins + 1)))
        group = np.clip(np.searchsorted(edges, scores, side="right") - 1, 0, len(edges) - 2)
    table = pd.DataFrame({"bin": group, "p": scores, "y": labels}).groupby("bin")
    return pd.DataFrame(
        {"n": table.size(), "mean_predicted": table["p"].mean(), "observed_rate": table["y"].mean()}
    ).reset_index(drop=True)
