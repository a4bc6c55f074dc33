"""The three prediction tasks as data: population, landmark, outcome window and label rule (DESIGN.md).

Landmarks, windows and thresholds are configuration: ``Task.with_overrides`` and ``tasks_from_config``
build variants from an experiment file. The tocilizumab-refractory rule is the project's own (there is
no consensus definition, clinical-facts.md) and carries a version that every report shows.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal, Mapping

FIRST_TOCILIZUMAB = "first_tocilizumab"
Landmark = float | str
Kind = Literal["grade_onset", "toci_refractory"]


@dataclass(frozen=True)
class Task:
    """One prediction question.

    grade_onset tasks: risk set = no ``grade_event`` >= ``grade_threshold`` strictly before the landmark;
    label = such a grade recorded at or after the landmark and before ``landmark + horizon_hours`` (or
    before the end of follow-up). toci_refractory: landmark = first tocilizumab dose; label = escalation
    within ``window_hours`` (see ``labels.py``).
    """

    name: str
    description: str
    kind: Kind
    landmarks: tuple[Landmark, ...]
    rule_version: str
    grade_event: str = "crs_grade"
    grade_threshold: int = 3
    horizon_hours: float = 28 * 24.0  # outcome window closes at day 28 after infusion by default
    second_labels: Mapping[str, int] = dataclasses.field(default_factory=dict)  # label name -> grade threshold
    window_hours: float = 48.0
    max_tocilizumab_doses: int = 2  # a third dose within the window counts as refractory (DESIGN.md)
    steroids_only_without_icans: bool = True  # steroids while ICANS grade is 0 are taken to be for CRS

    def with_overrides(self, **changes: Any) -> "Task":
        """A copy with some fields changed; unknown fields or bad values raise ValueError naming them."""
        fields = {f.name for f in dataclasses.fields(self)} - {"name", "kind"}
        unknown = sorted(set(changes) - fields)
        if unknown:
            raise ValueError(f"task {self.name}: unknown setting(s) {unknown}; expected some of {sorted(fields)}")
        if "landmarks" in changes:
            changes["landmarks"] = tuple(_landmark(self, v) for v in changes["landmarks"])
        if "second_labels" in changes:
            changes["second_labels"] = MappingProxyType(dict(changes["second_labels"]))
        for key in ("horizon_hours", "window_hours"):
            if key in changes and not (isinstance(changes[key], (int, float)) and changes[key] > 0):
                raise ValueError(f"task {self.name}: {key} must be a positive number of hours, got {changes[key]!r}")
        if "grade_threshold" in changes and changes["grade_threshold"] not in (1, 2, 3, 4):
            raise ValueError(f"task {self.name}: grade_threshold must be 1-4, got {changes['grade_threshold']!r}")
        return dataclasses.replace(self, **changes)

    def describe(self) -> dict[str, Any]:
        """Plain-data form for reports and metrics.json."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["landmarks"] = list(self.landmarks)
        data["second_labels"] = dict(self.second_labels)
        return data


def landmark_label(landmark: Landmark) -> str:
    """How a landmark is named in files, tables and model keys: ``0h``, ``36h``, ``first_tocilizumab``."""
    return landmark if isinstance(landmark, str) else f"{float(landmark):g}h"


def task_from_settings(settings: dict[str, Any]) -> Task:
    """Rebuild a Task from ``Task.describe()`` output (as stored in a model bundle)."""
    base = get_task(settings["name"])
    fields = {f.name for f in dataclasses.fields(Task)} - {"name", "kind", "description"}
    return base.with_overrides(**{k: v for k, v in settings.items() if k in fields})


def _landmark(task: Task, value: Any) -> Landmark:
    if task.kind == "toci_refractory":
        if value != FIRST_TOCILIZUMAB:
            raise ValueError(f"task {task.name}: the landmark is {FIRST_TOCILIZUMAB!r}, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"task {task.name}: landmarks must be hours >= 0 after infusion, got {value!r}")
    return float(value)


DEFAULT_TASKS: Mapping[str, Task] = MappingProxyType({
    "severe_crs": Task(
        "severe_crs", "ASTCT CRS grade >= 3 after the landmark, among infusions without it so far",
        "grade_onset", (0.0, 36.0), "severe-crs-v1", grade_event="crs_grade", grade_threshold=3),
    "icans": Task(
        "icans", "ICANS of any grade after the landmark, among infusions without ICANS so far",
        "grade_onset", (0.0, 36.0), "icans-v1", grade_event="icans_grade", grade_threshold=1,
        second_labels=MappingProxyType({"icans_severe": 3})),
    "toci_refractory": Task(
        "toci_refractory", "within 48 h of the first tocilizumab dose: siltuximab or anakinra, a third "
        "tocilizumab dose, corticosteroids for CRS, or a rise in CRS grade",
        "toci_refractory", (FIRST_TOCILIZUMAB,), "toci-refractory-v1"),
})


def get_task(name: str | Task) -> Task:
    """A default task by name (a Task passes through); the error lists the valid names."""
    if isinstance(name, Task):
        return name
    try:
        return DEFAULT_TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; expected one of {list(DEFAULT_TASKS)}") from None


def tasks_from_config(config: Mapping[str, Any]) -> dict[str, Task]:
    """Tasks from ``{"tasks": {name: {setting: value}}}`` (settings override the defaults)."""
    entries = config.get("tasks", {}) if isinstance(config, Mapping) else None
    if not isinstance(entries, Mapping):
        raise ValueError(f"tasks: expected a mapping of task name to settings, got {entries!r}")
    return {name: get_task(name).with_overrides(**dict(settings or {})) for name, settings in entries.items()}
