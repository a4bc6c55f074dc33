"""Landmarks as typed values: when a prediction is made, for each infusion, and what it may read.

A landmark knows its label (``36h``, ``first_tocilizumab``, ``every12h_0-168h``), its hour for each infusion
(``times``), and its JSON form for bundles and configs. The window rule is the same for all of them and lives
in one place, ``known_at``: a record is known at a landmark when it happened strictly before it; anything at or
after the landmark is outcome. The feature kernel and the risk-set code both select rows with it.

Three kinds:
- ``Hours(h)``: h hours after infusion, the same for every infusion (0 = just before infusion).
- ``FirstEvent("tocilizumab")``: the first recorded dose of a drug within follow-up; infusions without one
  never reach it.
- ``Grid(start, stop, step)``: many ``Hours`` landmarks at once, the training set of a landmark super-model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union

import numpy as np

from crsrisk.cohort.arrays import EVENT_CODES, CohortArrays
from crsrisk.errors import InputError
from crsrisk.schema.tables import DRUG_EVENTS


def known_at(record_hours: np.ndarray, landmark_hours: np.ndarray | float) -> np.ndarray:
    """The window rule: True where a record (measurement or event) is known at the landmark, i.e. strictly before it."""
    return np.asarray(record_hours) < landmark_hours


@dataclass(frozen=True)
class Hours:
    """A fixed number of hours after infusion, the same for every infusion."""

    hours: float

    def __post_init__(self) -> None:
        if not np.isfinite(self.hours) or self.hours < 0:
            raise InputError(f"landmark: must be hours >= 0 after infusion (finite), got {self.hours!r}")

    @property
    def label(self) -> str:
        """``0h``, ``36h``, ``40.5h``."""
        return f"{self.hours:g}h"

    @property
    def words(self) -> str:
        """When the question is asked, in words: ``at hour 36``."""
        return f"at hour {self.hours:g}"

    @property
    def window(self) -> bool:
        """True when post-infusion data can exist before this landmark."""
        return self.hours > 0

    def points(self) -> tuple["Hours", ...]:
        """The single landmarks this one stands for (itself)."""
        return (self,)

    def times(self, arrays: "CohortArrays") -> np.ndarray:
        """This landmark's hour for every infusion."""
        return np.full(arrays.patient_ids.size, float(self.hours))

    def hours_at(self, arrays: "CohortArrays", now: float) -> np.ndarray:
        """Per infusion, the landmark hour that applies at hour ``now`` (NaN when not reached by then)."""
        return np.full(arrays.patient_ids.size, float(self.hours) if self.hours <= now else np.nan)

    def to_json(self) -> float:
        """Plain-data form (a number of hours)."""
        return float(self.hours)


@dataclass(frozen=True)
class FirstEvent:
    """The first recorded dose of a drug within follow-up (NaN for infusions that never received it)."""

    event: str = "tocilizumab"

    def __post_init__(self) -> None:
        if self.event not in DRUG_EVENTS:
            raise InputError(f"landmark: first_<drug> needs one of {list(DRUG_EVENTS)}, got {self.event!r}")

    @property
    def label(self) -> str:
        """``first_tocilizumab``."""
        return f"first_{self.event}"

    @property
    def words(self) -> str:
        """When the question is asked, in words: ``at the first tocilizumab dose``."""
        return f"at the first {self.event} dose"

    window = True

    def points(self) -> tuple["FirstEvent", ...]:
        """The single landmarks this one stands for (itself)."""
        return (self,)

    def times(self, arrays: "CohortArrays") -> np.ndarray:
        """Hour of each infusion's first dose within its follow-up; NaN when there is none."""
        events = arrays.events
        dose = (events.code == EVENT_CODES[self.event]) & (events.hours <= arrays.followup[events.patient])
        first = np.full(arrays.patient_ids.size, np.inf)
        np.minimum.at(first, events.patient[dose], events.hours[dose])
        return np.where(np.isfinite(first), first, np.nan)

    def hours_at(self, arrays: "CohortArrays", now: float) -> np.ndarray:
        """Per infusion, the first dose hour when the dose is known at ``now`` (strictly before it), else NaN."""
        first = self.times(arrays)
        return np.where(known_at(first, now), first, np.nan)

    def to_json(self) -> str:
        """Plain-data form (the label)."""
        return self.label


@dataclass(frozen=True)
class Grid:
    """Every ``step`` hours from ``start`` to ``stop`` (inclusive): the landmarks of one super-model."""

    start: float = 0.0
    stop: float = 168.0
    step: float = 12.0

    def __post_init__(self) -> None:
        if not (0 <= self.start <= self.stop and self.step > 0 and np.isfinite(self.stop)):
            raise InputError(
                f"landmark grid: need 0 <= start <= stop and step > 0, got start={self.start!r}, "
                f"stop={self.stop!r}, step={self.step!r}"
            )

    @property
    def label(self) -> str:
        """``every12h_0-168h``."""
        return f"every{self.step:g}h_{self.start:g}-{self.stop:g}h"

    @property
    def words(self) -> str:
        """When the question is asked, in words: ``every 12 h from hour 0 to 168``."""
        return f"every {self.step:g} h from hour {self.start:g} to {self.stop:g}"

    window = True

    @property
    def hours(self) -> np.ndarray:
        """The grid's hours after infusion."""
        return np.round(np.arange(self.start, self.stop + self.step / 2, self.step), 6)

    def points(self) -> tuple[Hours, ...]:
        """Each grid landmark as ``Hours``."""
        return tuple(Hours(float(h)) for h in self.hours)

    def covers(self, hours: float) -> bool:
        """True when ``hours`` lies within the grid's span (a super-model may be asked anywhere inside it)."""
        return self.start <= hours <= self.stop

    def hours_at(self, arrays: "CohortArrays", now: float) -> np.ndarray:
        """A super-model is asked at ``now`` itself (not at the grid point below it), anywhere inside the grid."""
        return np.full(arrays.patient_ids.size, float(now) if self.covers(now) else np.nan)

    def to_json(self) -> dict[str, float]:
        """Plain-data form."""
        return {"start": self.start, "stop": self.stop, "step": self.step}


Landmark = Union[Hours, FirstEvent, Grid]
LANDMARK_KINDS: tuple[type[Hours], type[FirstEvent], type[Grid]] = (Hours, FirstEvent, Grid)  # every landmark kind


def parse_landmark(value: Any) -> Landmark:
    """A landmark from its config/JSON form: hours (``36``, ``"36h"``), ``"first_<drug>"``, a grid mapping
    ``{"start", "stop", "step"}``; a ``Landmark`` passes through. Anything else is a ValueError naming it."""
    if isinstance(value, LANDMARK_KINDS):
        return value
    if isinstance(value, bool):
        raise InputError(f"landmark: expected hours, 'first_<drug>' or a grid, got {value!r}")
    if isinstance(value, (int, float)):
        return Hours(float(value))
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("first_"):
            return FirstEvent(text[len("first_") :])
        try:
            return Hours(float(text[:-1] if text.endswith("h") else text))
        except ValueError:
            pass
    if isinstance(value, dict) and set(value) <= {"start", "stop", "step"}:
        try:
            return Grid(**{k: float(v) for k, v in value.items()})
        except (TypeError, ValueError) as error:
            raise InputError(f"landmark grid {value!r}: {error}") from None
    raise InputError(f"landmark: expected hours >= 0, 'first_<drug>' or a grid {{start, stop, step}}, got {value!r}")
