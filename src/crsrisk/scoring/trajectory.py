"""A patient's risk over time: what ``predict`` would have said every ``step`` hours and just after each new
measurement or event, with the top reasons at each point, and a picture with doses and grade changes marked.

Each point is exactly ``predict(patient, now_hours=t)``: everything strictly before t, a super-model asked at t
itself, outcomes already reached reported (and the task's line stopped), never scored.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from crsrisk.errors import InputError
from crsrisk.bundle.store import Bundle
from crsrisk.cohort.arrays import EVENT_CODES, CohortArrays
from crsrisk.cohort.record import validate_record
from crsrisk.scoring.audited import audit_patient
from crsrisk.scoring.load import load_model
from crsrisk.scoring.patient import default_now, population_flags, score_plans
from crsrisk.scoring.plan import plan_at, task_onsets
from crsrisk.reporting.figures import write_png
from crsrisk.reporting.trajectory_figure import trajectory_figure


@dataclass
class Trajectory:
    """Risk points (one per hour and task) and the clinical events to mark beside them."""

    points: list[dict[str, Any]]
    already_occurred: dict[str, float]  # task -> hour the outcome happened
    events: list[dict[str, Any]]  # doses and grade changes: hours, event, value
    model: dict[str, Any]
    until_hours: float  # the hour the course is read to: the last risk holds until then
    population_flags: list[dict[str, Any]] = field(default_factory=list)  # over every point, each finding once

    def audit_outputs(self) -> list[dict[str, Any]]:
        """What the audit record keeps: every point's risk, and the outcomes already recorded."""
        return [
            {
                "trajectory_point": {
                    k: point[k] for k in ("hours", "task", "landmark_hours", "horizon_hours", "probability", "band")
                }
            }
            for point in self.points
        ] + [{"task": task, "already_occurred_hours": hours} for task, hours in self.already_occurred.items()]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: ``{"points": [...], "already_occurred": {...}, "events": [...], "model": {...},
        "until_hours": ..., "population_flags": [...]}``."""
        return {
            "points": self.points,
            "already_occurred": self.already_occurred,
            "events": self.events,
            "model": self.model,
            "until_hours": self.until_hours,
            "population_flags": self.population_flags,
        }

    def changes(self) -> list[dict[str, Any]]:
        """The points where a task's risk as shown (to 0.1 %) or its band changed, and each task's first: a
        table of one row per change, not the same day-28 risk every 12 hours."""
        shown: dict[str, tuple[float, str]] = {}
        rows = []
        for point in self.points:
            now = (round(point["probability"], 3), point["band"])
            if shown.get(point["task"]) != now:
                shown[point["task"]] = now
                rows.append(point)
        return rows

    def plot(self, path: str | os.PathLike) -> Path:
        """Draw the risk of each task over time as steps, with doses and grade changes named, as a PNG."""
        return write_png(trajectory_figure(self), path)  # a patient's course: owner only, atomic


def _hours(arrays: CohortArrays, step: float, until: float) -> list[float]:
    """Every ``step`` hours from 0, and just after each post-infusion measurement or event (a dose, a grade
    change), up to ``until``."""
    grid = np.arange(0.0, until + 1e-9, step)
    times = np.concatenate([arrays.measurements.hours, arrays.events.hours])
    after = np.nextafter(np.unique(times[(times >= 0) & (times < until)]), np.inf)
    return sorted(set(grid.tolist()) | set(after.tolist()))


def _events(arrays: CohortArrays) -> list[dict[str, Any]]:
    """Doses and grade changes of patient 0, in time order."""
    names = {code: name for name, code in EVENT_CODES.items()}
    events = arrays.events
    order = np.argsort(events.hours, kind="stable")
    out: list[dict[str, Any]] = []
    grades: dict[str, float] = {}
    for hours, code, value in zip(
        events.hours[order].tolist(), events.code[order].tolist(), events.value[order].tolist()
    ):
        name = names[code]
        if name.endswith("_grade"):
            if grades.get(name, 0.0) == value:
                continue
            grades[name] = value
        out.append({"hours": hours, "event": name, "value": None if value != value else value})
    return out


def risk_trajectory(
    patient: Mapping[str, Any] | str | os.PathLike,
    model: str | os.PathLike | Bundle | None = None,
    step_hours: float = 12.0,
    until_hours: float | None = None,
    top: int = 3,
    audit: bool = True,
    audit_log: str | os.PathLike | None = None,
) -> Trajectory:
    """The risk every ``step_hours`` (and just after each new measurement) from infusion to ``until_hours``
    (default: the first whole hour after the latest record), each point with its ``top`` reasons; one audit
    record holds every point (``audit=False`` opts out, as for ``predict``)."""
    if not (isinstance(step_hours, (int, float)) and step_hours > 0):
        raise InputError(f"step_hours: expected a positive number of hours, got {step_hours!r}")
    arrays = validate_record(patient)
    trajectory = trajectory_of(load_model(model), arrays, step_hours, until_hours, top)
    if audit:
        audit_patient(arrays, trajectory.model, trajectory.audit_outputs(), audit_log)
    return trajectory


def trajectory_of(
    bundle: Bundle, arrays: CohortArrays, step_hours: float = 12.0, until_hours: float | None = None, top: int = 3
) -> Trajectory:
    """``risk_trajectory`` on an already validated patient (patient 0 of ``arrays``, e.g. one infusion of a
    cohort for the model card)."""
    until = default_now(arrays) if until_hours is None else float(until_hours)
    onsets = task_onsets(bundle, arrays)
    plans = [plan_at(bundle, arrays, hours, onsets).patient(0) for hours in _hours(arrays, float(step_hours), until)]
    points, scored = [], score_plans(plans, arrays, top)
    for chosen, predictions in zip(plans, scored):
        for p in predictions:
            points.append(
                {
                    "hours": chosen.now,
                    "task": p["task"],
                    "landmark_hours": p["landmark_hours"],
                    "horizon_hours": p["horizon_hours"],
                    "question": p["question"],
                    "horizon_text": p.model.definition.outcome_window(p["landmark_hours"]),
                    "probability": p["probability"],
                    "band": p["band"],
                    "reasons": [c["phrase"] for c in p["contributions"]],
                    "model_key": p["model_key"],
                }
            )
    occurred = {task: float(hours[0]) for task, hours in onsets.items() if hours[0] == hours[0] and hours[0] < until}
    flags = population_flags(bundle, arrays, [p for predictions in scored for p in predictions])
    return Trajectory(points, occurred, _events(arrays), bundle.identity.to_dict(), until, flags)
