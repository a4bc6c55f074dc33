"""Percentile bootstrap confidence intervals, resampling infusions with a fixed seed."""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

Metric = Callable[[np.ndarray, np.ndarray], float]


def bootstrap_ci(y: np.ndarray, p: np.ndarray, metrics: Mapping[str, Metric], n_boot: int = 1000, seed: int = 0,
                 level: float = 0.95) -> dict[str, dict[str, float]]:
    """Each metric's value on the full data and its percentile CI over ``n_boot`` stratified resamples.

    Resampling keeps the number of events fixed (stratified), so every resample has both classes.
    """
    y = np.asarray(y)
    p = np.asarray(p, dtype=float)
    rng = np.random.default_rng(seed)
    positives, negatives = np.flatnonzero(y == 1), np.flatnonzero(y != 1)
    draws = {name: np.empty(n_boot) for name in metrics}
    for b in range(n_boot):
        rows = np.concatenate([rng.choice(positives, len(positives)), rng.choice(negatives, len(negatives))])
        for name, metric in metrics.items():
            draws[name][b] = metric(y[rows], p[rows])
    tail = (1 - level) / 2 * 100
    out = {}
    for name, metric in metrics.items():
        finite = draws[name][np.isfinite(draws[name])]
        low, high = (np.percentile(finite, [tail, 100 - tail]) if len(finite) else (np.nan, np.nan))
        out[name] = {"value": float(metric(y, p)), "ci_low": float(low), "ci_high": float(high)}
    return out
