"""One patient at one hour -> calibrated risk, band, and the reasons (exact tree SHAP).

Imports neither mlflow nor shap: XGBoost's own ``pred_contribs`` is exact tree SHAP, and attributions plus
the base value add up to the booster's raw score (log-odds), which the calibrator maps to the probability.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from functools import cache, cached_property
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import xgboost as xgb

from crsrisk.bundle.format import TaskModel, model_ready
from crsrisk.bundle.store import Bundle
from crsrisk.cohort.arrays import CohortArrays
from crsrisk.features.build import TrendEnds, feature_matrix, trend_ends
from crsrisk.features.phrases import Clock, phrase
from crsrisk.features.spec import absent_by_design, feature_info
from crsrisk.cohort.population import summarise
from crsrisk.cohort.record import read_record, validate_record
from crsrisk.schema.arguments import parse_count, parse_hours
from crsrisk.landmarks import FirstEvent, Grid, Hours
from crsrisk.sources.fhir import is_fhir_bundle, record_from_fhir

from crsrisk.scoring.audited import audit_patient
from crsrisk.scoring.load import load_model
from crsrisk.scoring.plan import Plan, plan_at
from crsrisk.scoring.reasons import EAGER_REASONS, Reasons


class TaskPrediction(Mapping[str, Any]):
    """One task's calibrated risk at one hour and its exact SHAP attributions.

    Reads like the documented dict (``p["probability"]``, ``p["contributions"]``); the per-feature
    contribution records (value, unit, phrase) are rendered on first access, the largest ``EAGER_REASONS`` then
    and the rest when read (``Reasons``), since a caller that wants only the risk should not pay for 140
    sentences, nor one that shows five reasons for the other 135. ``trends`` is asked then, once, for each analyte's
    ``TrendEnds`` at this landmark, so a trend reads as what the values did (none given: as a fold change).
    """

    values: np.ndarray  # type: ignore[assignment]  # the model's inputs (shadows Mapping.values, as before)

    def __init__(
        self,
        model: TaskModel,
        landmark_hours: float,
        values: np.ndarray,
        raw: float,
        contributions: np.ndarray,
        top: int | None = None,
        trends: Callable[[], Mapping[str, TrendEnds]] = dict,
        now: float | None = None,
    ) -> None:
        self.model = model
        self.clock = Clock(
            landmark_hours if now is None else now, landmark_hours, _landmark_name(model, landmark_hours)
        )
        self.values = values  # the model's inputs, in model.feature_names order
        self.shap = contributions[:-1]  # they add up, with the base value, to ``raw`` (to float32 rounding)
        base = float(contributions[-1])
        probability = float(model.calibrator.transform(raw))  # type: ignore[arg-type]  # elementwise: a float works
        definition = model.definition
        self._top = top
        self._trends = trends
        self._fields = {
            "task": model.task,
            "landmark_hours": landmark_hours,
            "landmark": _point_label(model, landmark_hours),
            "horizon_hours": definition.horizon(landmark_hours),
            "question": definition.question(landmark_hours),
            "probability": probability,
            "band": model.band(probability),
            "raw_score": raw,
            "base_value": base,
            "label_rule_version": model.label_rule_version,
            "model_key": model.key,
        }

    def __getitem__(self, key: str) -> Any:
        if key == "missing_inputs":
            return self.missing()
        return self.contributions if key == "contributions" else self._fields[key]

    def __iter__(self) -> Iterator[str]:
        return iter((*self._fields, "missing_inputs", "contributions"))

    def __len__(self) -> int:
        return len(self._fields) + 2

    @cached_property
    def order(self) -> np.ndarray:
        """Feature positions, largest |SHAP| first (the ``top`` largest when ``top`` is set)."""
        return np.argsort(-np.abs(self.shap), kind="stable")[: self._top or None]

    @cached_property
    def contributions(self) -> Reasons:
        """Every feature (or the ``top`` largest), largest |SHAP| first, with value, unit and a phrase: the first
        ``EAGER_REASONS`` rendered now, the rest when first read (``Reasons``)."""
        return Reasons(self._render, len(self.order))

    @cached_property
    def row(self) -> dict[str, float]:
        """The model's inputs by name, so a phrase can read the patient's other inputs (which product they have)."""
        return dict(zip(self.model.feature_names, self.values.tolist()))

    def _render(self, start: int, stop: int) -> list[dict[str, Any]]:
        """The contribution records at ranks ``start`` to ``stop``."""
        names, values, shap, trends = self.model.feature_names, self.values, self.shap, self._trends()
        out = []
        for i in self.order[start:stop].tolist():
            info, value, effect = feature_info(names[i]), float(values[i]), float(shap[i])
            out.append(
                {
                    "feature": names[i],
                    "label": info.label,
                    "value": None if math.isnan(value) else value,
                    "unit": info.unit,
                    "shap": effect,
                    "direction": "raises" if effect > 0 else "lowers" if effect < 0 else "none",
                    "phrase": phrase(names[i], value, effect, trends, self.clock, self.row),
                }
            )
        return out

    def missing(self) -> list[str]:
        """The model's inputs this patient lacks at its landmark: not those whose absence is by design (no CRS
        yet, or an input about the time after infusion at a landmark not after it)."""
        names, landmark = self.model.feature_names, self._fields["landmark_hours"]
        return [
            names[i] for i in np.flatnonzero(np.isnan(self.values)).tolist() if not absent_by_design(names[i], landmark)
        ]

    def interval(self) -> list[float] | None:
        """The 95 % interval of the probability over the calibrator's bootstrap refits (None when it has none)."""
        return self.model.calibrator.interval(self._fields["raw_score"])

    def to_dict(self) -> dict[str, Any]:
        """The documented plain-JSON form, with the inputs it lacked."""
        return dict(self)


def _point_label(model: TaskModel, hours: float) -> str:
    """The landmark a prediction was made at: the model's own (``36h``, ``first_tocilizumab``) or, for a
    super-model, the hour it was asked at (``40h``)."""
    return Hours(hours).label if isinstance(model.landmark, Grid) else model.landmark.label


def _landmark_name(model: TaskModel, hours: float) -> str:
    """The landmark a model reads the record at, in words: ``the first tocilizumab dose``, ``hour 36``."""
    return (model.landmark if isinstance(model.landmark, FirstEvent) else Hours(hours)).words.removeprefix("at ")


def _point_labels(model: TaskModel, hours: np.ndarray) -> np.ndarray:
    """``_point_label`` of many rows, formatted once per distinct hour (a cohort has few)."""
    distinct, where = np.unique(hours, return_inverse=True)
    return np.array([_point_label(model, h) for h in distinct.tolist()], dtype=object)[where.ravel()]


@dataclass
class PredictionResult:
    """Predictions for one patient at one hour, with reasons; ``to_dict`` is the documented JSON shape."""

    now_hours: float
    predictions: list[TaskPrediction]
    model: dict[str, Any]
    already_occurred: list[dict[str, Any]] = field(default_factory=list)
    not_applicable: list[dict[str, str]] = field(default_factory=list)
    population_flags: list[dict[str, Any]] = field(default_factory=list)  # outside the training population
    inputs: CohortArrays | None = field(default=None, repr=False)  # the validated record, for the audit record
    audit_record: dict[str, Any] | None = None  # the audit log record's seq and hash, when audited

    @cached_property
    def missing_inputs(self) -> list[str]:
        """Inputs any of the used models lacks (allowed; listed); each prediction's own are in its
        ``missing_inputs``."""
        return sorted({name for p in self.predictions for name in p.missing()})

    def why_nothing_scored(self) -> str:
        """Why no task is scored at this hour, naming the hour and each task's reason (for when none is)."""
        reasons = [f"{o['task']} {o['text']}" for o in self.already_occurred]
        reasons += [f"{s['task']}: {s['reason']}" for s in self.not_applicable]
        return f"no task is scored at hour {self.now_hours:g}: " + "; ".join(reasons)

    def audit_outputs(self) -> list[dict[str, Any]]:
        """What the audit record keeps of this answer: every prediction with the SHAP values of the reasons given
        with it (the largest ``EAGER_REASONS``) and the sum of the others (``shap_other``: base value + these +
        it = raw score), the outcomes already recorded and the population flags. Every other SHAP value follows
        from the model and the inputs (the record's ``model_sha256`` and ``input_fingerprint``)."""
        outputs: list[dict[str, Any]] = []
        for p in self.predictions:
            shown = p.order[:EAGER_REASONS]
            fields = ("task", "landmark_hours", "horizon_hours", "probability", "band", "raw_score", "base_value")
            outputs.append(
                {k: p[k] for k in fields}
                | {"shap": {p.model.feature_names[i]: float(p.shap[i]) for i in shown.tolist()}}
                | {"shap_other": float(p.shap.sum() - p.shap[shown].sum())}
            )
        outputs += [{"task": o["task"], "already_occurred_hours": o["hours"]} for o in self.already_occurred]
        return outputs + [{"population_flag": flag} for flag in self.population_flags]

    def to_dict(self) -> dict[str, Any]:
        """``{"now_hours", "predictions", "already_occurred", "not_applicable", "population_flags",
        "missing_inputs", "model"}``."""
        return {
            "now_hours": self.now_hours,
            "predictions": [p.to_dict() for p in self.predictions],
            "already_occurred": self.already_occurred,
            "not_applicable": self.not_applicable,
            "population_flags": self.population_flags,
            "missing_inputs": self.missing_inputs,
            "model": self.model,
        }


def default_now(arrays: CohortArrays) -> float:
    """The first whole hour after the latest measurement or event, so that the latest is known and the hour
    reads exactly as it is (a record at 47.2 h: hour 48); never before infusion (0)."""
    times = np.concatenate([arrays.measurements.hours, arrays.events.hours])
    return float(math.floor(times.max()) + 1) if times.size and times.max() >= 0 else 0.0


def default_now_words(now: float) -> str:
    """How ``default_now`` chose the hour ``now``, to be said beside it."""
    return (
        "infusion, since nothing is recorded after it" if now == 0 else "the first whole hour after the latest record"
    )


def score_plans(plans: list[Plan], arrays: CohortArrays, top: int | None = None) -> list[list[TaskPrediction]]:
    """The predictions of each plan (one patient, many hours): one feature matrix for every distinct landmark
    hour, one exact-SHAP call per model over all its rows (single-threaded: one-row OpenMP calls spin); every
    hour's trend ends at once, when a first prediction's reasons are rendered."""
    hours = sorted({h for p in plans for h in p.hours})
    codes, landmarks = np.zeros(len(hours), dtype=np.int64), np.array(hours, dtype=np.float64)
    matrix = model_ready(feature_matrix(arrays, codes, landmarks, window=True))  # DMatrix slices skip margin()'s clip
    every_trend = cache(lambda: trend_ends(arrays, codes, landmarks))
    row_of = {h: i for i, h in enumerate(hours)}
    requests: dict[str, list[tuple[int, int, float]]] = {}  # model key -> (plan, slot, hour)
    for i, p in enumerate(plans):
        for slot, (model, h) in enumerate(p.chosen):
            requests.setdefault(model.key, []).append((i, slot, h))
    out: list[list[TaskPrediction | None]] = [[None] * len(p.chosen) for p in plans]
    groups: dict[bytes, xgb.DMatrix] = {}  # one DMatrix per column set, over every row: building one costs more
    slices: dict[tuple[bytes, bytes], xgb.DMatrix] = {}  # than the trees; models on fewer rows take a slice
    for key, wanted in requests.items():
        model = next(m for m, _ in plans[wanted[0][0]].chosen if m.key == key)
        rows = np.array([row_of[h] for _, _, h in wanted])
        columns = model.columns.tobytes()
        if columns not in groups:
            groups[columns] = xgb.DMatrix(matrix[:, model.columns], missing=np.nan, nthread=1)
        if rows.size == len(hours) and np.array_equal(rows, np.arange(len(hours))):
            dmatrix = groups[columns]
        else:
            if (columns, rows.tobytes()) not in slices:
                slices[(columns, rows.tobytes())] = groups[columns].slice(rows.tolist())
            dmatrix = slices[(columns, rows.tobytes())]
        values = matrix[np.ix_(rows, model.columns)]
        contributions, raw = model.contributions(dmatrix), model.margin(dmatrix)
        for j, (i, slot, h) in enumerate(wanted):
            out[i][slot] = TaskPrediction(
                model,
                h,
                values[j],
                float(raw[j]),
                contributions[j],
                top,
                lambda row=row_of[h]: every_trend()[row],  # type: ignore[misc]  # bound default
                plans[i].now,
            )
    return out  # type: ignore[return-value]


def population_flags(bundle: Bundle, arrays: CohortArrays, predictions: list[TaskPrediction]) -> list[dict[str, Any]]:
    """Patient 0's population flags, each finding once, not once per model (``summarise``): its patient fields
    and each model's inputs at the landmark hour they were read at, one row per model for ``predict``, or over a
    trajectory's points the rows of each model (each flag then counting its ``rows``)."""
    population = bundle.population
    flags = population.patient_flags({name: values[0] for name, values in arrays.patients.items()})
    rows: dict[str, tuple[TaskModel, list[np.ndarray], list[float]]] = {}
    for p in predictions:
        model, values, hours = rows.setdefault(p.model.key, (p.model, [], []))
        values.append(p.values)
        hours.append(p["landmark_hours"])
    for model, values, hours in rows.values():
        one = len(predictions) == len(rows)
        inputs, at = (values[0], hours[0]) if one else (np.vstack(values), np.array(hours))
        flags += population.input_flags(model.key, model.feature_names, inputs, at, model.words)
    return summarise(flags)


def predict(
    patient: Mapping[str, Any] | str | os.PathLike,
    model: str | os.PathLike | Bundle | None = None,
    now_hours: float | None = None,
    audit: bool = True,
    audit_log: str | os.PathLike | None = None,
    top: int | None = None,
) -> PredictionResult:
    """Calibrated risk for every task that applies to this patient at hour ``now_hours``, with every feature's
    SHAP reason, from everything recorded strictly before that hour.

    ``now_hours`` defaults to the first whole hour after the latest measurement or event (0 before infusion).
    Each prediction says what it answers (``question``, ``horizon_hours``); a task whose outcome already happened
    is listed in ``already_occurred``, never scored. ``top`` keeps only the largest contributions (all by default,
    so they add up to the raw score). For many calls, pass a bundle from ``load_model`` so its files are verified once.
    """
    top = parse_count(top, "top")
    bundle = load_model(model)
    if is_fhir_bundle(patient := read_record(patient)):  # a FHIR R4 Bundle for one patient is read as its record
        patient = record_from_fhir(patient)
    arrays = validate_record(patient)
    now = default_now(arrays) if now_hours is None else parse_hours(now_hours)
    chosen = plan_at(bundle, arrays, now).patient(0)
    predictions = score_plans([chosen], arrays, top)[0]
    flags = population_flags(bundle, arrays, predictions)
    result = PredictionResult(
        now, predictions, bundle.identity.to_dict(), chosen.already_occurred, chosen.not_applicable, flags, arrays
    )
    if audit:
        stored = audit_patient(arrays, result.model, result.audit_outputs(), audit_log, now)
        result.audit_record = {"seq": stored["seq"], "hash": stored["hash"]}
    return result
