"""Who is at risk at an hour, which model answers, the window and the horizon."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

import numpy as np

from crsrisk.bundle.format import TaskModel
from crsrisk.bundle.store import Bundle
from crsrisk.cohort.arrays import CohortArrays
from crsrisk.schema.arguments import parse_hours
from crsrisk.landmarks import FirstEvent, Grid, Landmark, known_at


@dataclass(frozen=True)
class Plan:
    """Which model answers each task for one patient at one hour, and why the other tasks are not scored."""

    now: float
    chosen: list[tuple[TaskModel, float]]  # (model, landmark hour)
    already_occurred: list[dict[str, Any]]
    not_applicable: list[dict[str, str]]


def _not_reached(landmark: Landmark, now: float) -> str:
    if isinstance(landmark, Grid):
        return f"hour {now:g} is outside the trained range {landmark.start:g}-{landmark.stop:g} h"
    if isinstance(landmark, FirstEvent):
        return f"no {landmark.event} given before hour {now:g}"
    return f"no landmark before hour {now:g}"


def plan(bundle: Bundle, arrays: CohortArrays, now: float, onsets: Mapping[str, float] | None = None) -> Plan:
    """For patient 0 of ``arrays`` at hour ``now``: per task, the model at the latest landmark reached by then (a
    super-model at ``now`` itself), unless the outcome already happened before ``now`` ("already occurred at hour
    X", never scored) or the question's window has closed. ``onsets`` (task -> first outcome hour, NaN if none)
    can be passed in when planning many hours for one patient."""
    chosen, occurred, skipped = [], [], []
    for task in bundle.tasks:
        models = bundle.for_task(task)
        definition = models[0].definition
        onset = onsets[task] if onsets is not None else float(definition.occurrence(arrays)[0])
        if known_at(onset, now):
            occurred.append({"task": task, "hours": onset, "question": definition.question(now),
                             "text": f"already occurred at hour {onset:g}"})
            continue
        reached = [(m, float(m.landmark.hours_at(arrays, now)[0])) for m in models]
        reached = [(m, h) for m, h in reached if not math.isnan(h)]
        if not reached:
            skipped.append({"task": task, "reason": _not_reached(models[-1].landmark, now)})
            continue
        model, hours = max(reached, key=lambda pair: pair[1])
        closes = hours + definition.horizon(hours)
        if closes <= now:
            skipped.append({"task": task, "reason": f"its outcome window closed at hour {closes:g} without the outcome"})
            continue
        chosen.append((model, hours))
    return Plan(now, chosen, occurred, skipped)




def _cohort_plan(arrays: CohortArrays, bundle: Bundle, at_hours: float | None
                 ) -> Iterator[tuple[TaskModel, np.ndarray, np.ndarray]]:
    """Each model with the infusions it scores (patient codes) and their landmark hours.

    Without ``at_hours``: every infusion in each model's risk set at each of its landmarks (a grid: every point).
    At ``at_hours`` = T: per task, the model ``predict`` would choose at hour T, for every infusion still observed
    at T (follow-up not ended), whose outcome had not happened before T and whose window is still open.
    """
    if at_hours is None:
        for task_model in bundle.models.values():
            pairs = [task_model.definition.at_risk(arrays, point) for point in task_model.landmark.points()]
            yield task_model, np.concatenate([c for c, _ in pairs]), np.concatenate([h for _, h in pairs])
        return
    now = parse_hours(at_hours)
    observed = ~known_at(arrays.followup, now)
    for task in bundle.tasks:
        models = bundle.for_task(task)
        definition = models[0].definition
        reached = np.column_stack([m.landmark.hours_at(arrays, now) for m in models])
        best = np.where(np.isnan(reached), -np.inf, reached).argmax(axis=1)
        hours = reached[np.arange(best.size), best]
        keep = observed & ~np.isnan(hours) & ~known_at(definition.occurrence(arrays), now)
        keep &= definition.horizon_end(np.where(np.isnan(hours), 0.0, hours)) > now  # the window is still open
        for index, task_model in enumerate(models):
            codes = np.flatnonzero(keep & (best == index))
            yield task_model, codes, hours[codes]




