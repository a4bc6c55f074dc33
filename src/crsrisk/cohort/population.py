"""Who a model was trained on, and whether a patient is outside it: be loud, never silent.

A bundle records its training population (age range, diagnoses, products, and for each model the range and
missingness of every input). ``predict`` and ``evaluate`` compare a patient (or a cohort) with it and flag an
adult scored by a paediatric model, a product or diagnosis the model never saw, most inputs missing, or inputs
beyond anything seen in training. A flag does not stop a prediction: it says what the prediction is worth.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

from crsrisk.cohort.validated import Cohort

MOSTLY_MISSING = 0.5  # flag when more than half of a model's inputs are missing ...
MISSING_MARGIN = 0.2  # ... and that is this much more than the training rows' average
DRIFT_BINS = 10  # deciles of each input's observed training values: the bins input drift (PSI) is measured on


def bin_index(edges: Any, values: np.ndarray) -> np.ndarray:
    """The bin of each value given a feature's interior cut points: bin i holds edges[i-1] < x <= edges[i]
    (``len(edges) + 1`` bins); NaN is not binned (the caller counts it as missing). The one binning rule."""
    return np.searchsorted(np.asarray(edges, dtype=float), values, side="left")


def feature_bins(values: np.ndarray) -> dict[str, Any]:
    """Each column's decile cut points (distinct, 6 significant digits) over its observed values and the count of
    rows in each bin, plus the row count: what monitoring compares a period's inputs with (PSI, chi-square)."""
    edges, counts = [], []
    for column in values.T:
        seen = column[~np.isnan(column)]
        cuts = np.unique(np.quantile(seen, np.linspace(0, 1, DRIFT_BINS + 1)[1:-1])) if seen.size else np.array([])
        cuts = np.unique([float(f"{c:.6g}") for c in cuts.tolist()])
        edges.append(cuts.tolist())
        counts.append(np.bincount(bin_index(cuts, seen), minlength=cuts.size + 1).tolist())
    return {"rows": int(values.shape[0]), "edges": edges, "counts": counts}


def training_population(
    cohort: Cohort, inputs: Mapping[str, pd.DataFrame], landmark_hours: Mapping[str, np.ndarray] | None = None
) -> dict[str, Any]:
    """The training population in plain data: patient ranges and vocabularies, and per model (key -> its feature
    frame) each input's observed range, missing fraction and decile bins, and the mean missing fraction of a row.
    ``landmark_hours`` (key -> each row's landmark hour, for super-models) adds the bins at every landmark hour,
    since a super-model's inputs at 12 h and at 120 h differ by design."""
    patients = cohort.patients
    age = patients["age_years"].astype(float)
    models = {}
    for key, X in inputs.items():
        values = X.to_numpy(dtype=float)
        seen = ~np.isnan(values)
        models[key] = {
            "features": list(X.columns),
            "low": [float(np.nanmin(c)) if s.any() else None for c, s in zip(values.T, seen.T)],
            "high": [float(np.nanmax(c)) if s.any() else None for c, s in zip(values.T, seen.T)],
            "missing": [round(float(1 - s.mean()), 4) for s in seen.T],
            "row_missing_mean": round(float(1 - seen.mean()), 4),
            "bins": feature_bins(values),
        }
        hours = None if landmark_hours is None else landmark_hours.get(key)
        if hours is not None:
            hours = np.asarray(hours, dtype=float)
            models[key]["bins_by_landmark"] = {
                f"{h:g}": feature_bins(values[hours == h]) for h in np.unique(hours).tolist()
            }
    return {
        "infusions": int(len(patients)),
        "age_years": [float(age.min()), float(age.max())],
        "diagnosis": sorted(map(str, patients["diagnosis"].dropna().unique())),
        "product": sorted(map(str, patients["product"].dropna().unique())),
        "models": models,
    }


class Population:
    """A bundle's training population, prepared once for fast checks on the clinician's path."""

    def __init__(self, recorded: Mapping[str, Any] | None) -> None:
        self.recorded = dict(recorded or {})
        self.models = {}
        for key, model in self.recorded.get("models", {}).items():
            bounds = [np.array([np.nan if v is None else v for v in model[side]]) for side in ("low", "high")]
            self.models[key] = (model["features"], *bounds, float(model["row_missing_mean"]))

    def patient_flags(self, patient: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Flags for one infusion's patient fields (``age_years``, ``diagnosis``, ``product``)."""
        if not self.recorded:
            return []
        flags = []
        age = patient.get("age_years")
        low, high = self.recorded["age_years"]
        if age is not None and age == age and not low <= float(age) <= high:
            flags.append(
                {
                    "kind": "age",
                    "field": "age_years",
                    "value": float(age),
                    "expected": f"{low:g} to {high:g} years (the training population)",
                }
            )
        for field in ("diagnosis", "product"):
            value = patient.get(field)
            if value is not None and value == value and str(value) not in self.recorded[field]:
                flags.append(
                    {
                        "kind": f"unseen_{field}",
                        "field": field,
                        "value": str(value),
                        "expected": f"one of {self.recorded[field]} (the training population)",
                    }
                )
        return flags

    def input_flags(self, key: str, names: list[str], values: np.ndarray) -> list[dict[str, Any]]:
        """Flags for one model's inputs (rows of ``values``, or one row): most inputs missing, values beyond the
        training range. For many rows, each flag's ``value`` counts the rows it applies to."""
        if key not in self.models:
            return []
        features, low, high, missing_mean = self.models[key]
        if list(names) != list(features):
            return [
                {
                    "kind": "inputs",
                    "model_key": key,
                    "field": "features",
                    "expected": "the features the training population was recorded for",
                }
            ]
        rows = np.atleast_2d(values)
        flags = []
        missing = np.isnan(rows).mean(axis=1)
        mostly = (missing > MOSTLY_MISSING) & (missing > missing_mean + MISSING_MARGIN)
        if mostly.any():
            flags.append(
                {
                    "kind": "mostly_missing",
                    "model_key": key,
                    "field": "inputs",
                    "value": float(missing[0]) if rows.shape[0] == 1 else int(mostly.sum()),
                    "expected": f"about {missing_mean:.0%} of inputs missing, as in training",
                }
            )
        with np.errstate(invalid="ignore"):
            beyond = (rows < low) | (rows > high)
        if beyond.any():
            columns = np.flatnonzero(beyond.any(axis=0))
            # Quote each column's value from a row where that column itself is out of range (not the first
            # flagged row, whose value of this column may be in range).
            examples = [
                f"{features[i]}={rows[np.flatnonzero(beyond[:, i])[0], i]:.3g} (trained on "
                f"{low[i]:.3g} to {high[i]:.3g})"
                for i in columns[:3]
            ]
            flags.append(
                {
                    "kind": "beyond_training_range",
                    "model_key": key,
                    "field": "inputs",
                    "value": int(columns.size) if rows.shape[0] == 1 else int(beyond.any(axis=1).sum()),
                    "expected": "; ".join(examples),
                }
            )
        return flags

    def cohort_summary(self, cohort: Cohort) -> dict[str, int]:
        """How many infusions of a cohort each patient-level flag applies to (for ``evaluate``)."""
        counts: dict[str, int] = {}
        for patient in cohort.patients.to_dict(orient="records"):
            for flag in self.patient_flags(patient):
                counts[flag["kind"]] = counts.get(flag["kind"], 0) + 1
        return counts
