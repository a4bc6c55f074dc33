"""The one planner: ``predict`` on each patient equals ``predict_cohort`` at the same hour, row for row, to the
last bit, for scored tasks, outcomes already recorded, ended follow-up and tasks not applicable."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st

from crsrisk.bundle.store import Bundle, load_bundle
from crsrisk.cohort.validate import validate_tables
from crsrisk.cohort.validated import Cohort
from crsrisk.scoring import predict, predict_cohort
from crsrisk.scoring.plan import ALREADY_OCCURRED, NOT_APPLICABLE, SCORED
from tests_support import patient_record


@pytest.fixture(scope="module")
def bundle(small_bundle: object) -> Bundle:
    return load_bundle(small_bundle)


def _subcohort(cohort: Cohort, rows: list[int], cut: list[float | None]) -> Cohort:
    """A few infusions of ``cohort``, some with follow-up cut short at the given hours (and their later rows
    dropped), validated again as a real cohort would be."""
    patients = cohort.patients.iloc[rows].copy()
    for i, hours in zip(range(len(patients)), cut):
        if hours is not None:
            patients.iloc[i, patients.columns.get_loc("followup_hours")] = hours
    ids = set(patients["patient_id"])
    end = patients.set_index("patient_id")["followup_hours"].astype(float)

    def within(table: pd.DataFrame) -> pd.DataFrame:
        table = table[table["patient_id"].isin(ids)]
        return table[table["hours_since_infusion"].astype(float) <= table["patient_id"].map(end).astype(float)]

    return validate_tables(
        {"patients": patients, "measurements": within(cohort.measurements), "events": within(cohort.events)}
    )


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(data=st.data())
def test_predict_on_each_patient_equals_predict_cohort_row_for_row(
    small_cohort: Cohort, bundle: Bundle, data: st.DataObject
) -> None:
    n = len(small_cohort.patients)
    rows = data.draw(st.lists(st.integers(0, n - 1), min_size=3, max_size=10, unique=True), label="infusions")
    cut = data.draw(
        st.lists(
            st.one_of(st.none(), st.floats(1, 200).map(lambda h: round(h, 1))), min_size=len(rows), max_size=len(rows)
        ),
        label="follow-up cut",
    )
    hours = data.draw(st.one_of(st.sampled_from([0.0, 36.0, 48.0, 168.0, 200.0]), st.floats(0, 240)), label="hour")
    cohort = _subcohort(small_cohort, rows, cut)
    batch = predict_cohort(cohort, bundle, at_hours=hours).set_index(["patient_id", "task"])
    assert len(batch) == len(cohort.patients) * len(bundle.tasks)  # one row per infusion and task
    for patient_id in cohort.patients["patient_id"]:
        single = predict(patient_record(cohort, patient_id), model=bundle, now_hours=hours, audit=False)
        said = {p["task"]: (SCORED, p) for p in single.predictions}
        said |= {o["task"]: (ALREADY_OCCURRED, o) for o in single.already_occurred}
        said |= {o["task"]: (NOT_APPLICABLE, o) for o in single.not_applicable}
        assert set(said) == set(bundle.tasks)
        for task, (status, answer) in said.items():
            row = batch.loc[(str(patient_id), task)]
            event(f"status {status}")
            if "follow-up ended" in str(row["reason"]):
                event("follow-up ended")
            assert row["status"] == status
            if status == SCORED:  # bit for bit
                assert np.float64(answer["probability"]).tobytes() == np.float64(row["probability"]).tobytes()
                assert np.float64(answer["raw_score"]).tobytes() == np.float64(row["raw_score"]).tobytes()
                assert (answer["landmark_hours"], answer["horizon_hours"], answer["band"], answer["model_key"]) == (
                    row["landmark_hours"],
                    row["horizon_hours"],
                    row["band"],
                    row["model_key"],
                )
            elif status == ALREADY_OCCURRED:
                assert answer["text"] == row["reason"]
            else:
                assert answer["reason"] == row["reason"]


def test_an_infusion_whose_follow_up_ended_is_not_scored_and_says_why(small_cohort: Cohort, bundle: Bundle) -> None:
    cohort = _subcohort(small_cohort, [0, 1, 2], [30.0, None, None])
    first = str(cohort.patients["patient_id"].iloc[0])
    single = predict(patient_record(cohort, first), model=bundle, now_hours=60, audit=False)
    reasons = {o["task"]: o["reason"] for o in single.not_applicable}
    assert not single.predictions
    assert set(reasons) | {o["task"] for o in single.already_occurred} == set(bundle.tasks)
    for reason in reasons.values():
        assert reason == "follow-up ended at hour 30, before hour 60: nothing after it is known"
    batch = predict_cohort(cohort, bundle, at_hours=60)
    mine = batch[batch["patient_id"] == first]
    assert (mine["status"] != SCORED).all() and mine["probability"].isna().all()
