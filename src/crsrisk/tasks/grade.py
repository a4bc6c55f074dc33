"""Grade onset: "will an ASTCT grade reach a threshold?" (severe CRS, ICANS), by a fixed day or in the next H hours.

Risk set at a landmark: no record of ``grade_event`` >= ``grade_threshold`` strictly before it. Label: such a record
at or after the landmark and before the window closes, which is ``horizon_hours`` after infusion
(``horizon_from="infusion"``: "by day 28") or after the landmark (``horizon_from="landmark"``: "in the next 48 h").
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from types import MappingProxyType
from typing import ClassVar, Literal, Mapping

import numpy as np

from crsrisk.cohort.arrays import CohortArrays
from crsrisk.errors import InputError
from crsrisk.landmarks import FirstEvent, Hours, known_at
from crsrisk.tasks.base import TaskBase
from crsrisk.tasks.events import everyone_events, listed_events


@dataclass(frozen=True)
class GradeOnset(TaskBase):
    """A grade-onset task (see the module docstring)."""

    outcome_text: str  # how questions name the outcome: "severe CRS (grade >= 3)"
    grade_event: str = "crs_grade"
    grade_threshold: int = 3
    horizon_hours: float = 28 * 24.0
    horizon_from: Literal["infusion", "landmark"] = "infusion"
    second_labels: Mapping[str, int] = dataclasses.field(default_factory=lambda: MappingProxyType({}))

    kind: ClassVar[str] = "grade_onset"
    _positive_hours: ClassVar[tuple[str, ...]] = ("horizon_hours",)

    def check(self) -> None:
        """Thresholds 1-4, a known window anchor, and landmarks that are hours (or grids) before the window ends."""
        if self.grade_threshold not in (1, 2, 3, 4) or any(v not in (1, 2, 3, 4) for v in self.second_labels.values()):
            raise InputError(f"task {self.name}: grade_threshold must be 1-4, got {self.grade_threshold!r}")
        if self.horizon_from not in ("infusion", "landmark"):
            raise InputError(
                f"task {self.name}: horizon_from must be 'infusion' or 'landmark', got {self.horizon_from!r}"
            )
        for landmark in self.landmarks:
            if isinstance(landmark, FirstEvent):
                raise InputError(f"task {self.name}: landmarks must be hours or a grid, got {landmark.label!r}")
            if self.horizon_from == "infusion" and max(p.hours for p in landmark.points()) >= self.horizon_hours:
                raise InputError(
                    f"task {self.name}: landmark {landmark.label} is not before the horizon {self.horizon_hours:g} h"
                )

    def _threshold(self, label: str) -> int:
        if label == "primary":
            return self.grade_threshold
        if label not in self.second_labels:
            raise InputError(
                f"task {self.name}: unknown label {label!r}; expected 'primary' or one of {list(self.second_labels)}"
            )
        return self.second_labels[label]

    def at_risk(self, arrays: CohortArrays, landmark: Hours | FirstEvent) -> tuple[np.ndarray, np.ndarray]:
        """Infusions with no qualifying grade known at the landmark, and the landmark hour of each."""
        if not isinstance(landmark, Hours):
            raise InputError(f"task {self.name}: landmark must be hours after infusion, got {landmark.label!r}")
        if self.horizon_from == "infusion" and landmark.hours >= self.horizon_hours:
            raise InputError(
                f"task {self.name}: landmark {landmark.hours:g} h is not before the horizon {self.horizon_hours:g} h"
            )
        everyone = np.arange(arrays.patient_ids.size)
        events = everyone_events(arrays)
        reached = events.of(self.grade_event) & (events.value >= self.grade_threshold)
        reached &= known_at(events.hours, landmark.hours)
        out = np.ones(everyone.size, dtype=bool)
        out[events.owner[reached]] = False
        codes = np.flatnonzero(out)
        return codes, np.full(codes.size, float(landmark.hours))

    def outcome(
        self, arrays: CohortArrays, codes: np.ndarray, hours: np.ndarray, label: str = "primary"
    ) -> tuple[np.ndarray, np.ndarray]:
        """First qualifying grade record at or after each landmark and before its window closes (inf if none),
        and the hour the window closes."""
        end = self.horizon_end(hours)
        events = listed_events(arrays, codes)
        owner = events.owner
        hit = events.of(self.grade_event) & (events.value >= self._threshold(label))
        hit &= ~known_at(events.hours, hours[owner]) & (events.hours < end[owner])
        return events.first(hit, codes.size), end

    def occurrence(self, arrays: CohortArrays) -> np.ndarray:
        """First qualifying grade record of each infusion (NaN when none)."""
        events = everyone_events(arrays)
        everyone = np.arange(arrays.patient_ids.size)
        first = events.first(events.of(self.grade_event) & (events.value >= self.grade_threshold), everyone.size)
        return np.where(np.isfinite(first), first, np.nan)

    def horizon(self, hours: float) -> float:
        """Hours from a prediction at ``hours`` to the close of its window."""
        return float(self.horizon_hours) if self.horizon_from == "landmark" else float(self.horizon_hours - hours)

    def outcome_window(self, hours: float) -> str:
        """What a prediction at ``hours`` is about and over which window, in words (a plot legend's label)."""
        if self.horizon_from == "landmark":
            return f"{self.outcome_text} in the next {self.horizon_hours:g} h"
        return f"{self.outcome_text} by day {self.horizon_hours / 24:g}"

    def question(self, hours: float) -> str:
        """What a prediction at ``hours`` answers, in words."""
        return f"{self.outcome_window(hours)}, as of hour {hours:g}"
