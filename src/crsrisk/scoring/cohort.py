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

from crsrisk.scoring.audited import audit_table
from crsrisk.scoring.load import load_model
from crsrisk.schema.arguments import parse_hours
from crsrisk.scoring.patient import _point_labels
from crsrisk.scoring.plan import SCORED, CohortPlan, TaskPlan, landmark_pairs, plan_at


def _inputs(
    arrays: CohortArrays, planned: list[tuple[TaskModel, np.ndarray, np.ndarray]]
) -> Iterator[tuple[TaskModel, np.ndarray, np.ndarray, np.ndarray]]:
    """Each planned model with the infusions it scores, their landmark hours and input matrix, all cut from one
    feature matrix built once over every distinct (infusion, landmark hour) pair (tasks share landmarks)."""
    pairs = (
        np.column_stack(
            [
                np.concatenate([codes for _, codes, _ in planned]).astype(np.float64),
                np.concatenate([hours for _, _, hours in planned]),
            ]
        )
        if planned
        else np.empty((0, 2))
    )
    unique, inverse = np.unique(pairs, axis=0, return_inverse=True)
    matrix = feature_matrix(arrays, unique[:, 0].astype(np.int64), unique[:, 1], window=True)
    inverse, start = inverse.ravel(), 0
    for task_model, codes, hours in planned:
        rows = inverse[start : start + codes.size]
        start += codes.size
        yield task_model, codes, hours, matrix[np.ix_(rows, task_model.columns)]


def _planned(
    arrays: CohortArrays, bundle: Bundle, at_hours: float | None
) -> tuple[CohortPlan | None, list[tuple[TaskModel, np.ndarray, np.ndarray]]]:
    """The plan at ``at_hours`` (the one planner) and what it scores, or, without an hour, every model at each of
    its landmarks over its risk set."""
    if at_hours is None:
        return None, list(landmark_pairs(bundle, arrays))
    planned = plan_at(bundle, arrays, parse_hours(at_hours))
    return planned, list(planned.scored())


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


def cohort_attributions(
    cohort: Cohort, model: str | os.PathLike | Bundle | None = None, at_hours: float | None = None
) -> dict[str, CohortAttributions]:
    """Exact SHAP values of every bundled model over what it scores in the cohort (see ``predict_cohort``; models
    nobody is at risk for are left out); features are built once for every distinct (infusion, landmark) pair."""
    bundle = load_model(model)
    arrays = cohort_arrays(cohort)
    out = {}
    for task_model, codes, _, X in _inputs(arrays, _planned(arrays, bundle, at_hours)[1]):
        if codes.size:
            contributions = task_model.contributions(X)
            frame = pd.DataFrame(
                X, index=pd.Index(arrays.patient_ids[codes], name="patient_id"), columns=task_model.feature_names
            )
            out[task_model.key] = CohortAttributions(task_model, frame, contributions[:, :-1], contributions[:, -1])
    return out


SCORE_COLUMNS = [
    "patient_id",
    "task",
    "landmark_hours",
    "horizon_hours",
    "landmark",
    "probability",
    "band",
    "raw_score",
    "model_key",
    "status",
    "reason",
]


def predict_cohort(
    cohort: Cohort,
    model: str | os.PathLike | Bundle | None = None,
    at_hours: float | None = None,
    audit: bool = True,
    audit_log: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """Score a cohort (``SCORE_COLUMNS``).

    Without ``at_hours``: one row per infusion, model and landmark hour, for every infusion in each model's risk
    set at each of its landmarks (every grid point of a super-model). With ``at_hours`` = T: one row per infusion
    and task, exactly what ``predict(record, now_hours=T)`` says of that infusion (the same planner): ``status``
    ``scored`` with the probability, or ``already_occurred`` / ``not_applicable`` with the ``reason`` and no
    probability. Features are built once for every distinct (infusion, landmark hour) pair. One audit record holds
    every row (``audit=False`` opts out).
    """
    bundle = load_model(model)
    arrays = cohort_arrays(cohort)
    planned, scored = _planned(arrays, bundle, at_hours)
    frames = []
    for task_model, codes, hours, X in _inputs(arrays, scored):
        if not codes.size:
            continue
        raw = task_model.margin(X)
        probability = task_model.calibrator.transform(raw)
        frames.append(
            pd.DataFrame(
                {
                    "patient_id": arrays.patient_ids[codes].astype(str),
                    "task": task_model.task,
                    "landmark_hours": hours,
                    "horizon_hours": task_model.definition.horizons(hours),
                    "landmark": _point_labels(task_model, hours),
                    "probability": probability,
                    "band": task_model.band(probability),
                    "raw_score": raw,
                    "model_key": task_model.key,
                    "status": SCORED,
                    "reason": "",
                }
            )
        )
    if planned is not None:
        frames += [_unscored(arrays, task) for task in planned.tasks]
    frames = [f for f in frames if len(f)]
    table = pd.concat(frames, ignore_index=True)[SCORE_COLUMNS] if frames else pd.DataFrame(columns=SCORE_COLUMNS)
    if planned is not None and len(table):  # one row per infusion and task, in cohort and task order
        order = {task: i for i, task in enumerate(bundle.tasks)}
        codes = pd.Index(arrays.patient_ids.astype(str)).get_indexer(table["patient_id"])
        table = table.iloc[np.lexsort((table["task"].map(order).to_numpy(), codes))].reset_index(drop=True)
    if audit:
        audit_table(bundle, table, cohort.fingerprint(), "batch_prediction", audit_log)
    return table


def _unscored(arrays: CohortArrays, task: TaskPlan) -> pd.DataFrame:
    """The rows of one task's infusions that are not scored at the plan's hour, with their status and reason."""
    codes = np.flatnonzero(task.status != SCORED)
    return pd.DataFrame(
        {
            "patient_id": arrays.patient_ids[codes].astype(str),
            "task": task.task,
            "landmark_hours": np.nan,
            "horizon_hours": np.nan,
            "landmark": None,
            "probability": np.nan,
            "band": None,
            "raw_score": np.nan,
            "model_key": None,
            "status": task.status[codes],
            "reason": task.reason[codes],
        }
    )
