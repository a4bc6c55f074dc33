"""A cohort at once: scores and exact SHAP attributions of every infusion a model answers for."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pandas as pd

from crsrisk.bundle.format import TaskModel
from crsrisk.bundle.store import Bundle
from crsrisk.cohort.validated import Cohort
from crsrisk.cohort.arrays import CohortArrays, cohort_arrays
from crsrisk.features.build import feature_matrix

from crsrisk.scoring.load import load_model
from crsrisk.scoring.patient import explain_rows, model_ready, _point_labels
from crsrisk.scoring.plan import _cohort_plan

def _model_inputs(arrays: CohortArrays, bundle: Bundle, at_hours: float | None = None
                  ) -> Iterator[tuple[TaskModel, np.ndarray, np.ndarray, np.ndarray]]:
    """Each model with the infusions it scores, their landmark hours and input matrix, all cut from one feature
    matrix built once over every distinct (infusion, landmark hour) pair (tasks share landmarks)."""
    planned = list(_cohort_plan(arrays, bundle, at_hours))
    pairs = np.column_stack([np.concatenate([codes for _, codes, _ in planned]).astype(np.float64),
                             np.concatenate([hours for _, _, hours in planned])]) if planned else np.empty((0, 2))
    unique, inverse = np.unique(pairs, axis=0, return_inverse=True)
    matrix = model_ready(feature_matrix(arrays, unique[:, 0].astype(np.int64), unique[:, 1], window=True))
    inverse, start = inverse.ravel(), 0
    for task_model, codes, hours in planned:
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


def cohort_attributions(cohort: Cohort, model: str | os.PathLike | Bundle | None = None,
                        at_hours: float | None = None) -> dict[str, CohortAttributions]:
    """Exact SHAP values of every bundled model over what it scores in the cohort (see ``predict_cohort``; models
    nobody is at risk for are left out); features are built once for every distinct (infusion, landmark) pair."""
    bundle = load_model(model)
    arrays = cohort_arrays(cohort)
    out = {}
    for task_model, codes, _, X in _model_inputs(arrays, bundle, at_hours):
        if codes.size:
            contributions = explain_rows(task_model, X)
            frame = pd.DataFrame(X, index=pd.Index(arrays.patient_ids[codes], name="patient_id"),
                                 columns=task_model.feature_names)
            out[task_model.key] = CohortAttributions(task_model, frame, contributions[:, :-1], contributions[:, -1])
    return out


SCORE_COLUMNS = ["patient_id", "task", "landmark_hours", "horizon_hours", "landmark", "probability", "band",
                 "raw_score", "model_key"]


def predict_cohort(cohort: Cohort, model: str | os.PathLike | Bundle | None = None,
                   at_hours: float | None = None) -> pd.DataFrame:
    """Score a cohort: one row per infusion, task and landmark hour (``SCORE_COLUMNS``).

    Without ``at_hours``, every infusion in each model's risk set at each of its landmarks (every grid point of a
    super-model). With ``at_hours`` = T, what ``predict(..., now_hours=T)`` would give each infusion still observed
    at T: per task, the model at the latest landmark reached by T (a super-model at T itself), for infusions whose
    outcome had not happened before T and whose window is still open. Features are built once for every distinct
    (infusion, landmark hour) pair.
    """
    bundle = load_model(model)
    arrays = cohort_arrays(cohort)
    frames = []
    for task_model, codes, hours, X in _model_inputs(arrays, bundle, at_hours):
        if not codes.size:
            continue
        raw = task_model.booster.inplace_predict(X, predict_type="margin", missing=np.nan)
        probability = task_model.calibrator.transform(raw)
        definition = task_model.definition
        frames.append(pd.DataFrame({
            "patient_id": arrays.patient_ids[codes].astype(str), "task": task_model.task, "landmark_hours": hours,
            "horizon_hours": definition.horizon_end(hours) - hours,
            "landmark": _point_labels(task_model, hours), "probability": probability,
            "band": task_model.band(probability), "raw_score": raw, "model_key": task_model.key}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=SCORE_COLUMNS)


