"""What every prediction task is: a risk set, an outcome rule and one ``dataset`` that joins labels to features.

A task kind implements four things on ``CohortArrays`` (numpy, so a cohort and one patient share the code):
``at_risk`` (who is still at risk at a landmark, and when that landmark is for each of them), ``outcome`` (when
the outcome happened inside the window, and when the window closes), ``occurrence`` (the first time the
outcome happened at all, for "already occurred" in predictions) and ``horizon`` / ``question`` (what a
prediction at an hour answers). Everything else (label tables, datasets, overrides) is written once, here.

Time conventions: what happened strictly before the landmark is known at it (``crsrisk.landmarks.known_at``);
what happens at or after it is outcome. An infusion whose follow-up ends before the window closes, without an
event, is excluded (and counted), never labelled negative.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from crsrisk.cohort.arrays import CohortArrays, cohort_arrays
from crsrisk.cohort.validated import Cohort
from crsrisk.errors import InputError
from crsrisk.features.build import feature_matrix
from crsrisk.features.spec import feature_names
from crsrisk.landmarks import FirstEvent, Hours, Landmark, parse_landmark

LABEL_COLUMNS = ["patient_id", "landmark_hours", "label", "excluded", "reason"]


@runtime_checkable
class Task(Protocol):
    """The protocol every task kind follows (see the module docstring)."""

    name: str
    description: str
    rule_version: str
    landmarks: tuple[Landmark, ...]
    kind: ClassVar[str]

    def at_risk(self, arrays: CohortArrays, landmark: Hours | FirstEvent) -> tuple[np.ndarray, np.ndarray]: ...

    def outcome(
        self, arrays: CohortArrays, codes: np.ndarray, hours: np.ndarray, label: str = "primary"
    ) -> tuple[np.ndarray, np.ndarray]: ...

    def occurrence(self, arrays: CohortArrays) -> np.ndarray: ...

    def horizon(self, hours: float) -> float: ...

    def outcome_window(self, hours: float) -> str: ...

    def question(self, hours: float) -> str: ...

    def observed(
        self, arrays: CohortArrays, codes: np.ndarray, hours: np.ndarray, label: str = "primary"
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...

    def risk_set(self, cohort: Cohort | CohortArrays, landmark: Any) -> pd.Series: ...

    def label_table(self, cohort: Cohort | CohortArrays, landmark: Any, label: str = "primary") -> pd.DataFrame: ...

    def dataset(
        self, cohort: Cohort, landmark: Any, arrays: CohortArrays | None = None, label: str = "primary"
    ) -> "Dataset": ...


@dataclass
class Dataset:
    """One task at one landmark (or a grid of them): features, labels, and who was left out.

    Rows are (infusion, landmark hour) pairs in risk set order, one per infusion for a single landmark and one
    per infusion per grid landmark for a super-model; ``patient_ids`` groups them for cross-validation.
    """

    task: "TaskBase"
    landmark: Landmark
    X: pd.DataFrame  # index patient_id (repeated across grid landmarks)
    y: np.ndarray
    patient_ids: pd.Series
    landmark_hours: np.ndarray
    centres: pd.Series
    counts: pd.DataFrame  # per landmark hour: risk_set, labelled, events, excluded

    @property
    def risk_set(self) -> int:
        """(Infusion, landmark) pairs in the risk set, labelled or not."""
        return int(self.counts["risk_set"].sum())

    @property
    def excluded(self) -> int:
        """Pairs excluded because follow-up ended before the window closed, without an event."""
        return int(self.counts["excluded"].sum())

    def at(self, hours: float) -> np.ndarray:
        """Row positions at one landmark hour."""
        return np.flatnonzero(self.landmark_hours == hours)


@dataclass(frozen=True)
class TaskBase:
    """What every task kind has (its name, description, landmarks and rule version) and their shared behaviour:
    overrides, plain-data form, risk sets over landmarks, labels, datasets."""

    name: str
    description: str
    landmarks: tuple[Landmark, ...]
    rule_version: str
    kind: ClassVar[str]
    _positive_hours: ClassVar[tuple[str, ...]] = ()

    if TYPE_CHECKING:  # each task kind implements these hooks of the Task protocol; declared for the type checker

        def at_risk(self, arrays: CohortArrays, landmark: Hours | FirstEvent) -> tuple[np.ndarray, np.ndarray]: ...

        def outcome(
            self, arrays: CohortArrays, codes: np.ndarray, hours: np.ndarray, label: str = "primary"
        ) -> tuple[np.ndarray, np.ndarray]: ...

        def occurrence(self, arrays: CohortArrays) -> np.ndarray: ...

        def horizon(self, hours: float) -> float: ...

        def outcome_window(self, hours: float) -> str: ...

        def question(self, hours: float) -> str: ...

    def with_overrides(self, **changes: Any) -> "TaskBase":
        """A copy with some fields changed; unknown fields or bad values raise ValueError naming them."""
        fields = {f.name for f in dataclasses.fields(self)} - {"name"}
        unknown = sorted(set(changes) - fields)
        if unknown:
            raise InputError(f"task {self.name}: unknown setting(s) {unknown}; expected some of {sorted(fields)}")
        if "landmarks" in changes:
            try:
                changes["landmarks"] = tuple(parse_landmark(v) for v in changes["landmarks"])
            except (TypeError, ValueError) as error:
                raise InputError(f"task {self.name}: {error}") from None
        if "second_labels" in changes:
            changes["second_labels"] = MappingProxyType(dict(changes["second_labels"]))
        for key in self._positive_hours:
            value = changes.get(key, 1.0)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise InputError(f"task {self.name}: {key} must be a positive number of hours, got {value!r}")
        task = dataclasses.replace(self, **changes)
        task.check()
        return task

    def check(self) -> None:
        """Raise ValueError naming any setting that cannot work (the kinds add their own rules)."""

    def describe(self) -> dict[str, Any]:
        """Plain-data form for reports, metrics.json and bundles (``task_from_settings`` reads it back)."""
        data: dict[str, Any] = {"kind": self.kind}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            data[f.name] = (
                [lm.to_json() for lm in value]
                if f.name == "landmarks"
                else dict(value)
                if f.name == "second_labels"
                else value
            )
        return data

    def horizons(self, hours: np.ndarray) -> np.ndarray:
        """``horizon`` of each of many prediction hours (computed once per distinct hour)."""
        distinct, where = np.unique(np.asarray(hours, dtype=float), return_inverse=True)
        return np.array([self.horizon(h) for h in distinct.tolist()], dtype=float)[where.reshape(np.shape(hours))]

    def horizon_end(self, hours: np.ndarray) -> np.ndarray:
        """Hour after infusion at which the outcome window of a prediction at ``hours`` closes."""
        return np.asarray(hours, dtype=float) + self.horizons(hours)

    def risk_set(self, cohort: Cohort | CohortArrays, landmark: Any) -> pd.Series:
        """Landmark hour of every infusion in the risk set (index patient_id; a grid's points stacked)."""
        arrays = cohort if isinstance(cohort, CohortArrays) else cohort_arrays(cohort)
        pairs = [self.at_risk(arrays, point) for point in parse_landmark(landmark).points()]
        codes = np.concatenate([c for c, _ in pairs])
        return pd.Series(
            np.concatenate([h for _, h in pairs]),
            dtype="float64",
            name="landmark_hours",
            index=pd.Index(arrays.patient_ids[codes].astype(object), name="patient_id"),
        )

    def label_table(self, cohort: Cohort | CohortArrays, landmark: Any, label: str = "primary") -> pd.DataFrame:
        """Label of every infusion in the risk set at the landmark (every point of a grid, stacked): 1/0, or NA
        and ``excluded`` (with the reason) when follow-up ended before the window closed without an event."""
        arrays = cohort if isinstance(cohort, CohortArrays) else cohort_arrays(cohort)
        frames = [self._point_labels(arrays, point, label) for point in parse_landmark(landmark).points()]
        return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]

    def observed(
        self, arrays: CohortArrays, codes: np.ndarray, hours: np.ndarray, label: str = "primary"
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For predictions of infusions ``codes`` at ``hours``: whether the outcome happened in the window, whether
        it is unknown (follow-up ended before the window closed, without an event: excluded from training, pending
        in monitoring, never a negative), and the hour each window closes. The one home of that rule."""
        onset, window_end = self.outcome(arrays, codes, hours, label)
        event = np.isfinite(onset)
        return event, ~event & (arrays.followup[codes] < window_end), window_end

    def _point_labels(self, arrays: CohortArrays, point: Hours | FirstEvent, label: str) -> pd.DataFrame:
        codes, hours = self.at_risk(arrays, point)
        event, excluded, window_end = self.observed(arrays, codes, hours, label)
        follow = arrays.followup[codes]
        reason = np.full(codes.size, "", dtype=object)
        reason[excluded] = [
            f"follow-up ended at {f:g} h before the outcome window closed at {w:g} h, without an event"
            for f, w in zip(follow[excluded].tolist(), window_end[excluded].tolist())
        ]
        return pd.DataFrame(
            {
                "patient_id": arrays.patient_ids[codes].astype(str),
                "landmark_hours": hours,
                "label": pd.array(np.where(excluded, pd.NA, event.astype(int)), dtype="Int8"),
                "excluded": excluded,
                "reason": reason,
            }
        )[LABEL_COLUMNS]

    def dataset(
        self, cohort: Cohort, landmark: Any, arrays: CohortArrays | None = None, label: str = "primary"
    ) -> Dataset:
        """The one place that joins labels to leakage-free features: the labelled risk set at the landmark (or at
        each grid point, stacked) with its feature rows; excluded infusions dropped and counted per landmark."""
        landmark = parse_landmark(landmark)
        arrays = cohort_arrays(cohort) if arrays is None else arrays
        labels = self.label_table(arrays, landmark, label)
        kept = labels[~labels["excluded"]]
        codes = arrays.codes(kept["patient_id"].to_numpy())
        hours = kept["landmark_hours"].to_numpy(dtype=np.float64)
        window = landmark.window
        X = pd.DataFrame(
            feature_matrix(arrays, codes, hours, window),
            index=pd.Index(kept["patient_id"].to_numpy(dtype=object), name="patient_id"),
            columns=feature_names(window),
        )
        centres = cohort.patients.set_index("patient_id")["center"].reindex(X.index)
        counts = labels.groupby("landmark_hours", sort=True).agg(
            risk_set=("patient_id", "size"),
            excluded=("excluded", "sum"),
            events=("label", lambda s: int(s.dropna().astype(int).sum())),
        )
        counts["labelled"] = counts["risk_set"] - counts["excluded"]
        return Dataset(
            self,
            landmark,
            X,
            kept["label"].astype(int).to_numpy(),
            pd.Series(X.index, index=X.index),
            hours,
            centres,
            counts.reset_index()[["landmark_hours", "risk_set", "labelled", "events", "excluded"]],
        )
