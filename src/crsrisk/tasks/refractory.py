"""Tocilizumab-refractory CRS: the project's own rule (no consensus definition exists, clinical-facts.md).

Landmark: the first tocilizumab dose (infusions without one are not in the risk set). Refractory within
``window_hours`` of it: siltuximab or anakinra; a dose of tocilizumab beyond ``max_tocilizumab_doses``;
corticosteroids while the ICANS grade in force is 0 (so taken to be for CRS; configurable); or a CRS grade record
above the grade in force at the first dose. The rule carries a version that every report shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from crsrisk.cohort.arrays import CohortArrays
from crsrisk.errors import InputError
from crsrisk.landmarks import FirstEvent, Hours
from crsrisk.tasks.base import TaskBase
from crsrisk.tasks.events import listed_events


@dataclass(frozen=True)
class TociRefractory(TaskBase):
    """The tocilizumab-refractory task (see the module docstring)."""

    window_hours: float = 48.0
    max_tocilizumab_doses: int = 2  # a third dose within the window counts as refractory (DESIGN.md)
    steroids_only_without_icans: bool = True  # steroids while ICANS grade is 0 are taken to be for CRS

    kind: ClassVar[str] = "toci_refractory"
    _positive_hours: ClassVar[tuple[str, ...]] = ("window_hours",)

    def check(self) -> None:
        """The only landmark is the first tocilizumab dose."""
        if self.landmarks != (FirstEvent("tocilizumab"),):
            raise InputError(
                f"task {self.name}: the landmark is 'first_tocilizumab', got {[lm.label for lm in self.landmarks]}"
            )

    def at_risk(self, arrays: CohortArrays, landmark: Hours | FirstEvent) -> tuple[np.ndarray, np.ndarray]:
        """Infusions that received tocilizumab within follow-up, at their first dose."""
        if landmark != FirstEvent("tocilizumab"):
            raise InputError(f"task {self.name}: landmark must be 'first_tocilizumab', got {landmark.label!r}")
        first = landmark.times(arrays)
        codes = np.flatnonzero(np.isfinite(first))
        return codes, first[codes]

    def outcome(
        self, arrays: CohortArrays, codes: np.ndarray, hours: np.ndarray, label: str = "primary"
    ) -> tuple[np.ndarray, np.ndarray]:
        """Hour of the first refractoriness criterion met within the window after each first dose (inf if none),
        and the hour the window closes."""
        if label != "primary":
            raise InputError(f"task {self.name}: only the primary label exists, got {label!r}")
        end = hours + self.window_hours
        events = listed_events(arrays, codes)
        owner, t = events.owner, events.hours
        inside = (t >= hours[owner]) & (t <= end[owner])
        hit = inside & (events.of("siltuximab") | events.of("anakinra"))
        doses = inside & events.of("tocilizumab")
        counted = np.concatenate([[0], np.cumsum(doses)])
        rank = counted[1:] - counted[events.offsets[owner]]  # 1-based rank of each dose within its infusion's window
        hit |= doses & (rank > self.max_tocilizumab_doses)
        steroids = inside & events.of("corticosteroid")
        if self.steroids_only_without_icans and steroids.any():
            where = np.flatnonzero(steroids)
            steroids[where] = events.in_force("icans_grade", owner[where], t[where]) == 0
        hit |= steroids
        rises = (t > hours[owner]) & (t <= end[owner]) & events.of("crs_grade")
        if rises.any():
            where = np.flatnonzero(rises)
            reference = events.in_force("crs_grade", owner[where], hours[owner[where]])
            rises[where] = events.value[where] > reference
        hit |= rises
        return events.first(hit, codes.size), end

    def occurrence(self, arrays: CohortArrays) -> np.ndarray:
        """Hour each infusion became refractory (NaN when it did not, or never received tocilizumab)."""
        onset = np.full(arrays.patient_ids.size, np.nan)
        codes, hours = self.at_risk(arrays, FirstEvent("tocilizumab"))
        first, _ = self.outcome(arrays, codes, hours)
        onset[codes] = np.where(np.isfinite(first), first, np.nan)
        return onset

    def horizon(self, hours: float) -> float:
        """Hours from the first dose to the close of the window."""
        return float(self.window_hours)

    def outcome_window(self, hours: float) -> str:
        """What a prediction at the first dose is about and over which window, in words."""
        return f"tocilizumab-refractory CRS within {self.window_hours:g} h of the first tocilizumab dose"

    def question(self, hours: float) -> str:
        """What a prediction at the first dose answers, in words."""
        return f"{self.outcome_window(hours)} (hour {hours:g})"
