"""Outside the training population: an adult, an unseen product or diagnosis, most inputs missing, values beyond
training are flagged by name in predict, on the CLI and in evaluate, never silently scored as if typical."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from crsrisk.cli import app
from crsrisk.bundle.store import load_bundle
from crsrisk.cohort.population import BEYOND, Population, flag_text, flags_text, summarise
from crsrisk.cohort.validated import Cohort
from crsrisk.evaluation.external import evaluate_bundle
from crsrisk.scoring import predict
from tests_support import patient_record
from typer.testing import CliRunner


def _kinds(result) -> dict[str, dict]:
    return {flag["kind"]: flag for flag in result.population_flags}


def test_a_typical_training_patient_raises_no_patient_flag(small_cohort: Cohort, small_bundle: Path) -> None:
    record = patient_record(small_cohort, small_cohort.patients["patient_id"].iloc[0])
    flags = _kinds(predict(record, model=small_bundle, now_hours=40, audit=False))
    assert not {"age", "unseen_product", "unseen_diagnosis", "mostly_missing"} & set(flags)


def test_an_adult_with_an_unseen_product_and_diagnosis_is_flagged_by_name(
    small_cohort: Cohort, small_bundle: Path
) -> None:
    record = patient_record(small_cohort, small_cohort.patients["patient_id"].iloc[0])
    adult = copy.deepcopy(record)
    adult["patient"].update(
        {"age_years": 45.0, "product": "axicabtagene_ciloleucel", "costim_domain": None, "diagnosis": "LBCL"}
    )
    result = predict(adult, model=small_bundle, now_hours=40, audit=False)
    flags = _kinds(result)
    assert flags["age"] == {"kind": "age", "field": "age_years", "value": 45.0, "low": 1.4, "high": 26.0}
    assert flag_text(flags["age"]) == "found age 45 years, trained on 1.4 to 26 years"
    assert flags["unseen_product"]["value"] == "axicabtagene_ciloleucel"
    assert flags["unseen_diagnosis"]["value"] == "LBCL"
    assert result.predictions  # flagged, still scored: the flag says what the number is worth
    assert json.loads(json.dumps(result.to_dict()))["population_flags"] == result.population_flags


def test_most_inputs_missing_and_values_beyond_training_are_flagged(small_bundle: Path) -> None:
    sparse = {
        "patient": {"patient_id": "NEW", "age_years": 9, "product": "tisagenlecleucel"},
        "measurements": [{"hours_since_infusion": 10, "analyte": "il6", "value": 9_000_000, "unit": "pg/mL"}],
    }
    result = predict(sparse, model=small_bundle, now_hours=40, audit=False)
    flags = _kinds(result)
    assert flags["mostly_missing"]["value"] > 0.5
    beyond = [f for f in result.population_flags if f["kind"] == "beyond_training_range"]
    assert {f["field"] for f in beyond} >= {"il6_max", "il6_last"}
    assert all(f["value"] > f["high"] and f["value"] == 9_000_000 for f in beyond if f["field"] == "il6_max")


def test_the_cli_says_it_and_evaluate_counts_it(small_cohort: Cohort, small_bundle: Path, tmp_path: Path) -> None:
    record = patient_record(small_cohort, small_cohort.patients["patient_id"].iloc[1])
    record["patient"]["age_years"] = 45.0
    patient = tmp_path / "adult.json"
    patient.write_text(json.dumps(record, default=float))
    out = CliRunner().invoke(
        app, ["predict", str(patient), "--model", str(small_bundle), "--no-audit", "--now-hours", "40"]
    )
    assert out.exit_code == 0, out.output
    said = " ".join(out.stdout.split())
    assert (
        said.count("outside the training population") == 1 and "found age 45 years, trained on 1.4 to 26 years" in said
    )
    older = small_cohort.patients.assign(age_years=small_cohort.patients["age_years"] + 30)
    shifted = Cohort(older, small_cohort.measurements, small_cohort.events, small_cohort.metadata)
    summary = evaluate_bundle(shifted, load_bundle(small_bundle), n_boot=50).document["population_flags"]
    assert summary["recorded"] and summary["infusions"]["age"] == int((older["age_years"] > 26).sum())


def _recorded(models: int) -> Population:
    """A training population of ages 1.4 to 26 whose ``models`` models all read age and the IL-6 trend."""
    model = {
        "features": ["age_years", "il6_log_slope"],
        "low": [1.4, -0.064],
        "high": [26.0, 0.276],
        "missing": [0.0, 0.0],
    }
    return Population(
        {
            "age_years": [1.4, 26.0],
            "diagnosis": ["B-ALL"],
            "product": ["tisagenlecleucel"],
            "models": {f"task{i}__36h": model for i in range(models)},
        }
    )


def _patient_flags(population: Population, age: float, slope: float) -> list[dict]:
    """What ``predict`` reports for one patient scored by every model of ``population``."""
    flags = population.patient_flags({"age_years": age, "diagnosis": "B-ALL", "product": "tisagenlecleucel"})
    for key in population.models:
        flags += population.input_flags(key, ["age_years", "il6_log_slope"], np.array([age, slope]), 36.0, f"q{key}")
    return summarise(flags)


def test_only_the_out_of_range_value_is_named_with_its_range() -> None:
    population = _recorded(1)
    flags = _patient_flags(population, 45.0, 0.0175)  # age beyond 1.4-26; the slope inside -0.064 to 0.276
    text = flags_text(flags, list(population.models))
    assert text == "found age 45 years, trained on 1.4 to 26 years"
    assert "il6_log_slope" not in text and "0.0175" not in text and "expected" not in text
    assert _patient_flags(population, 12.0, 0.0175) == []


def test_a_patient_scored_by_five_models_gets_one_line_with_each_finding_once() -> None:
    population = _recorded(5)
    flags = _patient_flags(population, 45.0, 0.9)
    assert [f["field"] for f in flags] == ["age_years", "il6_log_slope"]  # age said once, as the patient's
    assert flags[1]["models"] == list(population.models)
    text = flags_text(flags, list(population.models))
    assert "\n" not in text
    assert text == (
        "found age 45 years, trained on 1.4 to 26 years; "
        "found IL-6, trend (change of log value per hour) at 0.9 log(pg/mL)/h, trained on -0.064 to 0.276"
    )
    some = flags_text(flags, [*population.models, "other__0h"])  # models differ: name the questions it concerns
    assert some.endswith("(for qtask0__36h; qtask1__36h; qtask2__36h; qtask3__36h; qtask4__36h)")


@pytest.mark.parametrize(
    ("age", "said"),
    [
        (26.04, "found age 26.04 years, trained on 1.4 to 26 years"),  # more digits where 3 would read in range
        (0.5, "found age 0.5 years, trained on 1.4 to 26 years"),
        (123456.0, "found age 123,000 years, trained on 1.4 to 26 years"),
    ],
)
def test_values_read_as_people_write_them(age: float, said: str) -> None:
    assert flags_text(_patient_flags(_recorded(1), age, 0.0)) == said


def test_a_cohort_is_summarised_once_across_models() -> None:
    population = _recorded(3)
    rows = np.array([[10.0, 0.1], [12.0, 0.5], [11.0, 2.0], [9.0, -0.5]])
    flags = summarise(
        [
            f
            for key in population.models
            for f in population.input_flags(key, ["age_years", "il6_log_slope"], rows, 36.0, key)
        ]
    )
    assert [(f["field"], f["value"], f["rows"]) for f in flags] == [
        ("il6_log_slope", 2.0, 6),
        ("il6_log_slope", -0.5, 3),
    ]
    assert flags_text(flags, list(population.models)) == (
        "found IL-6, trend (change of log value per hour) at up to 2 log(pg/mL)/h in 6 row(s), trained on -0.064 to 0.276; "
        "found IL-6, trend (change of log value per hour) at down to -0.5 log(pg/mL)/h in 3 row(s), trained on -0.064 to 0.276"
    )


def test_a_yes_no_input_beyond_training_is_said_in_words() -> None:
    """An indicator training only ever saw as 0 (temperature always measured), found 1: its label and yes/no,
    never ``temperature_missing 1, trained on 0 to 0``."""
    flag = {"kind": BEYOND, "field": "temperature_missing", "value": 1.0, "low": 0.0, "high": 0.0}
    assert flag_text(flag) == "found temperature not measured since infusion: yes, always no in training"
    assert flag_text(flag | {"value": 0.0, "low": 1.0, "high": 1.0, "rows": 4}) == (
        "found temperature not measured since infusion: no in 4 row(s), always yes in training"
    )


def test_a_trajectory_says_each_finding_once_over_all_its_points(small_bundle: Path) -> None:
    from crsrisk.scoring.trajectory import risk_trajectory

    adult = {
        "patient": {"patient_id": "NEW", "age_years": 45, "product": "tisagenlecleucel"},
        "measurements": [{"hours_since_infusion": 10, "analyte": "il6", "value": 9_000_000, "unit": "pg/mL"}],
    }
    trajectory = risk_trajectory(adult, small_bundle, until_hours=40, audit=False)
    flags = trajectory.to_dict()["population_flags"]
    assert flags[0] == {"kind": "age", "field": "age_years", "value": 45.0, "low": 1.4, "high": 26.0}
    keys = [(f["kind"], f["field"]) for f in flags]
    assert len(keys) == len(set(keys)) and ("beyond_training_range", "age_years") not in keys
    il6 = next(f for f in flags if f["field"] == "il6_max")
    points = [p for p in trajectory.points if p["model_key"] in il6["models"] and p["hours"] > 10]
    assert il6["value"] == 9_000_000 and il6["rows"] == len(points) > 1


def _three_inputs(by_hour: bool) -> Population:
    """Age (known before infusion) and two inputs about the time after it; at hour 12 training lacked those two in
    9 rows of 10 (when the bins per landmark hour are recorded)."""
    model = {
        "features": ["age_years", "ferritin_last", "il6_last"],
        "low": [1.0, 1.0, 1.0],
        "high": [30.0, 1e5, 1e5],
        "missing": [0.0, 0.1, 0.1],
    }
    if by_hour:
        model["bins_by_landmark"] = {"12": {"rows": 10, "edges": [[], [], []], "counts": [[10], [1], [1]]}}
    return Population({"age_years": [1.0, 30.0], "diagnosis": [], "product": [], "models": {"k": model}})


def _missing_flag(population: Population, row: list[float], hours: float) -> dict | None:
    flags = population.input_flags("k", ["age_years", "ferritin_last", "il6_last"], np.array(row), hours, "q")
    return next((f for f in flags if f["kind"] == "mostly_missing"), None)


@pytest.mark.parametrize("by_hour", [False, True])
def test_at_infusion_only_inputs_that_can_exist_count_as_missing(by_hour: bool) -> None:
    population = _three_inputs(by_hour)
    assert _missing_flag(population, [5.0, np.nan, np.nan], 0.0) is None  # nothing after infusion can exist yet
    flag = _missing_flag(population, [np.nan, np.nan, np.nan], 0.0)  # not even the age
    assert flag is not None and flag["value"] == 1.0 and flag["training"] == 0.0
    assert flag_text(flag, ["k"]) == (
        "found 100% of the inputs that can have a value by hour 0 missing, trained with about 0% of the same inputs "
        "missing over all its training rows"
    )


def test_missingness_is_compared_with_training_at_the_same_hour_when_the_bundle_records_it() -> None:
    row = [5.0, np.nan, np.nan]  # two of three inputs missing at hour 12
    overall = _missing_flag(_three_inputs(False), row, 12.0)
    assert overall is not None and overall["training"] == pytest.approx(0.2 / 3, abs=1e-4)
    assert _missing_flag(_three_inputs(True), row, 12.0) is None  # training lacked them at hour 12 too (60 %)
    alone = _missing_flag(_three_inputs(True), [np.nan, np.nan, np.nan], 12.0)
    assert alone is not None and alone["training"] == 0.6 and alone["training_hours"] == 12.0
    assert flag_text(alone, ["k"]).endswith("trained with about 60% of the same inputs missing at hour 12")
    later = _missing_flag(_three_inputs(True), [np.nan, np.nan, np.nan], 20.0)  # between landmarks: the one before
    assert later is not None and later["training_hours"] == 12.0 and later["landmark_hours"] == 20.0
    assert _missing_flag(_three_inputs(True), [np.nan, np.nan, np.nan], 6.0)["training_hours"] is None


@pytest.fixture(scope="module")
def dynamic_bundle_with_bins(small_cohort: Cohort, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A severe-CRS super-model whose bundle records the training bins at every landmark hour."""
    from xgboost import XGBClassifier

    from crsrisk.bundle.calibration import fit_calibrator
    from crsrisk.tasks import DEFAULT_TASKS
    from tests_support import fitted_bundle

    def fit(X, y):
        fitted = XGBClassifier(n_estimators=20, max_depth=2, n_jobs=1, random_state=0).fit(X, y)
        return fitted.get_booster(), fit_calibrator(fitted.predict(X, output_margin=True), y, "platt")

    out = tmp_path_factory.mktemp("binned") / "model"
    return fitted_bundle(small_cohort, out, [DEFAULT_TASKS["severe_crs_dynamic"]], fit, "test", by_hour=True)


def test_with_bins_per_hour_the_examples_and_the_training_cohort_are_not_flagged_for_what_cannot_exist(
    small_cohort: Cohort, dynamic_bundle_with_bins: Path
) -> None:
    examples = Path(__file__).resolve().parents[1] / "examples"
    before = predict(examples / "patient.json", model=dynamic_bundle_with_bins, audit=False)
    assert before.now_hours == 0 and before.predictions and _kinds(before).get("mostly_missing") is None
    empty = {"patient": {"patient_id": "NEW", "age_years": 9, "product": "tisagenlecleucel"}}
    flag = _kinds(predict(empty, model=dynamic_bundle_with_bins, now_hours=40, audit=False))["mostly_missing"]
    assert flag["training_hours"] == 36.0 and flag["landmark_hours"] == 40.0 and flag["training"] < 0.5
    rows = evaluate_bundle(small_cohort, load_bundle(dynamic_bundle_with_bins), n_boot=20).document
    flagged = [f for f in rows["population_flags"]["rows"] if f["kind"] == "mostly_missing"]
    assert flagged == []  # its own training rows, hour 0 included, compared with training at their hours
