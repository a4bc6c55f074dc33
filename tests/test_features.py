"""Feature values computed by hand, names and units for every column, and the sklearn contract."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.utils.estimator_checks import (
    check_get_params_invariance,
    check_no_attributes_set_in_init,
    check_parameters_default_constructible,
    check_set_params,
)

from crsrisk.cohort.arrays import cohort_arrays
from crsrisk.cohort.validated import Cohort
from crsrisk.features.build import TrendEnds, trend_ends
from crsrisk.tasks import LandmarkFeatures
from crsrisk.features import (
    LogTransform,
    build_features,
    describe_features,
    feature_info,
    feature_names,
    log_scale_columns,
)
from crsrisk.cohort.validate import validate_tables


def hand_cohort() -> Cohort:
    patients = pd.DataFrame(
        {
            "patient_id": ["A", "B"],
            "age_years": [8.0, 19.0],
            "sex": ["M", None],
            "product": ["tisagenlecleucel", "other"],
            "costim_domain": [None, "CD28"],
            "marrow_blasts_pct": [60.0, 2.0],
            "dose_1e6_cells_per_kg": [2.0, 1.0],
            "lymphodepletion": ["flu_cy", "none"],
            "prior_hsct": ["yes", None],
        }
    )
    m = [
        ("A", -200, "ldh", 999, "U/L"),  # older than 7 days: not a baseline
        ("A", -48, "ldh", 300, "U/L"),
        ("A", -30, "ldh", 400, "U/L"),
        ("A", -30, "creatinine", 0.5, "mg/dL"),
        ("A", -30, "platelets", 50, "10^9/L"),
        ("A", -30, "crp", 2, "mg/dL"),
        ("A", -30, "ferritin", 1000, "ng/mL"),
        ("A", 6, "il6", 10, "pg/mL"),
        ("A", 18, "il6", 1000, "pg/mL"),
        ("A", 30, "il6", 100, "pg/mL"),
        ("A", 40, "il6", 99999, "pg/mL"),  # after the 36 h landmark: never used
        ("A", 0, "temperature", 37.0, "degC"),
        ("A", 10, "temperature", 38.5, "degC"),
        ("A", 20, "temperature", 102.2, "degF"),
        ("A", 30, "temperature", 37.5, "degC"),
        ("A", 24, "ldh", 500, "U/L"),
        ("A", 24, "crp", 80, "mg/L"),
        ("A", 24, "platelets", 40, "10^9/L"),
        ("A", 24, "ferritin", 5000, "ng/mL"),
        ("A", 24, "sgp130", 400, "ng/mL"),
        ("B", 12, "il6", 5, "pg/mL"),
    ]
    e = [("A", 20, "crs_grade", 1), ("A", 28, "crs_grade", 2), ("A", 30, "tocilizumab", 8), ("A", 40, "crs_grade", 3)]
    return validate_tables(
        {
            "patients": patients,
            "measurements": pd.DataFrame(m, columns=["patient_id", "hours_since_infusion", "analyte", "value", "unit"]),
            "events": pd.DataFrame(e, columns=["patient_id", "hours_since_infusion", "event", "value"]),
        }
    )


def test_hand_computed_values_at_36_h() -> None:
    f = build_features(hand_cohort(), pd.Series({"A": 36.0, "B": 36.0})).loc["A"]
    assert f["baseline_ldh"] == 400 and f["baseline_crp"] == 20.0  # mg/dL converted to mg/L
    assert f["easix_baseline"] == pytest.approx(400 * 0.5 / 50)
    assert f["m_easix_baseline"] == pytest.approx(400 * 2.0 / 50)  # m-EASIX takes CRP in mg/dL
    assert f["il6_last"] == 100 and f["il6_max"] == 1000 and f["il6_hours_to_max"] == 18
    slope = np.polyfit([6, 18, 30], np.log([10, 1000, 100]), 1)[0]
    assert f["il6_log_slope"] == pytest.approx(slope)
    assert f["temperature_max"] == pytest.approx(39.0)  # 102.2 degF
    assert f["fever_hours"] == pytest.approx(20.0)  # 38.5 at 10 h and 39.0 at 20 h hold until 30 h
    assert f["fever_first_hours"] == 10
    assert f["m_easix_last"] == pytest.approx(500 * 8.0 / 40)
    assert f["ferritin_fold_change"] == pytest.approx(5.0) and f["crp_fold_change"] == pytest.approx(4.0)
    assert f["il6_sgp130_ratio"] == pytest.approx(100 / 400_000)
    assert (f["crs_grade_current"], f["crs_grade_max"], f["tocilizumab_doses"]) == (2, 2, 1)
    assert f["hours_since_crs_onset"] == 16 and f["landmark_hours"] == 36
    assert f["il6_missing"] == 0 and f["ifng_missing"] == 1 and math.isnan(f["ifng_max"])
    assert (f["sex_male"], f["costim_cd28"], f["lymphodepletion_flu_cy"], f["prior_hsct"]) == (1, 0, 1, 1)


def test_trend_ends_are_the_first_and_latest_value_the_slope_is_fitted_over() -> None:
    arrays = cohort_arrays(hand_cohort())
    a, b = trend_ends(arrays, arrays.codes(["A", "B"]), np.array([36.0, 36.0]))
    assert a["il6"] == TrendEnds(6.0, 10.0, 30.0, 100.0, 1000.0)  # IL-6 at 40 h is after the landmark
    assert a["temperature"] == pytest.approx(TrendEnds(0.0, 37.0, 30.0, 37.5, 39.0))  # from infusion (hour 0) on
    assert "ldh" not in a and b == {}  # one value since infusion (the others are baselines): no trend
    at_30, at_18 = trend_ends(arrays, arrays.codes(["A", "A"]), np.array([30.0, 18.0]))
    assert at_30["il6"] == TrendEnds(6.0, 10.0, 18.0, 1000.0, 1000.0)  # a value at the landmark itself is not known yet
    assert "il6" not in at_18


def test_patient_encodings_keep_missing_as_missing() -> None:
    b = build_features(hand_cohort(), pd.Series({"A": 36.0, "B": 36.0})).loc["B"]
    assert math.isnan(b["sex_male"]) and math.isnan(b["prior_hsct"])
    assert b["costim_cd28"] == 1 and b["product_other"] == 1 and b["product_tisagenlecleucel"] == 0
    assert math.isnan(b["fever_hours"])  # no temperature readings: unknown, not "no fever"


def test_pre_infusion_landmark_has_only_pre_infusion_columns() -> None:
    f = build_features(hand_cohort(), pd.Series({"A": 0.0, "B": 0.0}))
    assert list(f.columns) == feature_names(False)
    assert not any(c.endswith(("_last", "_max")) for c in f.columns)


def test_every_column_has_a_label_and_unit() -> None:
    for name in feature_names(True):
        info = feature_info(name)
        assert info.label and isinstance(info.unit, str) and info.name == name
    assert feature_info("il6_max").unit == "pg/mL" and feature_info("il6_log_slope").unit == "log(pg/mL)/h"
    assert "il6_max" in log_scale_columns(feature_names(True)) and "age_years" not in log_scale_columns(["age_years"])
    described = describe_features(build_features(hand_cohort(), pd.Series({"A": 36.0, "B": 36.0})))
    assert described.set_index("feature").loc["ifng_max", "missing"] == 1.0


def test_transformer_follows_sklearn_conventions() -> None:
    cohort = hand_cohort()
    estimator = LandmarkFeatures(task="severe_crs", landmark=36.0)
    # Checks that feed arrays to fit do not apply: the input is a Cohort, not a numeric matrix.
    check_no_attributes_set_in_init("LandmarkFeatures", estimator)
    check_parameters_default_constructible("LandmarkFeatures", estimator)
    check_get_params_invariance("LandmarkFeatures", estimator)
    check_set_params("LandmarkFeatures", estimator)
    out = estimator.fit(cohort).transform(cohort)
    assert list(out.columns) == list(estimator.get_feature_names_out())
    assert list(out.index) == ["A", "B"]
    again = pickle.loads(pickle.dumps(estimator)).transform(cohort)
    pd.testing.assert_frame_equal(again, out)
    pd.testing.assert_frame_equal(clone(estimator).fit_transform(cohort), out)
    with pytest.raises(TypeError, match="Cohort"):
        estimator.fit(np.zeros((3, 3)))


def test_toci_landmark_is_each_first_dose() -> None:
    out = LandmarkFeatures(task="toci_refractory", landmark="first_tocilizumab").fit_transform(hand_cohort())
    assert list(out.index) == ["A"] and out.loc["A", "landmark_hours"] == 30
    assert out.loc["A", "tocilizumab_doses"] == 0  # the landmark dose itself is not "before"


def test_log_transform() -> None:
    frame = pd.DataFrame({"il6_max": [0.0, 99.0], "age_years": [5.0, 6.0]})
    out = LogTransform(["il6_max"]).fit(frame).transform(frame)
    np.testing.assert_allclose(out, [[0.0, 5.0], [np.log(100), 6.0]])


def test_features_cli_writes_ids_landmark_label_and_reports(small_cohort_dir, tmp_path) -> None:
    from typer.testing import CliRunner

    from crsrisk.cli import app

    out = tmp_path / "X.parquet"
    run = CliRunner().invoke(
        app, ["features", str(small_cohort_dir), "--task", "severe_crs", "--landmark", "36", "--out", str(out)]
    )
    assert run.exit_code == 0, run.output
    table = pd.read_parquet(out)
    assert list(table.columns[:3]) == ["patient_id", "landmark_hours", "label"]
    assert set(table["label"].unique()) <= {0, 1} and (table["landmark_hours"] == 36).all()
    assert "risk_set" in run.stdout and "excluded" in run.stdout and "il6_max" in run.stdout


@pytest.fixture(scope="module")
def generated() -> Cohort:
    from crsrisk.simulate import simulate_cohort

    sim = simulate_cohort(n=300, seed=17)
    return validate_tables({"patients": sim.patients, "measurements": sim.measurements, "events": sim.events})


@pytest.mark.parametrize(
    "task, landmark",
    [
        ("severe_crs", 0.0),
        ("severe_crs", 36.0),
        ("icans", 12.0),
        ("icans", 96.0),
        ("toci_refractory", "first_tocilizumab"),
    ],
)
def test_kernel_equals_an_independent_pandas_derivation(generated: Cohort, task: str, landmark) -> None:
    from crsrisk.tasks import get_task
    from reference_features import reference_features

    times = get_task(task).risk_set(generated, landmark)
    window = landmark != 0.0
    ours, theirs = build_features(generated, times, window=window), reference_features(generated, times, window=window)
    assert list(ours.columns) == list(theirs.columns) and list(ours.index) == list(theirs.index)
    assert np.array_equal(np.isnan(ours.to_numpy()), np.isnan(theirs.to_numpy()))
    # The kernel centres the slope regression, the reference uses raw sums: equal up to rounding.
    np.testing.assert_allclose(ours.to_numpy(), theirs.to_numpy(), rtol=1e-9, atol=1e-12)
    assert ours.notna().to_numpy().mean() > 0.3  # the comparison covers real values, not just NaN


def test_one_patient_at_several_landmarks_in_one_call(generated: Cohort) -> None:
    ids = generated.patients["patient_id"].iloc[:5].tolist()
    landmarks = pd.Series([12.0, 36.0, 72.0, 36.0, 12.0], index=[ids[0], ids[0], ids[0], ids[1], ids[1]])
    together = build_features(generated, landmarks, window=True)
    for position, (patient_id, hours) in enumerate(landmarks.items()):
        alone = build_features(generated, pd.Series({patient_id: hours}), window=True)
        np.testing.assert_array_equal(together.iloc[position].to_numpy(), alone.iloc[0].to_numpy())
    assert together.iloc[0]["landmark_hours"] == 12.0 and together.iloc[2]["landmark_hours"] == 72.0


def test_unknown_patient_is_named(generated: Cohort) -> None:
    with pytest.raises(KeyError, match="'nobody'"):
        build_features(generated, pd.Series({"nobody": 36.0}))


def test_no_rows_gives_an_empty_matrix_with_every_column(generated: Cohort) -> None:
    empty = build_features(generated, pd.Series([], dtype=float, index=pd.Index([], dtype=object)), window=True)
    assert empty.shape == (0, len(feature_names(True)))
