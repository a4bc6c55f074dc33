"""The one planner: at an hour, for every infusion of a cohort (a patient is a cohort of one) and every task,
which model answers at which landmark hour, or why the task is not scored.

The rules, in the order they apply to one infusion and task at hour ``now``:

1. the outcome was recorded before ``now``: ``already_occurred`` (never scored);
2. follow-up ended before ``now``: ``not_applicable``; nothing after the end of follow-up is known, so the
   question cannot be asked of this record at that hour (a live patient's record leaves ``followup_hours``
   blank, which means day 28);
3. no landmark of the task's models is reached by ``now``: ``not_applicable``;
4. the question's window at the latest landmark reached closed by ``now``: ``not_applicable``;
5. otherwise ``scored`` by the model at the latest landmark reached (a super-model at ``now`` itself).

``predict``, ``predict_cohort``, the trajectory, streaming batch scoring, the service and evaluation all call
``plan_at``; nothing else decides any of this.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Iterator, Mapping

import numpy as np

from crsrisk.bundle.format import TaskModel
from crsrisk.bundle.store import Bundle
from crsrisk.cohort.arrays import CohortArrays
from crsrisk.landmarks import FirstEvent, Grid, Landmark, known_at

SCORED, ALREADY_OCCURRED, NOT_APPLICABLE = "scored", "already_occurred", "not_applicable"
STATUSES = (SCORED, ALREADY_OCCURRED, NOT_APPLICABLE)


def _not_reached(landmark: Landmark, now: float) -> str:
    if isinstance(landmark, Grid):
        return f"hour {now:g} is outside the trained range {landmark.start:g}-{landmark.stop:g} h"
    if isinstance(landmark, FirstEvent):
        return f"no {landmark.event} given before hour {now:g}"
    return f"no landmark before hour {now:g}"


@dataclass(frozen=True)
class TaskPlan:
    """One task at one hour, for every infusion: the status, the answering model and hour, and the reason."""

    task: str
    models: list[TaskModel]
    status: np.ndarray  # object: SCORED, ALREADY_OCCURRED or NOT_APPLICABLE
    model: np.ndarray  # int: index into ``models`` where scored, else -1
    hours: np.ndarray  # landmark hour where scored, else NaN
    onset: np.ndarray  # first outcome hour (NaN: none recorded)
    reason: np.ndarray  # object: why not scored ("" where scored)

    def question(self, hours: float) -> str:
        """What the task asks at ``hours``, in words."""
        return self.models[0].definition.question(hours)


@dataclass(frozen=True)
class CohortPlan:
    """Every task's plan at hour ``now``."""

    now: float
    tasks: list[TaskPlan]

    def scored(self) -> Iterator[tuple[TaskModel, np.ndarray, np.ndarray]]:
        """Each model with the infusions it scores (patient codes) and their landmark hours."""
        for plan in self.tasks:
            for index, model in enumerate(plan.models):
                codes = np.flatnonzero(plan.model == index)
                yield model, codes, plan.hours[codes]

    def patient(self, code: int = 0) -> "Plan":
        """The plan of one infusion, as ``predict`` reports it."""
        chosen, occurred, skipped = [], [], []
        for plan in self.tasks:
            status = plan.status[code]
            if status == SCORED:
                chosen.append((plan.models[int(plan.model[code])], float(plan.hours[code])))
            elif status == ALREADY_OCCURRED:
                onset = float(plan.onset[code])
                occurred.append(
                    {
                        "task": plan.task,
                        "hours": onset,
                        "question": plan.question(self.now),
                        "text": str(plan.reason[code]),
                    }
                )
            else:
                skipped.append({"task": plan.task, "reason": str(plan.reason[code])})
        return Plan(self.now, chosen, occurred, skipped)


@dataclass(frozen=True)
class Plan:
    """Which model answers each task for one patient at one hour, and why the other tasks are not scored."""

    now: float
    chosen: list[tuple[TaskModel, float]]  # (model, landmark hour)
    already_occurred: list[dict[str, Any]]
    not_applicable: list[dict[str, str]]

    @cached_property
    def hours(self) -> list[float]:
        """The distinct landmark hours the chosen models are asked at."""
        return sorted({h for _, h in self.chosen})


def _texts(template: str, values: np.ndarray) -> np.ndarray:
    """``template`` formatted with each value, once per distinct value (a cohort has few)."""
    if not values.size:  # one patient: most reasons apply to nobody
        return np.empty(0, dtype=object)
    distinct, where = np.unique(values, return_inverse=True)
    return np.array([template.format(v) for v in distinct.tolist()], dtype=object)[where.ravel()]


def _task_plan(task: str, models: list[TaskModel], arrays: CohortArrays, now: float, onset: np.ndarray) -> TaskPlan:
    definition = models[0].definition
    n = arrays.patient_ids.size
    status = np.full(n, NOT_APPLICABLE, dtype=object)
    reason = np.full(n, "", dtype=object)
    reached = np.column_stack([m.landmark.hours_at(arrays, now) for m in models])
    best = np.where(np.isnan(reached), -np.inf, reached).argmax(axis=1)
    hours = reached[np.arange(n), best]
    occurred = known_at(onset, now)
    ended = ~occurred & known_at(arrays.followup, now)
    unreached = ~occurred & ~ended & np.isnan(hours)
    closes = definition.horizon_end(np.where(np.isnan(hours), 0.0, hours))
    closed = ~occurred & ~ended & ~unreached & (closes <= now)
    scored = ~(occurred | ended | unreached | closed)
    status[occurred] = ALREADY_OCCURRED
    status[scored] = SCORED
    reason[occurred] = _texts("already occurred at hour {:g}", onset[occurred])
    reason[ended] = _texts(
        f"follow-up ended at hour {{:g}}, before hour {now:g}: nothing after it is known", arrays.followup[ended]
    )
    reason[unreached] = _not_reached(models[-1].landmark, now)
    reason[closed] = _texts("its outcome window closed at hour {:g} without the outcome", closes[closed])
    return TaskPlan(task, models, status, np.where(scored, best, -1), np.where(scored, hours, np.nan), onset, reason)


def plan_at(
    bundle: Bundle, arrays: CohortArrays, now: float, onsets: Mapping[str, np.ndarray] | None = None
) -> CohortPlan:
    """Every task's plan at hour ``now`` for every infusion of ``arrays`` (rules in the module docstring).
    ``onsets`` (task -> first outcome hour per infusion) can be passed when planning many hours of one cohort."""
    tasks = []
    for task in bundle.tasks:
        models = bundle.for_task(task)
        onset = onsets[task] if onsets is not None else models[0].definition.occurrence(arrays)
        tasks.append(_task_plan(task, models, arrays, now, np.asarray(onset, dtype=float)))
    return CohortPlan(now, tasks)


def task_onsets(bundle: Bundle, arrays: CohortArrays) -> dict[str, np.ndarray]:
    """Each task's first outcome hour per infusion (NaN: none), for ``plan_at`` over many hours."""
    return {task: bundle.for_task(task)[0].definition.occurrence(arrays) for task in bundle.tasks}


def landmark_pairs(bundle: Bundle, arrays: CohortArrays) -> Iterator[tuple[TaskModel, np.ndarray, np.ndarray]]:
    """Without an hour: each model with every infusion of its risk set at each of its landmarks (a grid: every
    point), as training saw them."""
    for task_model in bundle.models.values():
        pairs = [task_model.definition.at_risk(arrays, point) for point in task_model.landmark.points()]
        yield task_model, np.concatenate([c for c, _ in pairs]), np.concatenate([h for _, h in pairs])
