"""The prediction tasks crsrisk trains, as data: one entry per question (DESIGN.md).

Landmarks, windows and thresholds are configuration: ``with_overrides`` and ``tasks_from_config`` build variants
from an experiment file. Adding a task is one entry here (of an existing kind) plus its tests.

- ``severe_crs`` / ``icans``: by day 28, asked before infusion (0 h) and at 36 h, comparable with the published
  scores (Hay 2017, Teachey 2016 and m-EASIX predict over the whole course).
- ``severe_crs_dynamic`` / ``icans_dynamic``: in the next 48 h, asked every 12 h from infusion to day 7 with one
  landmark super-model each (severe CRS peaks on days 2-7 and ICANS follows on days 4-10, clinical-facts.md).
- ``toci_refractory``: at the first tocilizumab dose, within 48 h of it (the project's own rule).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Mapping

from crsrisk.errors import InputError
from crsrisk.landmarks import FirstEvent, Grid, Hours
from crsrisk.tasks.base import TaskBase
from crsrisk.tasks.grade import GradeOnset
from crsrisk.tasks.refractory import TociRefractory

SEVERE_CRS = "severe CRS (ASTCT CRS grade >= 3)"
ANY_ICANS = "ICANS (any grade)"

DEFAULT_TASKS: Mapping[str, TaskBase] = MappingProxyType(
    {
        "severe_crs": GradeOnset(
            "severe_crs",
            "ASTCT CRS grade >= 3 from the landmark to day 28, among infusions without it so far",
            (Hours(0.0), Hours(36.0)),
            "severe-crs-v1",
            SEVERE_CRS,
            grade_event="crs_grade",
            grade_threshold=3,
        ),
        "icans": GradeOnset(
            "icans",
            "ICANS of any grade from the landmark to day 28, among infusions without ICANS so far",
            (Hours(0.0), Hours(36.0)),
            "icans-v1",
            ANY_ICANS,
            grade_event="icans_grade",
            grade_threshold=1,
            second_labels=MappingProxyType({"icans_severe": 3}),
        ),
        "severe_crs_dynamic": GradeOnset(
            "severe_crs_dynamic",
            "ASTCT CRS grade >= 3 in the 48 h after the landmark, asked every 12 h to day 7, "
            "among infusions without it so far",
            (Grid(0.0, 168.0, 12.0),),
            "severe-crs-next-v1",
            SEVERE_CRS,
            grade_event="crs_grade",
            grade_threshold=3,
            horizon_hours=48.0,
            horizon_from="landmark",
        ),
        "icans_dynamic": GradeOnset(
            "icans_dynamic",
            "ICANS of any grade in the 48 h after the landmark, asked every 12 h to day 7, among "
            "infusions without ICANS so far",
            (Grid(0.0, 168.0, 12.0),),
            "icans-next-v1",
            ANY_ICANS,
            grade_event="icans_grade",
            grade_threshold=1,
            horizon_hours=48.0,
            horizon_from="landmark",
        ),
        "toci_refractory": TociRefractory(
            "toci_refractory",
            "within 48 h of the first tocilizumab dose: siltuximab or anakinra, a third "
            "tocilizumab dose, corticosteroids for CRS, or a rise in CRS grade",
            (FirstEvent("tocilizumab"),),
            "toci-refractory-v1",
        ),
    }
)


def get_task(name: str | TaskBase) -> TaskBase:
    """A default task by name (a task passes through); the error lists the valid names."""
    if isinstance(name, TaskBase):
        return name
    try:
        return DEFAULT_TASKS[name]
    except (KeyError, TypeError):
        raise InputError(f"unknown task {name!r}; expected one of {list(DEFAULT_TASKS)}") from None


def task_from_settings(settings: Mapping[str, Any]) -> TaskBase:
    """Rebuild a task from ``describe()`` output (as stored in a model bundle)."""
    base = get_task(settings["name"])
    keep = {k: v for k, v in settings.items() if k not in ("name", "kind", "description")}
    return base.with_overrides(**keep)


def tasks_from_config(config: Mapping[str, Any]) -> dict[str, TaskBase]:
    """Tasks from ``{"tasks": {name: {setting: value}}}`` (settings override the defaults)."""
    entries = config.get("tasks", {}) if isinstance(config, Mapping) else None
    if not isinstance(entries, Mapping):
        raise InputError(f"tasks: expected a mapping of task name to settings, got {entries!r}")
    return {name: get_task(name).with_overrides(**dict(settings or {})) for name, settings in entries.items()}
