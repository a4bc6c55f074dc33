"""Conformance checks in the style of scikit-learn's ``parametrize_with_checks``: every registered definition is
held to the same contract, so a new one is covered by adding it to its registry."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import expit
from sklearn.base import clone
from sklearn.model_selection import StratifiedGroupKFold

from crsrisk.bundle.calibration import CALIBRATORS, Calibrator, fit_calibrator
from crsrisk.cohort.arrays import cohort_arrays
from crsrisk.cohort.validate import validate_tables
from crsrisk.cohort.validated import Cohort
from crsrisk.errors import InputError
from crsrisk.evaluation.published import BASELINES, PublishedScore, baseline_computable
from crsrisk.landmarks import FirstEvent, Grid, Hours, Landmark, parse_landmark
from crsrisk.tasks import DEFAULT_TASKS, TaskBase, task_from_settings
from crsrisk.tasks.grade import GradeOnset
from crsrisk.tasks.refractory import TociRefractory
from crsrisk.training.config import TrainConfig
from crsrisk.training.families import FAMILIES

Check = Callable[[], None]


def _fitted(method: str) -> Calibrator:
    """A calibrator of ``method`` fitted on a fixed, noisy sample."""
    rng = np.random.default_rng(0)
    margin = rng.normal(0, 2, 400)
    return fit_calibrator(margin, rng.random(400) < 1 / (1 + np.exp(-(0.7 * margin - 0.5))), method)


def _monotone(method: str) -> None:
    """Probabilities never fall as the margin rises, and stay in [0, 1]."""
    probability = _fitted(method).transform(np.linspace(-20, 20, 401))
    assert np.all(np.diff(probability) >= 0) and np.all((probability >= 0) & (probability <= 1))


def _round_trip(method: str) -> None:
    """to_dict -> JSON -> from_dict gives the same calibrator and bit-identical outputs."""
    calibrator = _fitted(method)
    again = Calibrator.from_dict(json.loads(json.dumps(calibrator.to_dict())))
    margins = np.linspace(-10, 10, 101)
    assert again == calibrator and type(again) is CALIBRATORS[method]
    np.testing.assert_array_equal(again.transform(margins), calibrator.transform(margins))


def _refuses_bad_parameters(method: str) -> None:
    """Each parameter replaced by NaN, text or a bool is refused with the package's InputError naming the calibrator."""
    stored = _fitted(method).to_dict()
    for name, value in stored["params"].items():
        for bad in (float("nan"), "1", True, [float("nan")] if isinstance(value, list) else None):
            broken = stored | {
                "params": stored["params"] | {name: [bad] * len(value) if isinstance(value, list) else bad}
            }
            with pytest.raises(InputError, match="^calibrator"):
                Calibrator.from_dict(broken)
    params = stored["params"]
    if all(isinstance(v, list) and len(v) > 1 for v in params.values()):  # knots: reversed order is refused
        with pytest.raises(InputError, match="^calibrator"):
            Calibrator.from_dict(stored | {"params": {k: v[::-1] for k, v in params.items()}})


def named_checks(subject: Any, checks: Sequence[Callable[[Any], None]]) -> Iterator[tuple[str, Check]]:
    """Each check bound to ``subject``, named after its function (scikit-learn's ``parametrize_with_checks`` style)."""
    for check in checks:
        yield check.__name__.lstrip("_"), lambda check=check: check(subject)


def check_calibrator(method: str) -> Iterator[tuple[str, Check]]:
    """The named checks every registered calibration method must pass."""
    yield from named_checks(method, (_monotone, _round_trip, _refuses_bad_parameters))


# ---- published scores ------------------------------------------------------------------------------------------


def _score_frame(name: str, value: float, n: int = 6) -> pd.DataFrame:
    spec = BASELINES[name]
    return pd.DataFrame({c: np.full(n, value) for c in (*spec.columns, *spec.optional_columns)})


def _computability(name: str) -> None:
    """All inputs missing -> not computable; all present -> computable; a required column absent -> not computable."""
    assert baseline_computable(name, _score_frame(name, np.nan)) is False
    assert baseline_computable(name, _score_frame(name, 2.0)) is True
    assert baseline_computable(name, _score_frame(name, 2.0).drop(columns=BASELINES[name].columns[0])) is False


def _orientation(name: str) -> None:
    """On a monotone example (every input rising, events among the high rows), a higher raw score never gets a lower
    probability, and the highest beats the lowest."""
    spec = BASELINES[name]
    values = np.logspace(0, 4, 40)
    X = pd.DataFrame({c: values for c in (*spec.columns, *spec.optional_columns)})
    y = (np.arange(40) >= 20).astype(int)
    y[[5, 30]] = 1 - y[[5, 30]]  # not separable, so every fit stays finite
    model = PublishedScore(name).fit(X, y)
    raw, p = model.score_raw(X), model.predict_proba(X)[:, 1]
    order = np.argsort(raw, kind="stable")
    assert (np.diff(p[order]) >= -1e-12).all()
    assert p[order[-1]] > p[order[0]]


def _applies_to_registered_tasks(name: str) -> None:
    """Every task the score applies to is a registered task, at one of that task's landmarks."""
    for task, labels in BASELINES[name].applies.items():
        landmarks = DEFAULT_TASKS[task].landmarks
        assert set(labels) <= {"grid" if isinstance(lm, Grid) else lm.label for lm in landmarks}, (task, labels)


def check_published_score(name: str) -> Iterator[tuple[str, Check]]:
    """The named checks every registered published score must pass, whatever its kind."""
    yield from named_checks(name, (_computability, _orientation, _applies_to_registered_tasks))


# ---- model families --------------------------------------------------------------------------------------------


def _family_sample() -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(2)
    X = pd.DataFrame(rng.normal(size=(120, 3)), columns=["il6_max", "ferritin_max", "age_years"])
    X.iloc[::7, 0] = np.nan  # missing values are the feature frame's norm
    return X, (X["ferritin_max"] + rng.normal(0, 1, 120) > 0).to_numpy(dtype=int)


def _margin_orders_like_probability(name: str) -> None:
    """The family's margin is the estimator's own log-odds: the estimator's probability is its logistic."""
    family = FAMILIES[name]
    X, y = _family_sample()
    model = family.estimator(list(X.columns), TrainConfig()).fit(X, y)
    np.testing.assert_allclose(expit(family.margin(model, X)), model.predict_proba(X)[:, 1], rtol=1e-5)


def _tuning_space_fits_the_estimator(name: str) -> None:
    """Every tuned parameter is one of the estimator's own."""
    family = FAMILIES[name]
    assert set(family.search_space) <= set(family.estimator(["a"], TrainConfig()).get_params())


def _inner_margins_are_out_of_fold(name: str) -> None:
    """Inner-fold margins: one finite value per row, not the refitted model's own (in-sample) margins."""
    family = FAMILIES[name]
    X, y = _family_sample()
    tuned = family.estimator(list(X.columns), TrainConfig())
    folds = StratifiedGroupKFold(3, shuffle=True, random_state=0)
    inner = family.inner_margin(tuned, X, y, folds, np.arange(len(y)))
    assert inner.shape == (len(y),) and np.isfinite(inner).all()
    assert not np.allclose(inner, family.margin(clone(tuned).fit(X, y), X))


def _contributions_add_up(name: str) -> None:
    """Contributions, when the family has them, are one per feature and add up to the margin less a constant."""
    family = FAMILIES[name]
    X, y = _family_sample()
    model = family.estimator(list(X.columns), TrainConfig()).fit(X, y)
    contributions = family.contributions(model, X)
    if contributions is None:
        return
    assert contributions.shape == X.shape
    offset = family.margin(model, X) - contributions.sum(axis=1)
    np.testing.assert_allclose(offset, offset[0], atol=1e-4)


def check_family(name: str) -> Iterator[tuple[str, Check]]:
    """The named checks every registered model family must pass."""
    yield from named_checks(
        name,
        (
            _margin_orders_like_probability,
            _tuning_space_fits_the_estimator,
            _inner_margins_are_out_of_fold,
            _contributions_add_up,
        ),
    )


def _budget() -> settings:
    """A property check's budget: a quarter of the loaded hypothesis profile's (conftest.py: "ci" or "long")."""
    default = settings.default
    return settings(max_examples=max(10, (default.max_examples if default else 100) // 4))


# ---- random event timelines ------------------------------------------------------------------------------------

PATIENTS = ("A", "B", "C")
# Hours that fall on the rules' edges (landmarks, grid points, a window's close 48 h after another of them), so the
# random timelines put records exactly at a landmark or at a window's end often.
TIES = (0.0, 12.0, 36.0, 48.0, 60.0, 84.0)
EVENT = st.tuples(
    st.sampled_from(PATIENTS),
    st.one_of(st.sampled_from(TIES), st.sampled_from(TIES), st.floats(0, 400).map(lambda x: round(x, 1))),
    st.sampled_from(["crs_grade", "icans_grade", "tocilizumab", "siltuximab", "anakinra", "corticosteroid"]),
    st.integers(0, 4),
)


def make_cohort(events: list[tuple], followup: dict[str, float] | None = None, ids: list[str] | None = None) -> Cohort:
    """A validated cohort of these (patient, hour, event, value) records and follow-ups, without measurements."""
    frame = pd.DataFrame(events, columns=["patient_id", "hours_since_infusion", "event", "value"])
    ids = ids or sorted(set(frame["patient_id"]))
    patients = pd.DataFrame(
        {
            "patient_id": ids,
            "age_years": 10.0,
            "product": "tisagenlecleucel",
            "followup_hours": [(followup or {}).get(i, 672.0) for i in ids],
        }
    )
    empty = pd.DataFrame(columns=["patient_id", "hours_since_infusion", "analyte", "value", "unit"])
    return validate_tables({"patients": patients, "measurements": empty, "events": frame})


@st.composite
def timelines(draw: st.DrawFn) -> Cohort:
    """Three infusions with random grade and drug records (drug doses positive) and random follow-ups."""
    events = [(p, t, e, v if e.endswith("grade") else max(v, 1)) for p, t, e, v in draw(st.lists(EVENT, max_size=12))]
    follow = draw(st.lists(st.sampled_from([50.0, 100.0, 300.0, 672.0]), min_size=3, max_size=3))
    return make_cohort(events, followup=dict(zip(PATIENTS, follow)), ids=list(PATIENTS))


# ---- an independent, deliberately plain derivation of each task kind's labels ---------------------------------

Records = list[tuple[float, str, float]]
Reference = Callable[[TaskBase, Records, float, object], "tuple[float, bool] | None"]


def _grade_onset(task: TaskBase, ev: Records, follow: float, landmark: object) -> tuple[float, bool] | None:
    assert isinstance(task, GradeOnset)
    lm = float(landmark)  # type: ignore[arg-type]  # grade-onset landmarks are hours
    if any(e == task.grade_event and v >= task.grade_threshold and t < lm for t, e, v in ev):
        return None
    end = lm + task.horizon_hours if task.horizon_from == "landmark" else task.horizon_hours
    return end, any(e == task.grade_event and v >= task.grade_threshold and lm <= t < end for t, e, v in ev)


def _toci_refractory(task: TaskBase, ev: Records, follow: float, landmark: object) -> tuple[float, bool] | None:
    assert isinstance(task, TociRefractory)
    doses = [t for t, e, _ in ev if e == "tocilizumab"]
    if not doses:
        return None
    t0 = min(doses)
    end = t0 + task.window_hours
    win = [(t, e, v) for t, e, v in ev if t0 <= t <= end]
    positive = any(e in ("siltuximab", "anakinra") for _, e, _ in win)
    positive |= sum(e == "tocilizumab" for _, e, _ in win) > task.max_tocilizumab_doses
    for t, e, _ in win:
        if e == "corticosteroid":
            icans = [v for tt, ee, v in ev if ee == "icans_grade" and tt <= t]
            if not task.steroids_only_without_icans or (icans[-1] if icans else 0) == 0:
                positive = True
    before = [v for t, e, v in ev if e == "crs_grade" and t <= t0]
    ref = before[-1] if before else 0
    positive |= any(e == "crs_grade" and t0 < t <= end and v > ref for t, e, v in ev)
    return end, positive


# Per task kind: (window end, outcome) of one infusion's records at a landmark, or None when not at risk there.
REFERENCES: dict[str, Reference] = {GradeOnset.kind: _grade_onset, TociRefractory.kind: _toci_refractory}


def reference_labels(cohort: Cohort, task: TaskBase, landmark: object) -> dict[str, object]:
    """Per patient, with plain loops: label 0/1, 'excluded', or absent when not in the risk set."""
    out: dict[str, object] = {}
    for _, patient in cohort.patients.iterrows():
        pid, follow = patient["patient_id"], patient["followup_hours"]
        ev = sorted(
            (
                tuple(r)
                for r in cohort.events[cohort.events.patient_id == pid][
                    ["hours_since_infusion", "event", "value"]
                ].itertuples(index=False)
                if r[0] <= follow
            ),
            key=lambda r: r[0],
        )  # a grade holds "from that time on": the one in force is the latest in time
        found = REFERENCES[task.kind](task, ev, follow, landmark)
        if found is not None:
            end, positive = found
            out[pid] = 1 if positive else ("excluded" if follow < end else 0)
    return out


def as_dict(table: pd.DataFrame) -> dict[str, object]:
    """A label table as {patient: 0/1 or 'excluded'}."""
    return {r.patient_id: ("excluded" if r.excluded else int(r.label)) for r in table.itertuples()}


# ---- tasks -----------------------------------------------------------------------------------------------------


def _points(task: TaskBase) -> list[Hours | FirstEvent]:
    return [point for landmark in task.landmarks for point in landmark.points()]


def _describe_round_trip(name: str) -> None:
    """describe() -> JSON -> task_from_settings gives the same task, and describes it the same way."""
    task = DEFAULT_TASKS[name]
    again = task_from_settings(json.loads(json.dumps(task.describe())))
    assert again == task and again.describe() == task.describe() and type(again) is type(task)


def _on_random_timelines(name: str, check: Callable[[TaskBase, Cohort], None]) -> None:
    task = DEFAULT_TASKS[name]

    @_budget()
    @given(cohort=timelines())
    def run(cohort: Cohort) -> None:
        check(task, cohort)

    run()


def _window_end_is_hour_plus_horizon(name: str) -> None:
    """At every landmark point, the outcome window of each infusion at risk closes at its hour plus the horizon."""

    def check(task: TaskBase, cohort: Cohort) -> None:
        arrays = cohort_arrays(cohort)
        for point in _points(task):
            codes, hours = task.at_risk(arrays, point)
            _, end = task.outcome(arrays, codes, hours)
            np.testing.assert_array_equal(end, hours + np.array([task.horizon(h) for h in hours.tolist()]))
            np.testing.assert_array_equal(end, task.horizon_end(hours))

    _on_random_timelines(name, check)


def _risk_set_and_occurrence_agree(name: str) -> None:
    """No infusion at risk has had the outcome; an outcome in the window is the outcome's first occurrence, and no
    window misses one; an infusion left out at a fixed hour is one that had it (or never qualifies)."""

    def check(task: TaskBase, cohort: Cohort) -> None:
        arrays = cohort_arrays(cohort)
        occurred = task.occurrence(arrays)
        for point in _points(task):
            codes, hours = task.at_risk(arrays, point)
            assert not (occurred[codes] < hours).any()
            onset, end = task.outcome(arrays, codes, hours)
            hit = np.isfinite(onset)
            np.testing.assert_array_equal(onset[hit], occurred[codes][hit])
            assert (np.isnan(occurred[codes][~hit]) | (occurred[codes][~hit] >= end[~hit])).all()
            if isinstance(point, Hours):
                out = np.setdiff1d(np.arange(arrays.patient_ids.size), codes)
                assert (np.isnan(occurred[out]) | (occurred[out] < point.hours)).all()

    _on_random_timelines(name, check)


def _labels_match_independent_derivation(name: str) -> None:
    """Labels (and exclusions) at every landmark point equal ``reference_labels``, the task kind's plain loops."""

    def check(task: TaskBase, cohort: Cohort) -> None:
        for landmark in task.landmarks:
            table = task.label_table(cohort, landmark)
            for point in landmark.points():
                part = table[table["landmark_hours"] == point.hours] if isinstance(point, Hours) else table
                where = point.hours if isinstance(point, Hours) else point
                assert as_dict(part) == reference_labels(cohort, task, where)

    _on_random_timelines(name, check)


def check_task(name: str) -> Iterator[tuple[str, Check]]:
    """The named checks every registered task definition must pass; its kind needs an entry in ``REFERENCES``."""
    yield from named_checks(
        name,
        (
            _describe_round_trip,
            _window_end_is_hour_plus_horizon,
            _risk_set_and_occurrence_agree,
            _labels_match_independent_derivation,
        ),
    )


# ---- landmark kinds ----------------------------------------------------------------------------------------------

# Per landmark kind: valid examples (the registered tasks' landmarks of the kind are added), and constructions that
# must be refused. A new kind in ``LANDMARK_KINDS`` needs an entry here, or its checks fail saying so.
LANDMARK_EXAMPLES: dict[type, tuple[tuple[Landmark, ...], tuple[Callable[[], object], ...]]] = {
    Hours: ((Hours(0.0), Hours(36.0), Hours(40.5)), (lambda: Hours(-1.0), lambda: Hours(float("nan")))),
    FirstEvent: ((FirstEvent("tocilizumab"), FirstEvent("anakinra")), (lambda: FirstEvent("aspirin"),)),
    Grid: ((Grid(), Grid(6.0, 30.0, 8.0)), (lambda: Grid(5.0, 1.0, 1.0), lambda: Grid(0.0, 10.0, 0.0))),
}


def _examples(kind: type) -> tuple[Landmark, ...]:
    assert kind in LANDMARK_EXAMPLES, f"landmark kind {kind.__name__}: add its examples to LANDMARK_EXAMPLES"
    registered = tuple(lm for task in DEFAULT_TASKS.values() for lm in task.landmarks if type(lm) is kind)
    return LANDMARK_EXAMPLES[kind][0] + registered


def _json_round_trip(kind: type) -> None:
    """to_json -> JSON -> parse_landmark gives the same landmark; a landmark passes through parse_landmark; a single
    landmark's label (a bundle key's part) parses back too."""
    for landmark in _examples(kind):
        assert type(landmark) is kind and parse_landmark(landmark) is landmark
        assert parse_landmark(json.loads(json.dumps(landmark.to_json()))) == landmark
        if landmark.points() == (landmark,):
            assert parse_landmark(landmark.label) == landmark


def _points_are_single_landmarks(kind: type) -> None:
    """A landmark stands for one or more single landmarks, each its own only point, with distinct labels."""
    for landmark in _examples(kind):
        points = landmark.points()
        assert points and all(p.points() == (p,) for p in points)
        assert len({p.label for p in points}) == len(points)
        assert isinstance(landmark.window, bool)


def _refuses_bad_settings(kind: type) -> None:
    """Each bad construction of the kind is refused with the package's InputError naming the landmark."""
    _examples(kind)
    for build in LANDMARK_EXAMPLES[kind][1]:
        with pytest.raises(InputError, match="^landmark"):
            build()


def _hours_at_are_known_by_then(kind: type) -> None:
    """On random timelines, at any hour: a landmark that applies was reached by then, and a single landmark applies
    at its own hour for each infusion (``times``), once reached for good."""
    examples = _examples(kind)

    @_budget()
    @given(cohort=timelines(), now=st.floats(0, 500), later=st.floats(0, 200))
    def run(cohort: Cohort, now: float, later: float) -> None:
        arrays = cohort_arrays(cohort)
        for landmark in examples:
            at = landmark.hours_at(arrays, now)
            assert at.shape == (arrays.patient_ids.size,)
            assert (np.isnan(at) | (at <= now)).all()
            if landmark.points() == (landmark,):
                reached = np.isfinite(at)
                np.testing.assert_array_equal(at[reached], landmark.times(arrays)[reached])
                assert np.isfinite(landmark.hours_at(arrays, now + later)[reached]).all()

    run()


def check_landmark(kind: type) -> Iterator[tuple[str, Check]]:
    """The named checks every registered landmark kind must pass."""
    yield from named_checks(
        kind, (_json_round_trip, _points_are_single_landmarks, _refuses_bad_settings, _hours_at_are_known_by_then)
    )
