"""Percentile bootstrap confidence intervals, seeded and vectorised over resamples.

A resample is a row of case weights (how often each row was drawn). :class:`~crsrisk.evaluation.metrics.Metric`
objects evaluate a whole block of resamples in a few numpy operations (1,000 AUROC resamples of 1,500 rows
take well under a second); any other ``f(y, p)`` callable is evaluated resample by resample on the same draws.
"""

from __future__ import annotations

from typing import Callable, Iterator, Mapping

import numpy as np
import pandas as pd

from crsrisk.errors import InputError
from crsrisk.evaluation.metrics import Metric, as_labels, as_scores

MetricFn = Callable[[np.ndarray, np.ndarray], float]
_BLOCK_CELLS = 2_000_000  # resamples x rows evaluated at once (bounds memory to tens of MB)


def _draws(
    y: np.ndarray, groups: np.ndarray | None, stratify: bool, n_boot: int, rng: np.random.Generator
) -> Iterator[np.ndarray]:
    """Blocks of resampling counts, shape (resamples, rows): by patient group, by outcome stratum, or plain."""
    n = y.size
    block = max(1, _BLOCK_CELLS // max(n, 1))
    codes = None if groups is None else pd.factorize(pd.Series(groups), use_na_sentinel=False)[0]
    n_groups = 0 if codes is None or not n else int(codes.max()) + 1
    strata = [np.flatnonzero(y == 1), np.flatnonzero(y != 1)] if stratify else [np.arange(n)]
    for start in range(0, n_boot, block):
        size = min(block, n_boot - start)
        counts = np.zeros((size, n))
        if codes is not None:
            counts[:] = rng.multinomial(n_groups, np.full(n_groups, 1 / n_groups), size=size)[:, codes]
        else:
            for rows in strata:
                if rows.size:
                    counts[:, rows] = rng.multinomial(rows.size, np.full(rows.size, 1 / rows.size), size=size)
        yield counts


def _evaluate(fn: Metric | MetricFn, y: np.ndarray, p: np.ndarray, counts: np.ndarray) -> np.ndarray:
    if isinstance(fn, Metric):
        return fn.weighted(y, p, counts)
    rows = np.arange(y.size)
    return np.array([fn(y[np.repeat(rows, c)], p[np.repeat(rows, c)]) for c in counts.astype(int)], dtype=float)


def bootstrap_ci(
    y: object,
    p: object,
    metric_fns: Mapping[str, Metric | MetricFn],
    n_boot: int = 1000,
    seed: int = 0,
    groups: object | None = None,
    stratify: bool = True,
    level: float = 0.95,
) -> dict[str, dict[str, float]]:
    """Each metric's value on the full data and its percentile CI over ``n_boot`` resamples.

    Resampling is stratified by outcome by default (every resample keeps the number of events); with
    ``groups`` (e.g. patient ids, one per row) whole groups are resampled instead, unstratified, so repeated
    rows of one patient stay together. Resamples where a metric is undefined (NaN) are left out of its CI.
    """
    if not 0 < level < 1 or n_boot < 1:
        raise InputError(f"level={level}, n_boot={n_boot}; expected 0 < level < 1 and n_boot >= 1")
    labels = as_labels(y)
    if not labels.size:
        raise InputError("y: no rows to bootstrap")
    scores = as_scores(p, labels.size, probabilities=False)
    group_values = None if groups is None else np.asarray(groups, dtype=object).ravel()
    if group_values is not None and group_values.size != labels.size:
        raise InputError(f"groups: {group_values.size} values for {labels.size} rows; expected one per row")
    values = {name: float(fn(labels, scores)) for name, fn in metric_fns.items()}  # validates inputs first
    rng = np.random.default_rng(seed)
    draws: dict[str, list[np.ndarray]] = {name: [] for name in metric_fns}
    for counts in _draws(labels, group_values, stratify, n_boot, rng):
        for name, fn in metric_fns.items():
            draws[name].append(_evaluate(fn, labels, scores, counts))
    tail = (1 - level) / 2 * 100
    out = {}
    for name in metric_fns:
        resampled = np.concatenate(draws[name])
        finite = resampled[np.isfinite(resampled)]
        low, high = np.percentile(finite, [tail, 100 - tail]) if finite.size else (np.nan, np.nan)
        out[name] = {"value": values[name], "ci_low": float(low), "ci_high": float(high)}
    return out


def paired_difference(
    y: object,
    p: object,
    q: object,
    metric: Metric,
    n_boot: int = 1000,
    seed: int = 0,
    groups: object | None = None,
    level: float = 0.95,
) -> dict[str, float]:
    """``metric(y, p) - metric(y, q)`` and its percentile CI, both scores evaluated on the very same resamples
    (paired): the honest way to say one model beats another on the same infusions."""
    labels = as_labels(y)
    a, b = as_scores(p, labels.size, probabilities=False), as_scores(q, labels.size, probabilities=False)
    group_values = None if groups is None else np.asarray(groups, dtype=object).ravel()
    rng = np.random.default_rng(seed)
    diffs = np.concatenate(
        [
            metric.weighted(labels, a, counts) - metric.weighted(labels, b, counts)
            for counts in _draws(labels, group_values, group_values is None, n_boot, rng)
        ]
    )
    finite = diffs[np.isfinite(diffs)]
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail]) if finite.size else (np.nan, np.nan)
    return {"value": float(metric(labels, a) - metric(labels, b)), "ci_low": float(low), "ci_high": float(high)}
