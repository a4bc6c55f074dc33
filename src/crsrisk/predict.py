"""The clinician's path: one patient (or a cohort) -> calibrated risk, band, and the reasons (exact tree SHAP).

Imports neither mlflow nor shap: XGBoost's own ``pred_contribs`` is exact tree SHAP, and attributions plus
the base value add up to the booster's raw score (log-odds), which the calibrator maps to the probability.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import xgboost as xgb

from crsrisk.bundle.format import TaskModel
from crsrisk.bundle.store import Bundle, load_bundle
from crsrisk.cohort import Cohort
from crsrisk.errors import CohortValidationError, Problem
from crsrisk.features.build import build_features
from crsrisk.features.spec import feature_info
from crsrisk.schema.tables import EVENT_COLUMNS, MEASUREMENT_COLUMNS
from crsrisk.schema.validate import validate_tables
from crsrisk.tasks import FIRST_TOCILIZUMAB, Task, get_task, landmark_times, task_from_settings

DEFAULT_MODEL = Path(__file__).resolve().parent / "models_data" / "default"


def resolve_model(model: str | os.PathLike | Bundle | None) -> Bundle:
    """A loaded bundle from a folder, an MLflow ``models:/`` URI, or the shipped default."""
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


def _read_patient(patient: Mapping[str, Any] | str | os.PathLike) -> Mapping[str, Any]:
    if isinstance(patient, Mapping):
        return patient
    text = str(patient)
    if not text.lstrip().startswith("{") and Path(text).is_file():
        text = Path(text).read_text()
    try:
        data = json.loads(text)
    except ValueError as error:
        raise CohortValidationError([Problem("patient", "<json>", f"not valid JSON: {error}")]) from None
    if not isinstance(data, Mapping):
        raise CohortValidationError([Problem("patient", "<json>", "expected a JSON object")])
    return data


def patient_cohort(patient: Mapping[str, Any] | str | os.PathLike) -> Cohort:
    """Validate one patient record (contract shape: patient, measurements, events) into a one-infusion Cohort."""
    data = _read_patient(patient)
    record = data.get("patient")
    if not isinstance(record, Mapping):
        raise CohortValidationError([Problem("patient", "patient", "expected an object with the patients fields "
                                             "(patient_id, age_years, ...)", value=record)])
    tables = {"patients": pd.DataFrame([dict(record)])}
    for name, columns in (("measurements", MEASUREMENT_COLUMNS), ("events", EVENT_COLUMNS)):
        rows = data.get(name, [])
        if not isinstance(rows, list) or not all(isinstance(r, Mapping) for r in rows):
            raise CohortValidationError([Problem(name, name, "expected a list of objects", value=str(rows)[:80])])
        table = pd.DataFrame(rows, columns=None if rows else [c.name for c in columns])
        if "patient_id" not in table.columns:  # rows of a single-patient record belong to that patient
            table.insert(0, "patient_id", record.get("patient_id"))
        tables[name] = table
    return validate_tables(tables, csv={name: False for name in tables})


def _value_text(name: str, value: float) -> str:
    info = feature_info(name)
    if math.isnan(value):
        return "(not measured)"
    if info.unit.startswith("1 = "):
        return "yes" if value >= 0.5 else "no"
    number = f"{value:,.0f}" if abs(value) >= 100 else (f"{value:.1f}" if abs(value) >= 1 else f"{value:.3g}")
    return f"{number} {info.unit}".strip()


def _phrase(name: str, value: float, shap: float) -> str:
    """A short clinical sentence, e.g. "IL-6, latest value 2,400 pg/mL raised the risk"."""
    effect = "raised" if shap > 0 else ("lowered" if shap < 0 else "did not change")
    return f"{feature_info(name).label} {_value_text(name, value)} {effect} the risk"


def explain_rows(model: TaskModel, X: np.ndarray) -> np.ndarray:
    """Exact tree SHAP: one column per feature plus the base value last (rows sum to the raw score)."""
    return model.booster.predict(xgb.DMatrix(X, missing=np.nan), pred_contribs=True)


@dataclass
class PredictionResult:
    """Predictions for one patient at one time, with reasons; ``to_dict`` is the documented JSON shape."""

    predictions: list[dict[str, Any]]
    missing_inputs: list[str]
    model: dict[str, Any]
    not_applicable: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """``{"predictions": [...], "missing_inputs": [...], "model": {...}, "not_applicable": [...]}``."""
        return {"predictions": self.predictions, "missing_inputs": self.missing_inputs, "model": self.model,
                "not_applicable": self.not_applicable}


def _task_of(model: TaskModel) -> Task:
    return task_from_settings(model.task_settings) if model.task_settings else get_task(model.task)


def _is_window(model: TaskModel) -> bool:
    return isinstance(model.landmark, str) or float(model.landmark) > 0


def _choose(bundle: Bundle, task: str, cohort: Cohort, now: float) -> tuple[TaskModel | None, float, str]:
    """The model at the latest landmark not after ``now`` whose risk set holds the patient, or why none."""
    models = bundle.for_task(task)
    definition = _task_of(models[0])
    if definition.kind == "toci_refractory":
        times = landmark_times(cohort, definition, FIRST_TOCILIZUMAB)
        if times.empty or times.iloc[0] > now:
            return None, math.nan, "no tocilizumab given yet"
        return models[0], float(times.iloc[0]), ""
    usable = [m for m in models if float(m.landmark) <= now]
    if not usable:
        return None, math.nan, f"no landmark at or before {now:g} h"
    chosen = max(usable, key=lambda m: float(m.landmark))
    if landmark_times(cohort, definition, chosen.landmark).empty:
        return None, math.nan, (f"not in the risk set at {float(chosen.landmark):g} h "
                                f"({definition.grade_event} >= {definition.grade_threshold} already recorded)")
    return chosen, float(chosen.landmark), ""


def _model_info(bundle: Bundle) -> dict[str, Any]:
    meta = bundle.metadata
    return {"path": str(bundle.path), "bundle_sha256": bundle.digest, "crsrisk_version": meta.get("crsrisk_version"),
            "created": meta.get("created"), "synthetic": bool(meta.get("synthetic", True)),
            "not_for_clinical_use": bool(meta.get("not_for_clinical_use", True)),
            "training_cohort_fingerprint": meta.get("training_cohort_fingerprint")}


def predict(patient: Mapping[str, Any] | str | os.PathLike, model: str | os.PathLike | Bundle | None = None,
            now_hours: float | None = None, audit: bool = True, audit_log: str | os.PathLike | None = None,
            top: int | None = None) -> PredictionResult:
    """Calibrated risk for every task that applies to this patient now, with every feature's SHAP reason.

    ``now_hours`` defaults to the latest measurement or event time (0 before infusion). ``top`` keeps only
    the largest contributions in the result (all by default, so they add up to the raw score).
    """
    bundle = resolve_model(model)
    cohort = patient_cohort(patient)
    patient_id = str(cohort.patients["patient_id"].iloc[0])
    times = pd.concat([cohort.measurements["hours_since_infusion"], cohort.events["hours_since_infusion"]])
    now = float(now_hours) if now_hours is not None else float(max(times.max(), 0.0)) if len(times) else 0.0
    predictions, skipped, missing = [], [], set()
    built: dict[tuple[float, bool], pd.DataFrame] = {}  # tasks at the same landmark share one feature row
    for task in bundle.tasks:
        chosen, landmark, reason = _choose(bundle, task, cohort, now)
        if chosen is None:
            skipped.append({"task": task, "reason": reason})
            continue
        key = (landmark, _is_window(chosen))
        if key not in built:
            built[key] = build_features(cohort, pd.Series({patient_id: landmark}), window=key[1])
        row = built[key]
        values = row[chosen.feature_names].to_numpy(dtype=float)
        contributions = explain_rows(chosen, values)[0]
        raw, base, shap = float(contributions.sum()), float(contributions[-1]), contributions[:-1]
        order = np.argsort(-np.abs(shap), kind="stable")[: top or None]
        missing.update(n for n, v in zip(chosen.feature_names, values[0]) if math.isnan(v))
        probability = float(chosen.calibrator.transform(np.array([raw]))[0])
        predictions.append({
            "task": task, "landmark_hours": landmark, "landmark": chosen.key.split("__")[1],
            "probability": probability, "band": chosen.band(probability), "raw_score": raw, "base_value": base,
            "label_rule_version": chosen.label_rule_version,
            "contributions": [{"feature": chosen.feature_names[i], "label": feature_info(chosen.feature_names[i]).label,
                               "value": None if math.isnan(values[0, i]) else float(values[0, i]),
                               "unit": feature_info(chosen.feature_names[i]).unit, "shap": float(shap[i]),
                               "direction": "raises" if shap[i] > 0 else "lowers" if shap[i] < 0 else "none",
                               "phrase": _phrase(chosen.feature_names[i], values[0, i], shap[i])} for i in order]})
    result = PredictionResult(predictions, sorted(missing), _model_info(bundle), skipped)
    if audit:
        _audit(result, cohort, patient_id, audit_log)
    return result


def _audit(result: PredictionResult, cohort: Cohort, patient_id: str, path: str | os.PathLike | None) -> None:
    from crsrisk.audit.log import AuditLog, prediction_record

    log = AuditLog(path)
    outputs = [{k: p[k] for k in ("task", "landmark_hours", "probability", "band", "raw_score", "base_value")}
               | {"shap": {c["feature"]: c["shap"] for c in p["contributions"]}} for p in result.predictions]
    raw = {name: getattr(cohort, name).to_dict(orient="list") for name in ("patients", "measurements", "events")}
    log.append(prediction_record(log, result.model, patient_id, cohort.fingerprint(), outputs, raw))


def predict_cohort(cohort: Cohort, model: str | os.PathLike | Bundle | None = None) -> pd.DataFrame:
    """Score every infusion in each task's risk set at each landmark: one row per infusion, task and landmark.

    Tasks sharing a fixed landmark share one feature build (over the union of their risk sets).
    """
    bundle = resolve_model(model)
    at_risk = {key: landmark_times(cohort, _task_of(m), m.landmark) for key, m in bundle.models.items()}
    shared: dict[Any, pd.DataFrame] = {}
    for m in bundle.models.values():
        if isinstance(m.landmark, str) or m.landmark in shared:
            continue
        ids = pd.unique(pd.concat([at_risk[k].index.to_series() for k, o in bundle.models.items()
                                   if o.landmark == m.landmark]))
        if len(ids):
            shared[m.landmark] = build_features(cohort, pd.Series(float(m.landmark), index=pd.Index(ids, name="patient_id")),
                                                window=_is_window(m))
    frames = []
    for key, chosen in bundle.models.items():
        landmarks = at_risk[key]
        if landmarks.empty:
            continue
        features = (build_features(cohort, landmarks, window=_is_window(chosen)) if isinstance(chosen.landmark, str)
                    else shared[chosen.landmark])
        X = features.loc[landmarks.index, chosen.feature_names].to_numpy(dtype=float)
        raw = chosen.booster.inplace_predict(X, predict_type="margin")
        probability = chosen.calibrator.transform(raw)
        frames.append(pd.DataFrame({"patient_id": landmarks.index.astype(str), "task": chosen.task,
                                    "landmark_hours": landmarks.to_numpy(), "landmark": chosen.key.split("__")[1],
                                    "probability": probability, "band": [chosen.band(p) for p in probability],
                                    "raw_score": raw}))
    columns = ["patient_id", "task", "landmark_hours", "landmark", "probability", "band", "raw_score"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
