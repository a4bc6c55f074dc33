"""The leakage guard: nothing at or after the landmark, and nothing of another infusion, moves a feature."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crsrisk.cohort.validated import Cohort
from crsrisk.tasks import LandmarkFeatures
from crsrisk.cohort.validate import validate_tables
from crsrisk.simulate import simulate_cohort
from crsrisk.tasks import get_task

LANDMARKS = [
    ("severe_crs", 0.0),
    ("severe_crs", 36.0),
    ("icans", 36.0),
    ("severe_crs", 72.0),
    ("toci_refractory", "first_tocilizumab"),
]


@pytest.fixture(scope="module")
def cohort() -> Cohort:
    sim = simulate_cohort(n=80, seed=3)
    return validate_tables(
        {"patients": sim.patients, "measurements": sim.measurements, "events": sim.events}, metadata=sim.metadata
    )


def features(cohort: Cohort, task: str, landmark) -> pd.DataFrame:
    return LandmarkFeatures(task=task, landmark=landmark).fit(cohort).transform(cohort)


def scramble_after(cohort: Cohort, task: str, landmark, seed: int, drop: float, add: int) -> Cohort:
    """Change every value at or after each infusion's landmark, delete some such rows, add new ones."""
    rng = np.random.default_rng(seed)
    times = get_task(task).risk_set(cohort, landmark)
    cut = cohort.patients["patient_id"].map(times).fillna(np.inf)
    cut.index = cohort.patients["patient_id"]

    def after(table: pd.DataFrame) -> np.ndarray:
        return (table["hours_since_infusion"] >= table["patient_id"].map(cut)).to_numpy()

    m = cohort.measurements.copy()
    late = after(m)
    m.loc[late, "value"] = m.loc[late, "value"] * rng.uniform(0.1, 10, late.sum())
    m.loc[late & (m["analyte"] == "temperature").to_numpy(), "value"] = 41.0
    m = m[~(late & (rng.random(len(m)) < drop))]
    e = cohort.events.copy()
    late_e = after(e)
    keep_landmark = (e["event"] == "tocilizumab") & (e["hours_since_infusion"] == e["patient_id"].map(cut))
    grades = e["event"].str.endswith("grade").to_numpy()
    e.loc[late_e & grades, "value"] = 4.0
    e = e[~(late_e & ~keep_landmark.to_numpy() & (rng.random(len(e)) < drop))]
    ids = rng.choice(times.index.to_numpy(), size=min(add, len(times)), replace=False) if len(times) else []
    extra_m = pd.DataFrame(
        {
            "patient_id": ids,
            "hours_since_infusion": times.reindex(ids).to_numpy() + rng.uniform(0, 50, len(ids)),
            "analyte": "il6",
            "value": 50_000.0,
            "unit": "pg/mL",
        }
    )
    extra_e = pd.DataFrame(
        {
            "patient_id": ids,
            "hours_since_infusion": times.reindex(ids).to_numpy() + 1.0,
            "event": "crs_grade",
            "value": 4.0,
        }
    )
    return Cohort(
        cohort.patients,
        pd.concat([m, extra_m], ignore_index=True).astype(m.dtypes.to_dict()),
        pd.concat([e, extra_e], ignore_index=True).astype(e.dtypes.to_dict()),
        cohort.metadata,
    )


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**31), drop=st.floats(0, 0.9), add=st.integers(0, 20), which=st.sampled_from(LANDMARKS))
def test_post_landmark_changes_leave_features_byte_identical(
    cohort: Cohort, seed: int, drop: float, add: int, which: tuple
) -> None:
    task, landmark = which
    original = features(cohort, task, landmark)
    changed = features(scramble_after(cohort, task, landmark, seed, drop, add), task, landmark)
    pd.testing.assert_index_equal(changed.index, original.index)
    assert pd.util.hash_pandas_object(changed).equals(pd.util.hash_pandas_object(original))


@pytest.mark.parametrize("task, landmark", LANDMARKS)
def test_another_infusions_rows_never_matter(cohort: Cohort, task: str, landmark) -> None:
    original = features(cohort, task, landmark)
    victim = original.index[0]
    m = cohort.measurements.copy()
    others = (m["patient_id"] != victim).to_numpy()
    m.loc[others, "value"] = m.loc[others, "value"] * 3.0
    e = cohort.events[cohort.events["patient_id"] == victim]
    changed = features(Cohort(cohort.patients, m, e, cohort.metadata), task, landmark)
    pd.testing.assert_series_equal(changed.loc[victim], original.loc[victim])


@pytest.mark.parametrize("task, landmark", LANDMARKS[1:])
def test_a_change_before_the_landmark_does_show(cohort: Cohort, task: str, landmark) -> None:
    original = features(cohort, task, landmark)
    times = get_task(task).risk_set(cohort, landmark)
    m = cohort.measurements.copy()
    cut = m["patient_id"].map(times).astype(float).fillna(-np.inf)
    early = (
        (m["hours_since_infusion"] >= 0) & (m["hours_since_infusion"] < cut) & (m["analyte"] == "temperature")
    ).to_numpy()
    m.loc[early, "value"] = 40.5
    changed = features(Cohort(cohort.patients, m, cohort.events, cohort.metadata), task, landmark)
    assert (changed["temperature_max"] == 40.5).sum() > 0
    assert not changed["temperature_max"].equals(original["temperature_max"])
