"""The clinician's path: one patient (or a cohort) -> calibrated risk, band, and the reasons (exact tree SHAP).

Imports neither mlflow nor shap: XGBoost's own ``pred_contribs`` is exact tree SHAP, and attributions plus
the base value add up to the booster's raw score (log-odds), which the calibrator maps to the probability.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import pandas as pd
import xgboost as xgb

from crsrisk.bundle.format import TaskModel
from crsrisk.bundle.store import Bundle, load_bundle
from crsrisk.cohort.validated import Cohort
from crsrisk.cohort.arrays import CohortArrays, cohort_arrays
from crsrisk.features.build import feature_matrix
from crsrisk.features.spec import feature_info
from crsrisk.cohort.record import canonical_record, validate_record
from crsrisk.tasks import FIRST_TOCILIZUMAB, landmark_label
from crsrisk.tasks.labels import at_risk

DEFAULT_MODEL = Path(__file__).resolve().parent / "models_data" / "default"


def load_model(model: str | os.PathLike | Bundle | None = None) -> Bundle:
    """A verified, loaded bundle from a folder, an MLflow ``models:/`` URI, or the shipped default (None).

    Load once and pass the bundle to ``predict`` when scoring many patients: its files are hashed once."""
    if isinstance(model, Bundle):
        return model
    if model is None:
        if not (DEFAULT_MODEL / "manifest.json").exists():
            raise FileNotFoundError(f"no default model at {DEFAULT_MODEL}: run `python models/train_default.py` "
                                    "from the repository, or pass model=PATH")
        return load_bundle(DEFAULT_MODEL)
    text = str(model)
    if text.startswith(("models:/", "runs:/")):
        import mlflow  # only for registry URIs: the file path never needs it

        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=text))
        manifests = sorted(local.rglob("manifest.json"))
        if not manifests:
            raise FileNotFoundError(f"{text}: no crsrisk bundle inside the MLflow model")
        return load_bundle(manifests[0].parent)
    return load_bundle(text)


def _value_text(name: str, value: float) -> str:
    info = feature_info(name)
    if math.isnan(value):
        return "(not measured)"
    if info.unit.startswith("1 = "):
        return "yes" if value >= 0.5 else "no"
    if abs(value) >= 100 or value == int(value):
        number = f"{value:,.0f}"
    else:
        number = f"{value:.1f}" if abs(value) >= 1 else f"{value:.3g}"
    return f"{number} {info.unit}".strip()


def _phrase(name: str, value: float, shap: float) -> str:
    """A short clinical sentence, e.g. "IL-6, latest value 2,400 pg/mL raised the risk"."""
    effect = "raised" if shap > 0 else ("lowered" if shap < 0 else "did not change")
    return f"{feature_info(name).label} {_value_text(name, value)} {effect} the risk"


def explain_rows(model: TaskModel, X: np.ndarray) -> np.ndarray:
    """Exact tree SHAP: one column per feature plus the base value last (rows sum to the raw score)."""
    return model.booster.predict(xgb.DMatrix(X, missing=np.nan), pred_contribs=True)


class TaskPrediction(Mapping[str, Any]):
    """One task's calibrated risk and its exact SHAP attributions.

    Reads like the documented dict (``p["probability"]``, ``p["contributions"]``); the per-feature
    contribution records (value, unit, phrase) are rendered on first access, since a caller that wants only
    the risk should not pay for 140 sentences.
    """

    def __init__(self, model: TaskModel, landmark_hours: float, values: np.ndarray, contributions: np.ndarray,
                 top: int | None = None) -> None:
        self.model = model
        self.values = values  # the model's inputs, in model.feature_names order
        self.shap = contributions[:-1]
        raw, base = float(contributions.sum()), float(contributions[-1])
        probability = float(model.calibrator.transform(raw))
        self._top = top
        self._fields = {"task": model.task, "landmark_hours": landmark_hours, "landmark": landmark_label(model.landmark),
                        "probability": probability, "band": model.band(probability), "raw_score": raw,
                        "base_value": base, "label_rule_version": model.label_rule_version}

    def __getitem__(self, key: str) -> Any:
        return self.contributions if key == "contributions" else self._fields[key]

    def __iter__(self) -> Iterator[str]:
        return iter((*self._fields, "contributions"))

    def __len__(self) -> int:
        return len(self._fields) + 1

    @cached_property
    def contributions(self) -> list[dict[str, Any]]:
        """Every feature (or the ``top`` largest), largest |SHAP| first, with value, unit and a phrase."""
        names, values, shap = self.model.feature_names, self.values, self.shap
        out = []
        for i in np.argsort(-np.abs(shap), kind="stable")[: self._top or None].tolist():
            info, value, effect = feature_info(names[i]), float(values[i]), float(shap[i])
            out.append({"feature": names[i], "label": info.label, "value": None if math.isnan(value) else value,
                        "unit": info.unit, "shap": effect,
                        "direction": "raises" if effect > 0 else "lowers" if effect < 0 else "none",
                        "phrase": _phrase(names[i], value, effect)})
        return out

    def missing(self) -> list[str]:
        """The model's inputs that were not available for this patient."""
        return [self.model.feature_names[i] for i in np.flatnonzero(np.isnan(self.values)).tolist()]

    def to_dict(self) -> dict[str, Any]:
        """The documented plain-JSON form."""
        return {**self._fields, "contributions": self.contributions}


@dataclass
class PredictionResult:
    """Predictions for one patient at one time, with reasons; ``to_dict`` is the documented JSON shape."""

    predictions: list[TaskPrediction]
    model: dict[str, Any]
    not_applicable: list[dict[str, str]] = field(default_factory=list)

    @cached_property
    def missing_inputs(self) -> list[str]:
        """Inputs any of the used models would have read but the record does not give (allowed; listed)."""
        return sorted({name for p in self.predictions for name in p.missing()})

    def to_dict(self) -> dict[str, Any]:
        """``{"predictions": [...], "missing_inputs": [...], "model": {...}, "not_applicable": [...]}``."""
        return {"predictions": [p.to_dict() for p in self.predictions], "missing_inputs": self.missing_inputs,
                "model": self.model, "not_applicable": self.not_applicable}


def _choose(bundle: Bundle, task: str, arrays: CohortArrays, now: float) -> tuple[TaskModel | None, float, str]:
    """The model at the latest landmark not after ``now`` whose risk set holds the patient, or why none."""
    models = bundle.for_task(task)
    definition = models[0].definition
    if definition.kind == "toci_refractory":
        codes, times = at_risk(arrays, definition, FIRST_TOCILIZUMAB)
        if not codes.size or times[0] > now:
            return None, math.nan, "no tocilizumab given yet"
        return models[0], float(times[0]), ""
    usable = [m for m in models if float(m.landmark) <= now]
    if not usable:
        return None, math.nan, f"no landmark at or before {now:g} h"
    chosen = max(usable, key=lambda m: float(m.landmark))
    if not at_risk(arrays, chosen.definition, chosen.landmark)[0].size:
        return None, math.nan, (f"not in the risk set at {float(chosen.landmark):g} h "
                                f"({definition.grade_event} >= {definition.grade_threshold} already recorded)")
    return chosen, float(chosen.landmark), ""


def _model_info(bundle: Bundle) -> dict[str, Any]:
    meta = bundle.metadata
    return {"path": str(bundle.path), "bundle_sha256": bundle.digest, "crsrisk_version": meta.get("crsrisk_version"),
            "created": meta.get("created"), "synthetic": bool(meta.get("synthetic", True)),
            "not_for_clinical_use": bool(meta.get("not_for_clinical_use", True)),
            "training_cohort_fingerprint": meta.get("training_cohort_fingerprint")}


def _now(arrays: CohortArrays) -> float:
    """The latest measurement or event time, and never before infusion (0)."""
    times = np.concatenate([arrays.measurements.hours, arrays.events.hours, [0.0]])
    return float(times.max())


def predict(patient: Mapping[str, Any] | str | os.PathLike, model: str | os.PathLike | Bundle | None = None,
            now_hours: float | None = None, audit: bool = True, audit_log: str | os.PathLike | None = None,
            top: int | None = None) -> PredictionResult:
    """Calibrated risk for every task that applies to this patient now, with every feature's SHAP reason.

    ``now_hours`` defaults to the latest measurement or event time (0 before infusion). ``top`` keeps only
    the largest contributions in the result (all by default, so they add up to the raw score). For many
    calls, pass a bundle from ``load_model`` so its files are verified once.
    """
    bundle = load_model(model)
    arrays = validate_record(patient)
    now = float(now_hours) if now_hours is not None else _now(arrays)
    chosen, skipped = [], []
    for task in bundle.tasks:
        task_model, landmark, reason = _choose(bundle, task, arrays, now)
        if task_model is None:
            skipped.append({"task": task, "reason": reason})
        else:
            chosen.append((task_model, landmark))
    landmarks = sorted({landmark for _, landmark in chosen})  # tasks at the same landmark share one feature row
    matrix = feature_matrix(arrays, np.zeros(len(landmarks), dtype=np.int64), np.array(landmarks), window=True)
    inputs: dict[tuple[float, bytes], xgb.DMatrix] = {}  # ... and one DMatrix when they read the same columns
    predictions = []
    for task_model, landmark in chosen:
        values = matrix[landmarks.index(landmark), task_model.columns]
        key = (landmark, task_model.columns.tobytes())
        if key not in inputs:
            inputs[key] = xgb.DMatrix(values[np.newaxis, :], missing=np.nan, nthread=1)
        contributions = task_model.row_booster.predict(inputs[key], pred_contribs=True)[0]
        predictions.append(TaskPrediction(task_model, landmark, values, contributions, top))
    result = PredictionResult(predictions, _model_info(bundle), skipped)
    if audit:
        _audit(result, arrays, audit_log)
    return result


def _audit(result: PredictionResult, arrays: CohortArrays, path: str | os.PathLike | None) -> None:
    from crsrisk.audit.log import AuditLog, prediction_record

    log = AuditLog(path)
    outputs = [{k: p[k] for k in ("task", "landmark_hours", "probability", "band", "raw_score", "base_value")}
               | {"shap": dict(zip(p.model.feature_names, p.shap.tolist()))} for p in result.predictions]
    inputs = canonical_record(arrays)
    fingerprint = hashlib.sha256(json.dumps(inputs, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    log.append(prediction_record(log, result.model, str(arrays.patient_ids[0]), fingerprint, outputs, inputs))


def _model_inputs(arrays: CohortArrays, bundle: Bundle) -> Iterator[tuple[TaskModel, np.ndarray, np.ndarray, np.ndarray]]:
    """Each model with its risk set (patient codes, landmark hours) and input matrix, all cut from one feature
    matrix built once over every distinct (patient, landmark) pair (severe_crs and icans share landmarks)."""
    risk = {key: at_risk(arrays, m.definition, m.landmark) for key, m in bundle.models.items()}
    pairs = np.column_stack([np.concatenate([codes for codes, _ in risk.values()]).astype(np.float64),
                             np.concatenate([hours for _, hours in risk.values()])])
    unique, inverse = np.unique(pairs, axis=0, return_inverse=True)
    matrix = feature_matrix(arrays, unique[:, 0].astype(np.int64), unique[:, 1], window=True)
    inverse, start = inverse.ravel(), 0
    for key, task_model in bundle.models.items():
        codes, hours = risk[key]
        rows = inverse[start:start + codes.size]
        start += codes.size
        yield task_model, codes, hours, matrix[np.ix_(rows, task_model.columns)]


@dataclass
class CohortAttributions:
    """Exact SHAP values of one model over a cohort's risk set."""

    model: TaskModel
    X: pd.DataFrame
    shap: np.ndarray  # rows x features
    base: np.ndarray

    def importance(self) -> pd.Series:
        """Mean |SHAP| per feature, largest first."""
        return pd.Series(np.abs(self.shap).mean(axis=0), index=self.X.columns).sort_values(ascending=False)


def cohort_attributions(cohort: Cohort, model: str | os.PathLike | Bundle | None = None) -> dict[str, CohortAttributions]:
    """Exact SHAP values of every bundled model over its risk set in the cohort (models nobody is at risk
    for are left out); features are built once for every distinct (infusion, landmark) pair."""
    bundle = load_model(model)
    arrays = cohort_arrays(cohort)
    out = {}
    for task_model, codes, _, X in _model_inputs(arrays, bundle):
        if codes.size:
            contributions = explain_rows(task_model, X)
            frame = pd.DataFrame(X, index=pd.Index(arrays.patient_ids[codes], name="patient_id"),
                                 columns=task_model.feature_names)
            out[task_model.key] = CohortAttributions(task_model, frame, contributions[:, :-1], contributions[:, -1])
    return out


SCORE_COLUMNS = ["patient_id", "task", "landmark_hours", "landmark", "probability", "band", "raw_score"]


def predict_cohort(cohort: Cohort, model: str | os.PathLike | Bundle | None = None) -> pd.DataFrame:
    """Score every infusion in each task's risk set at each landmark: one row per infusion, task and landmark
    (``SCORE_COLUMNS``). Features are built once for every distinct (infusion, landmark) pair."""
    bundle = load_model(model)
    arrays = cohort_arrays(cohort)
    frames = []
    for task_model, codes, hours, X in _model_inputs(arrays, bundle):
        if not codes.size:
            continue
        raw = task_model.booster.inplace_predict(X, predict_type="margin", missing=np.nan)
        probability = task_model.calibrator.transform(raw)
        frames.append(pd.DataFrame({"patient_id": arrays.patient_ids[codes].astype(str), "task": task_model.task,
                                    "landmark_hours": hours, "landmark": landmark_label(task_model.landmark),
                                    "probability": probability, "band": task_model.band(probability),
                                    "raw_score": raw}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=SCORE_COLUMNS)
