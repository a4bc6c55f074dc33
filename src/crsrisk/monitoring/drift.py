"""Input drift of one group in one period against the bundle's training population: counts while streaming,
figures at the period's end.

Inputs are recomputed from the outcome cohort at each prediction's landmark hour by the one feature kernel
(``crsrisk.features.build.feature_matrix``), not stored in the audit log (which keeps no raw inputs by default):
the cohort holds the measurements, and a log of binned inputs would be a second copy of patient data. The price:
a value entered after the prediction was made counts as if it had been known then.

Per feature: the population stability index (PSI) over the training deciles (``crsrisk.cohort.population``'s bins:
shares smoothed by half a count, so an empty bin stays finite), a two-sample chi-square test of the period's bin
counts against the training counts (homogeneity, 2 x bins; Bonferroni-adjusted over the model's features), and the
change in the missing fraction. Per group: the share of predictions whose patient is outside the training population
(age, diagnosis or product, ``Population.patient_flags``) and the share with an input beyond its training range.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
from scipy.stats import chi2

from crsrisk.cohort.population import Population, bin_index

MIN_OBSERVED = 20  # fewer observed values of a feature in a period: no PSI or test for it


@dataclass(frozen=True)
class Reference:
    """One model's training inputs (at one landmark, for a super-model): names, bins, missing fractions, ranges."""

    key: str
    features: list[str]
    edges: list[np.ndarray] | None  # None: the bundle predates training bins (missingness and range only)
    counts: list[np.ndarray] | None
    missing: np.ndarray
    population: Population


def reference_for(
    recorded: Mapping[str, Any] | None, key: str, point: float | None
) -> tuple[Reference | None, str | None]:
    """The training reference of model ``key`` (at grid point ``point`` for a super-model) and a note when it is
    missing or partial (a bundle made before monitoring recorded bins)."""
    models = (recorded or {}).get("models", {})
    if key not in models:
        return None, f"{key}: the bundle records no training population: input drift not computed"
    model = models[key]
    bins = model.get("bins")
    if point is not None:
        by_landmark = model.get("bins_by_landmark") or {}
        bins = by_landmark.get(f"{point:g}")
        if bins is None:
            return None, (
                f"{key}: the bundle records no training bins per landmark hour (made before crsrisk monitor): "
                "input drift of this super-model is not computed (its inputs differ by hour by design)"
            )
    if bins is None:
        note = (
            f"{key}: the bundle records no training bins (made before crsrisk monitor): PSI and the two-sample "
            "test are not computed; missingness and range checks are"
        )
        missing = np.array(model["missing"], dtype=float)
        return Reference(key, list(model["features"]), None, None, missing, Population(recorded)), note
    counts = [np.asarray(c, dtype=float) for c in bins["counts"]]
    missing = np.array([1 - c.sum() / bins["rows"] if bins["rows"] else np.nan for c in counts])
    edges = [np.asarray(e, dtype=float) for e in bins["edges"]]
    return Reference(key, list(model["features"]), edges, counts, missing, Population(recorded)), None


class DriftCounts:
    """Bin counts, missing counts and out-of-population counts of one group's inputs, added chunk by chunk."""

    def __init__(self, reference: Reference) -> None:
        self.reference = reference
        self.rows = 0
        self.missing = np.zeros(len(reference.features))
        self.counts = [np.zeros(e.size + 1) for e in reference.edges] if reference.edges is not None else None
        self.outside = 0
        self.outside_known = 0
        self.beyond = 0

    def add(self, X: np.ndarray, outside: np.ndarray | None) -> None:
        """Count a chunk of input rows (columns in the model's feature order) and their patients' population flags."""
        self.rows += X.shape[0]
        seen = ~np.isnan(X)
        self.missing += (~seen).sum(axis=0)
        if self.counts is not None and self.reference.edges is not None:
            for j, edges in enumerate(self.reference.edges):
                column = X[seen[:, j], j]
                self.counts[j] += np.bincount(bin_index(edges, column), minlength=edges.size + 1)
        if outside is not None:
            self.outside += int(outside.sum())
            self.outside_known += outside.size
        self.beyond += self.reference.population.rows_beyond(self.reference.key, X)

    def figures(self, psi_threshold: float, alpha: float) -> dict[str, Any]:
        """The period's drift figures: per feature PSI, test p-value and missingness change; their summaries."""
        n_features = len(self.reference.features)
        missing_now = self.missing / self.rows if self.rows else np.full(n_features, np.nan)
        change = missing_now - self.reference.missing
        psi = np.full(n_features, np.nan)
        p_value = np.full(n_features, np.nan)
        if self.counts is not None and self.reference.counts is not None:
            for j, (now, then) in enumerate(zip(self.counts, self.reference.counts)):
                if now.sum() >= MIN_OBSERVED and then.sum() >= MIN_OBSERVED:
                    psi[j] = population_stability(now, then)
                    p_value[j] = homogeneity_p(now, then)
        adjusted = np.minimum(p_value * n_features, 1.0)
        drifted = (psi >= psi_threshold) & (adjusted < alpha)
        has_psi, has_change = np.isfinite(psi), np.isfinite(change)
        top = int(np.nanargmax(np.where(has_psi, psi, -np.inf))) if has_psi.any() else None
        top_change = int(np.argmax(np.where(has_change, np.abs(change), -np.inf))) if has_change.any() else None
        return {
            "rows": self.rows,
            "psi_max": None if top is None else float(psi[top]),
            "psi_max_feature": None if top is None else self.reference.features[top],
            "drifted_features": int(drifted.sum()) if has_psi.any() else None,
            "drifted": [self.reference.features[j] for j in np.flatnonzero(drifted)],
            "drift_test_min_p": float(np.nanmin(adjusted)) if np.isfinite(adjusted).any() else None,
            "missing_change_max": None if top_change is None else float(abs(change[top_change])),
            "missing_change_feature": None if top_change is None else self.reference.features[top_change],
            "outside_population_share": self.outside / self.outside_known if self.outside_known else None,
            "beyond_range_share": self.beyond / self.rows if self.rows else None,
            "features": {
                "name": self.reference.features,
                "psi": _rounded(psi),
                "p_adjusted": _rounded(adjusted),
                "missing_change": _rounded(change),
            },
        }


def _rounded(values: np.ndarray) -> list[float | None]:
    return [None if not np.isfinite(v) else round(float(v), 5) for v in values.tolist()]


def _shares(counts: np.ndarray) -> np.ndarray:
    return (counts + 0.5) / (counts.sum() + 0.5 * counts.size)


def population_stability(now: np.ndarray, then: np.ndarray) -> float:
    """PSI = sum over bins of (a - e) ln(a / e), a and e the period's and training's shares (half-count smoothed).
    Conventionally below 0.1 is stable, 0.1-0.25 a moderate shift and above 0.25 a major one."""
    a, e = _shares(np.asarray(now, dtype=float)), _shares(np.asarray(then, dtype=float))
    return float(np.sum((a - e) * np.log(a / e)))


def homogeneity_p(now: np.ndarray, then: np.ndarray) -> float:
    """P-value of Pearson's chi-square test that two samples' bin counts come from one distribution (bins empty in
    both left out; 1.0 when fewer than two bins remain)."""
    table = np.vstack([now, then]).astype(float)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return 1.0
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    statistic = float(((table - expected) ** 2 / expected).sum())
    return float(chi2.sf(statistic, table.shape[1] - 1))


def outside_population(population: Population, arrays: Any) -> np.ndarray:
    """Whether each cohort patient is outside the training population by age, diagnosis or product."""
    fields = ("age_years", "diagnosis", "product")
    columns = {name: arrays.patients[name] for name in fields if name in arrays.patients}
    n = arrays.patient_ids.size
    return np.array(
        [bool(population.patient_flags({name: values[i] for name, values in columns.items()})) for i in range(n)],
        dtype=bool,
    )
