"""Who a model was trained on, and whether a patient is outside it: be loud, never silent.

A bundle records its training population (age range, diagnoses, products, and for each model the range and
missingness of every input). ``predict`` and ``evaluate`` compare a patient (or a cohort) with it and flag an
adult scored by a paediatric model, a product or diagnosis the model never saw, most inputs missing, or inputs
beyond anything seen in training. A flag does not stop a prediction: it says what the prediction is worth.

Missingness is compared like with like: only the inputs that can have a value by the hour scored count
(``features.spec.absent_by_design``: nothing after infusion is missing at hour 0, no CRS onset is not missing),
on both sides; training's missing fraction of those inputs is taken at the landmark hour trained at that is the
latest at or before the hour scored when the bundle records bins per landmark hour (a super-model asked at 40 h:
its training rows at 36 h), else over all its training rows.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from crsrisk.cohort.validated import Cohort
from crsrisk.errors import NotFoundError
from crsrisk.features.spec import absent_by_design, feature_info
from crsrisk.util.outputs import readable

MOSTLY_MISSING = 0.5  # flag when more than half of the inputs a model can have by the hour scored are missing ...
MISSING_MARGIN = 0.2  # ... and that is this much more than training's missing fraction of the same inputs
BEYOND = "beyond_training_range"  # the kind of a flag for an input beyond its training range
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


def _missing_of(bins: Mapping[str, Any]) -> np.ndarray:
    """Each input's missing fraction in training from its bins: the rows none of its bins counts."""
    rows = bins["rows"]
    return np.array([1 - sum(c) / rows if rows else np.nan for c in bins["counts"]], dtype=float)


def _latest_at_or_before(by_hour: Mapping[float, Any], hours: float) -> float | None:
    """The latest landmark hour with training bins at or before ``hours`` (None when there is none)."""
    return max((h for h in by_hour if h <= hours), default=None)


def training_population(
    cohort: Cohort, inputs: Mapping[str, pd.DataFrame], landmark_hours: Mapping[str, np.ndarray] | None = None
) -> dict[str, Any]:
    """The training population in plain data: patient ranges and vocabularies, and per model (key -> its feature
    frame) each input's observed range, missing fraction and decile bins.
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
    """A bundle's training population, prepared once for fast checks on the clinician's path.

    A flag is plain data (``kind``, ``field``, ``value`` and what training saw: ``low``/``high`` or ``seen``;
    input flags name their ``models``, and over many rows count them in ``rows``); ``summarise`` merges one
    patient's (or one cohort's) flags across models and ``flags_text`` says them in one line.
    """

    def __init__(self, recorded: Mapping[str, Any] | None) -> None:
        self.recorded = dict(recorded or {})
        self.models = {}
        for key, model in self.recorded.get("models", {}).items():
            bounds = [np.array([np.nan if v is None else v for v in model[side]]) for side in ("low", "high")]
            by_hour = {float(h): _missing_of(bins) for h, bins in (model.get("bins_by_landmark") or {}).items()}
            self.models[key] = (model["features"], *bounds, np.array(model["missing"], dtype=float), by_hour)

    def patient_flags(self, patient: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Flags for one infusion's patient fields (``age_years``, ``diagnosis``, ``product``)."""
        if not self.recorded:
            return []
        flags: list[dict[str, Any]] = []
        age = patient.get("age_years")
        low, high = self.recorded["age_years"]
        if age is not None and age == age and not low <= float(age) <= high:
            flags.append({"kind": "age", "field": "age_years", "value": float(age), "low": low, "high": high})
        for field in ("diagnosis", "product"):
            value = patient.get(field)
            if value is not None and value == value and str(value) not in self.recorded[field]:
                flags.append(
                    {"kind": f"unseen_{field}", "field": field, "value": str(value), "seen": self.recorded[field]}
                )
        return flags

    def input_flags(
        self, key: str, names: list[str], values: np.ndarray, hours: float | np.ndarray, task: str
    ) -> list[dict[str, Any]]:
        """Flags for one model's inputs (one row, or many) scored at landmark ``hours`` (one per row) for ``task``
        (the question it answers, in words): most inputs missing, compared like with like (the module's rule),
        and each input with a value beyond its training range (only those), with the range. Over many rows a flag
        counts its ``rows`` and quotes the value farthest out (the highest above the range, else the lowest below
        it; for missingness the row most missing, with its hour and training's fraction)."""
        if key not in self.models:
            return []
        features, low, high, trained, by_hour = self.models[key]
        about = {"models": [key], "tasks": [task]}
        if list(names) != list(features):
            return [{"kind": "inputs", "field": "features"} | about]
        rows, single = np.atleast_2d(values), np.ndim(values) == 1
        at = np.broadcast_to(np.asarray(hours, dtype=float), rows.shape[:1])

        def counted(where: np.ndarray) -> dict[str, int]:
            return {} if single else {"rows": int(where.sum())}

        flags = []
        distinct, where = np.unique(at, return_inverse=True)
        trained_at = [_latest_at_or_before(by_hour, h) for h in distinct.tolist()]
        can = np.array([[not absent_by_design(n, h) for n in features] for h in distinct.tolist()])[where.ravel()]
        reference = np.array([trained if t is None else by_hour[t] for t in trained_at])[where.ravel()]
        counts = np.maximum(can.sum(axis=1), 1)
        missing = (np.isnan(rows) & can).sum(axis=1) / counts
        training = (reference * can).sum(axis=1) / counts
        mostly = (missing > MOSTLY_MISSING) & (missing > training + MISSING_MARGIN)
        if mostly.any():
            worst = int(np.flatnonzero(mostly)[np.argmax(missing[mostly])])
            found = {"kind": "mostly_missing", "field": "inputs", "value": float(missing[worst])}
            flags.append(
                found
                | {"training": round(float(training[worst]), 4), "landmark_hours": float(at[worst])}
                | {"training_hours": trained_at[int(where.ravel()[worst])]}
                | about
                | counted(mostly)
            )
        with np.errstate(invalid="ignore"):
            above, below = rows > high, rows < low
        for i in np.flatnonzero((above | below).any(axis=0)).tolist():
            for side, beyond in (("above", above[:, i]), ("below", below[:, i])):
                if beyond.any():
                    column = rows[beyond, i]
                    value = float(column.max() if side == "above" else column.min())
                    flags.append(
                        {"kind": BEYOND, "field": features[i], "value": value}
                        | {"low": float(low[i]), "high": float(high[i])}
                        | about
                        | counted(beyond)
                    )
        return flags

    def rows_beyond(self, key: str, values: np.ndarray) -> int:
        """How many rows of one model's inputs (in its feature order) hold a value beyond the training range."""
        if key not in self.models:
            return 0
        _, low, high, _, _ = self.models[key]
        with np.errstate(invalid="ignore"):
            return int(((values < low) | (values > high)).any(axis=1).sum())

    def cohort_summary(self, cohort: Cohort) -> dict[str, int]:
        """How many infusions of a cohort each patient-level flag applies to (for ``evaluate``)."""
        counts: dict[str, int] = {}
        for patient in cohort.patients.to_dict(orient="records"):
            for flag in self.patient_flags(patient):
                counts[flag["kind"]] = counts.get(flag["kind"], 0) + 1
        return counts


def _side(flag: Mapping[str, Any]) -> str:
    """Which side of its training range a ``beyond_training_range`` flag's value lies."""
    return "above" if flag["value"] > flag["high"] else "below"


def summarise(flags: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One patient's (or one cohort's) flags merged across models: each finding once, naming every model it
    concerns (a patient field flagged as such is not flagged again as a model input). A value beyond the range is merged with the same input's other models on the same side of their
    ranges, quoting the range they span (the value is beyond it too) and, over many rows, the value farthest out
    and the rows of all of them; per patient, only equal values are merged."""
    merged: dict[tuple, dict[str, Any]] = {}
    patient_fields = {flag["field"] for flag in flags if "models" not in flag}
    for flag in flags:
        if "models" not in flag:
            merged[(flag["kind"], flag["field"])] = dict(flag)
            continue
        if flag["field"] in patient_fields:  # an adult's age is said once, as the patient's, not again as an input
            continue
        many = "rows" in flag
        side = _side(flag) if flag["kind"] == BEYOND else ""
        key = (flag["kind"], flag["field"], side, None if many else flag.get("value"))
        if key not in merged:
            merged[key] = dict(flag, models=list(flag["models"]), tasks=list(flag["tasks"]))
            continue
        seen = merged[key]
        seen["models"] += [m for m in flag["models"] if m not in seen["models"]]
        seen["tasks"] += [t for t in flag["tasks"] if t not in seen["tasks"]]
        if many:
            seen["rows"] += flag["rows"]
        if flag["kind"] == BEYOND:
            seen["low"], seen["high"] = min(seen["low"], flag["low"]), max(seen["high"], flag["high"])
            seen["value"] = (max if _side(flag) == "above" else min)(seen["value"], flag["value"])
        elif flag["kind"] == "mostly_missing" and flag["value"] > seen["value"]:
            seen.update({k: flag[k] for k in ("value", "training", "landmark_hours", "training_hours")})
    return list(merged.values())


def _beyond(value: float, low: float, high: float) -> tuple[str, str, str]:
    """A value outside ``low``-``high`` and the range, to 3 significant figures, or more where 3 would print the
    value equal to the bound it lies beyond (26.04 beyond 26)."""
    above = value > high
    bound = high if above else low
    for digits in range(3, 16):
        found, limit = readable(value, digits), readable(bound, digits)
        if found != limit:
            break
    other = readable(low if above else high)
    return (found, other, limit) if above else (found, limit, other)


def _beyond_text(flag: Mapping[str, Any], rows: str) -> str:
    """An input beyond its training range in the model card's words (``features.spec``): its label and unit, a
    yes/no input as such (``temperature not measured since infusion: yes, always no in training``); a field the
    features do not describe by its name."""
    try:
        info = feature_info(flag["field"])
    except NotFoundError:
        info = None
    if info is not None and info.unit.startswith("1 = "):
        found, trained = ("yes", "no") if flag["value"] >= 0.5 else ("no", "yes")
        return f"found {info.label}: {found}{rows}, always {trained} in training"
    found, low, high = _beyond(flag["value"], flag["low"], flag["high"])
    extreme = ("up to " if _side(flag) == "above" else "down to ") if rows else ""
    if info is None:
        return f"found {flag['field']} {extreme}{found}{rows}, trained on {low} to {high}"
    return f"found {info.label} at {extreme}{found} {info.unit}{rows}, trained on {low} to {high}"


def flag_text(flag: Mapping[str, Any], models: Sequence[str] = ()) -> str:
    """One flag as a finding: what was found and what training saw, naming the questions it concerns in words when
    its models are not all of ``models`` (the models that answered)."""
    kind, value = flag["kind"], flag.get("value", "")
    rows = f" in {flag['rows']} row(s)" if "rows" in flag else ""
    if kind == "age":
        text = "found age {} years, trained on {} to {} years".format(*_beyond(value, flag["low"], flag["high"]))
    elif kind.startswith("unseen_"):
        text = f"found {flag['field']} {value}, trained on {', '.join(flag['seen']) or 'none recorded'} only"
    elif kind == "mostly_missing":
        by = "the hour scored" if rows else f"hour {flag['landmark_hours']:g}"
        trained = flag["training_hours"]
        where = "over all its training rows" if trained is None else f"at hour {trained:g}"
        text = (
            f"found {'up to ' if rows else ''}{value:.0%} of the inputs that can have a value by {by} missing{rows}, "
            f"trained with about {flag['training']:.0%} of the same inputs missing {where}"
        )
    elif kind == BEYOND:
        text = _beyond_text(flag, rows)
    else:
        text = "found inputs other than those the training population was recorded for"
    concerns = flag.get("models", [])
    if concerns and set(concerns) != set(models):
        text += f" (for {'; '.join(flag['tasks'])})"
    return text


def flags_text(flags: list[dict[str, Any]], models: Sequence[str] = ()) -> str:
    """Every flag of one patient (or one cohort) in one line."""
    return "; ".join(flag_text(flag, models) for flag in flags)
