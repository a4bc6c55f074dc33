"""The join: every audited prediction with the outcome observed later, by pseudonymous patient key and landmark hour.

Streaming and pure (no file is read here): predictions arrive in log order and leave grouped by period, model version
(``model_sha256``), task and landmark (for a super-model, the grid point at or below the hour it was asked at), in
chunks that are resolved as they fill, so memory holds one chunk per group plus a few numbers per prediction of the
open period (never the log).

**The key.** A record's ``patient_hash`` is HMAC-SHA256(pseudonym key, patient id as UTF-8), hex
(``crsrisk.audit.keys.pseudonym``); the pseudonym key is the per-user key of the writer (``$CRSRISK_AUDIT_SALT``,
else ``$CRSRISK_AUDIT_PSEUDONYM_KEY_FILE``, else ``$XDG_CONFIG_HOME/crsrisk/pseudonym.key``), separate from the
chain's HMAC key. The outcome cohort reproduces it by hashing its own ``patient_id`` s under the same key
(``Outcomes.of``); the log itself never holds a raw identifier, and whoever lacks the key cannot link it.

**The outcome.** Each prediction's outcome is the task definition's own rule (``Task.observed``: the outcome in the
window after the landmark; unknown when follow-up ended before the window closed without an event, which is
*pending* here, never a negative). A prediction whose outcome the cohort shows before its landmark (recorded late)
is ``prior_outcome``; one whose patient is not in the cohort is ``unmatched``. Neither is labelled.
"""

from __future__ import annotations

import re
from array import array
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from crsrisk.audit.keys import pseudonym
from crsrisk.bundle.format import TaskModel
from crsrisk.bundle.store import Bundle
from crsrisk.cohort.arrays import CohortArrays, cohort_arrays
from crsrisk.cohort.validated import Cohort
from crsrisk.errors import InputError
from crsrisk.features.build import feature_matrix
from crsrisk.landmarks import FirstEvent, Grid, Hours, Landmark, known_at
from crsrisk.monitoring.drift import DriftCounts, reference_for
from crsrisk.monitoring.stream import Prediction
from crsrisk.tasks import TaskBase, get_task

CHUNK = 8192  # predictions of one group resolved together (outcomes and features: vectorised)
EVENT, NO_EVENT, PENDING, PRIOR, UNMATCHED = "event", "no_event", "pending", "prior_outcome", "unmatched"
_MONTH = re.compile(r"\d{4}-\d{2}")


@dataclass(frozen=True)
class Outcomes:
    """The outcome cohort as the join reads it: its arrays and each patient's code by pseudonym."""

    arrays: CohortArrays
    codes: Mapping[str, int]
    fingerprint: str

    @classmethod
    def of(cls, cohort: Cohort, key: bytes) -> "Outcomes":
        """Index a cohort by the pseudonyms its patient ids get under the log's pseudonym key."""
        arrays = cohort_arrays(cohort)
        codes = {pseudonym(key, str(pid)): code for code, pid in enumerate(arrays.patient_ids.tolist())}
        return cls(arrays, codes, cohort.fingerprint())


@dataclass(frozen=True)
class Group:
    """What one row of a period's figures is about: a model version, a task and a landmark."""

    model_sha256: str
    task: str
    landmark: str  # the answering model's landmark ("36h", "first_tocilizumab") or a super-model's grid point
    model_key: str  # the answering model's key (as in the bundle): its training population is keyed by it
    point: float | None = None  # the grid point, for a super-model

    @property
    def name(self) -> str:
        """``severe_crs@36h (model 1a2b3c4d5e6f)``."""
        return f"{self.task}@{self.landmark} (model {self.model_sha256[:12]})"


def answering(landmarks: Sequence[Landmark], hours: float) -> tuple[Landmark, float | None] | None:
    """The landmark of a task's models that answered a prediction at landmark ``hours`` (with the grid point at or
    below it, for a super-model), or None when no model of the task has that landmark."""
    for landmark in landmarks:
        if isinstance(landmark, Hours) and abs(landmark.hours - hours) < 1e-9:
            return landmark, None
        if isinstance(landmark, Grid) and landmark.covers(hours):
            points = landmark.hours
            return landmark, float(points[np.searchsorted(points, hours + 1e-9, side="right") - 1])
        if isinstance(landmark, FirstEvent):
            return landmark, None
    return None


class Models:
    """Model versions by SHA-256: the bundles given or found, each with its task definitions; a version without a
    bundle is judged by the default task definitions and has no training population (no input drift)."""

    def __init__(self, bundles: Iterable[Bundle] = (), notes: list[str] | None = None) -> None:
        self.bundles = {bundle.digest: bundle for bundle in bundles}
        self.notes = notes if notes is not None else []

    def definition(self, sha: str, task: str) -> TaskBase | None:
        """The task as the model version defines it (its bundle), else the default task; None for an unknown one."""
        bundle = self.bundles.get(sha)
        if bundle is not None and bundle.for_task(task):
            return bundle.for_task(task)[0].definition
        try:
            return get_task(task)
        except InputError:
            return None

    def model(self, sha: str, task: str, landmark: Landmark) -> TaskModel | None:
        """The bundle's model of ``task`` at ``landmark``, when the version's bundle is known."""
        bundle = self.bundles.get(sha)
        found = [m for m in bundle.for_task(task) if m.landmark == landmark] if bundle is not None else []
        return found[0] if found else None

    def landmarks(self, sha: str, task: str, definition: TaskBase) -> Sequence[Landmark]:
        """The landmarks the version's models of ``task`` answer at (the definition's, without a bundle)."""
        bundle = self.bundles.get(sha)
        models = bundle.for_task(task) if bundle is not None else []
        return [m.landmark for m in models] or list(definition.landmarks)


@dataclass(frozen=True)
class PeriodRule:
    """Calendar months of the record's UTC time (``every`` None), or blocks of ``every`` predictions in log order."""

    every: int | None = None

    def __post_init__(self) -> None:
        if self.every is not None and (
            isinstance(self.every, bool) or not isinstance(self.every, int) or self.every < 1
        ):
            raise InputError(f"every: expected a whole number of predictions of at least 1, got {self.every!r}")

    @property
    def kind(self) -> str:
        """``month`` or ``every N``."""
        return "month" if self.every is None else f"every {self.every}"

    def key(self, index: int, prediction: Prediction) -> str | None:
        """The period of the ``index``-th prediction (0-based): ``2026-12`` or ``1-500``; None for a record time
        that is no ISO date."""
        if self.every is None:
            month = prediction.utc_time[:7]
            return month if _MONTH.fullmatch(month) else None
        start = index // self.every * self.every
        return f"{start + 1}-{start + self.every}"


@dataclass
class GroupState:
    """One group's predictions in the open period: counts, band counts, labelled outcomes, input drift counts."""

    group: Group
    definition: TaskBase
    model: TaskModel | None
    drift: DriftCounts | None
    counts: Counter = field(default_factory=Counter)
    bands: Counter = field(default_factory=Counter)
    y: array = field(default_factory=lambda: array("b"))
    p: array = field(default_factory=lambda: array("d"))
    who: array = field(default_factory=lambda: array("q"))
    _codes: array = field(default_factory=lambda: array("q"))
    _hours: array = field(default_factory=lambda: array("d"))
    _probabilities: array = field(default_factory=lambda: array("d"))

    def add(self, code: int | None, prediction: Prediction) -> bool:
        """Take one prediction; True when its chunk is full and should be resolved."""
        self.counts["volume"] += 1
        self.bands[prediction.band or "none"] += 1
        if code is None:
            self.counts[UNMATCHED] += 1
            return False
        self._codes.append(code)
        self._hours.append(prediction.landmark_hours)
        self._probabilities.append(prediction.probability)
        return len(self._codes) >= CHUNK

    def resolve(self, outcomes: Outcomes, onsets: Callable[[TaskBase], np.ndarray], outside: np.ndarray | None) -> None:
        """Label the buffered chunk by the task's own rule, count pending and prior outcomes, count input drift."""
        if not self._codes:
            return
        codes = np.frombuffer(self._codes, dtype=np.int64).copy()
        hours = np.frombuffer(self._hours, dtype=np.float64).copy()
        probabilities = np.frombuffer(self._probabilities, dtype=np.float64).copy()
        status = outcome_status(self.definition, outcomes.arrays, codes, hours, onsets(self.definition))
        for name, count in Counter(status.tolist()).items():
            self.counts[name] += count
        labelled = (status == EVENT) | (status == NO_EVENT)
        self.y.extend((status[labelled] == EVENT).astype(np.int8).tolist())
        self.p.extend(probabilities[labelled].tolist())
        self.who.extend(codes[labelled].tolist())
        if self.drift is not None and self.model is not None:
            features = feature_matrix(outcomes.arrays, codes, hours, window=True)[:, self.model.columns]
            self.drift.add(features, None if outside is None else outside[codes])
        for buffer in (self._codes, self._hours, self._probabilities):
            del buffer[:]


def outcome_status(
    definition: TaskBase, arrays: CohortArrays, codes: np.ndarray, hours: np.ndarray, onset: np.ndarray
) -> np.ndarray:
    """Each prediction's outcome status (``EVENT``, ``NO_EVENT``, ``PENDING``, ``PRIOR``): the task's rule
    (``observed``) for the window after the landmark; ``onset`` is the task's first outcome hour per patient."""
    event, unknown, _ = definition.observed(arrays, codes, hours)
    status = np.where(event, EVENT, np.where(unknown, PENDING, NO_EVENT)).astype(object)
    status[known_at(onset[codes], hours)] = PRIOR
    return status


@dataclass
class JoinedPeriod:
    """One closed period: its key and position, the log's record range and times, and each group's state."""

    key: str
    index: int
    groups: dict[Group, GroupState]
    first_seq: int
    last_seq: int
    first_time: str
    last_time: str


@dataclass
class JoinTally:
    """What the join could not place: predictions of unknown tasks or landmarks, undated records, late stamps."""

    counts: Counter = field(default_factory=Counter)


def join(
    predictions: Iterable[Prediction],
    outcomes: Outcomes,
    models: Models,
    rule: PeriodRule,
    outside: Callable[[str], np.ndarray | None] = lambda sha: None,
    tally: JoinTally | None = None,
) -> Iterator[JoinedPeriod]:
    """Join each prediction with its outcome and yield each period as it closes (a month when a later month's record
    arrives; N predictions when the N-th arrives). ``outside`` gives, per model version, whether each cohort patient
    is outside its training population (None: not known)."""
    tally = tally if tally is not None else JoinTally()
    onset_cache: dict[int, np.ndarray] = {}

    def onsets(definition: TaskBase) -> np.ndarray:
        if id(definition) not in onset_cache:
            onset_cache[id(definition)] = np.asarray(definition.occurrence(outcomes.arrays), dtype=float)
        return onset_cache[id(definition)]

    group_of: dict[tuple[str, str, float], tuple[Group, TaskBase, TaskModel | None] | None] = {}
    current: JoinedPeriod | None = None
    index, periods = 0, 0
    for prediction in predictions:
        key = rule.key(index, prediction)
        if key is None:
            tally.counts["undated"] += 1
            continue
        index += 1
        if current is not None and key != current.key:
            if rule.every is None and key < current.key:
                tally.counts["stamped_before_the_open_month"] += 1
                key = current.key
            else:
                yield _closed(current, outcomes, onsets, outside)
                current = None
        if current is None:
            current = JoinedPeriod(key, periods, {}, prediction.seq, prediction.seq, prediction.utc_time, "")
            periods += 1
        current.last_seq, current.last_time = prediction.seq, prediction.utc_time
        where = (prediction.model_sha256, prediction.task, prediction.landmark_hours)
        if where not in group_of:
            group_of[where] = _group(models, *where)
        found = group_of[where]
        if found is None:
            tally.counts["unknown_task_or_landmark"] += 1
            continue
        group, definition, model = found
        state = current.groups.get(group)
        if state is None:
            state = current.groups[group] = GroupState(group, definition, model, _drift(models, group, model))
        if state.add(outcomes.codes.get(prediction.patient_hash), prediction):
            state.resolve(outcomes, onsets, outside(group.model_sha256))
    if current is not None:
        yield _closed(current, outcomes, onsets, outside)


def _group(models: Models, sha: str, task: str, hours: float) -> tuple[Group, TaskBase, TaskModel | None] | None:
    definition = models.definition(sha, task)
    if definition is None:
        return None
    found = answering(models.landmarks(sha, task, definition), hours)
    if found is None:
        return None
    landmark, point = found
    label = landmark.label if point is None else f"{point:g}h"
    model = models.model(sha, task, landmark)
    return Group(sha, task, label, f"{task}__{landmark.label}", point), definition, model


def _drift(models: Models, group: Group, model: TaskModel | None) -> DriftCounts | None:
    bundle = models.bundles.get(group.model_sha256)
    if bundle is None or model is None:
        return None
    reference, note = reference_for(bundle.metadata.training_population, group.model_key, group.point)
    if note and note not in models.notes:
        models.notes.append(note)
    return None if reference is None else DriftCounts(reference)


def _closed(
    period: JoinedPeriod,
    outcomes: Outcomes,
    onsets: Callable[[TaskBase], np.ndarray],
    outside: Callable[[str], np.ndarray | None],
) -> JoinedPeriod:
    for state in period.groups.values():
        state.resolve(outcomes, onsets, outside(state.group.model_sha256))
    return period


def describe_group(group: Group) -> dict[str, Any]:
    """A group as plain data for the report."""
    return {
        "model_sha256": group.model_sha256,
        "task": group.task,
        "landmark": group.landmark,
        "model_key": group.model_key,
        "name": group.name,
    }
