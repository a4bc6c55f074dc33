"""Reasons read in clinical words: a few phrases pinned, and every feature phrased without codes or "nan"."""

from __future__ import annotations

import math

import pytest

from crsrisk.features.build import TrendEnds
from crsrisk.features.phrases import Clock, describe_value, log_odds, missing_lines, phrase
from crsrisk.features.spec import feature_info, feature_names

NAN = math.nan


@pytest.mark.parametrize(
    ("name", "value", "shap", "expected"),
    [
        ("ferritin_fold_change", 3.8, 0.2, "ferritin 3.8x its baseline (raised the risk)"),
        ("fever_first_hours", 9.2, 0.1, "febrile since hour 9 (raised the risk)"),
        ("platelets_missing", 1.0, 0.1, "platelets not measured yet (its absence raised the risk)"),
        ("platelets_last", NAN, -0.1, "platelets not measured yet (its absence lowered the risk)"),
        ("il6_log_slope", math.log(2400 / 40) / 12, 0.5, "IL-6 rising about 60-fold per 12 h (raised the risk)"),
        ("il6_max", 2400.0, 0.3, "IL-6 highest so far 2,400 pg/mL (raised the risk)"),
        ("product_obecabtagene_autoleucel", 1.0, -0.1, "product obecabtagene autoleucel (lowered the risk)"),
        ("product_tisagenlecleucel", 0.0, 0.1, "product not tisagenlecleucel (raised the risk)"),
        ("costim_cd28", 0.0, 0.0, "4-1BB costimulatory domain (did not change the risk)"),
        ("tocilizumab_doses", 2.0, 0.4, "2 tocilizumab dose(s) so far (raised the risk)"),
        ("temperature_max", 39.4, 0.2, "temperature highest so far 39.4 °C (raised the risk)"),  # as written, not degC
    ],
)
def test_pinned_phrases(name: str, value: float, shap: float, expected: str) -> None:
    assert phrase(name, value, shap) == expected


@pytest.mark.parametrize(
    ("name", "ends", "expected"),
    [
        ("il6_log_slope", TrendEnds(4.0, 40.0, 16.0, 2400.0, 2400.0), "IL-6 rose from 40 to 2,400 pg/mL over 12 h"),
        (
            "ferritin_log_slope",
            TrendEnds(3.7, 1275.0, 25.9, 254.8, 1275.0),
            "ferritin fell from 1,275 to 255 ng/mL over 22 h",
        ),
        ("crp_log_slope", TrendEnds(6.0, 40.0, 30.0, 44.0, 44.0), "CRP about 44 mg/L, steady over 24 h"),  # within 10 %
        (
            "crp_log_slope",
            TrendEnds(6.0, 40.0, 30.0, 35.9, 40.0),
            "CRP fell from 40 to 35.9 mg/L over 24 h",
        ),  # beyond it
        ("il6_log_slope", TrendEnds(4.0, 40.0, 4.5, 90.0, 90.0), "IL-6 rose from 40 to 90 pg/mL over 0.5 h"),
        (
            "il6_log_slope",
            TrendEnds(6.0, 10.0, 30.0, 100.0, 1000.0),  # up then down: never told as a plain rise
            "IL-6 rose from 10 to a peak of 1,000, now 100 pg/mL, over 24 h",
        ),
        (
            "ferritin_log_slope",
            TrendEnds(0.0, 900.0, 24.0, 300.0, 950.0),
            "ferritin fell from 900 to 300 ng/mL over 24 h",
        ),
        ("il6_log_slope", TrendEnds(4.0, 40.0, 4.01, 9e8, 9e8), "IL-6 rose from 40 to 900,000,000 pg/mL over 0.01 h"),
        (
            "temperature_log_slope",
            TrendEnds(0.0, 37.0, 30.0, 39.9, 39.9),
            "temperature rose from 37 to 39.9 °C over 30 h",
        ),
        ("temperature_log_slope", TrendEnds(0.0, 38.5, 6.0, 38.5, 38.5), "temperature about 38.5 °C, steady over 6 h"),
    ],
)
def test_a_trend_says_what_the_values_did(name: str, ends: TrendEnds, expected: str) -> None:
    analyte = name.removesuffix("_log_slope")
    assert phrase(name, 0.3, 0.2, {analyte: ends}) == f"{expected} (raised the risk)"
    assert phrase(name, 0.3, 0.2, {"sgp130": ends}) == phrase(name, 0.3, 0.2)  # another analyte's ends: fold wording
    assert phrase(name, NAN, 0.2, {analyte: ends}).endswith("trend yet (its absence raised the risk)")


def test_every_feature_reads_as_words() -> None:
    trends = {"il6": TrendEnds(4.0, 40.0, 16.0, 2400.0, 2400.0), "temperature": TrendEnds(0.0, 37.0, 30.0, 37.5, 37.5)}
    for name in feature_names(True):
        for value in (0.0, 1.0, 37.5, NAN):
            for text in (phrase(name, value, 0.1), phrase(name, value, 0.1, trends)):
                assert "1 = " not in text and "nan" not in text.lower().replace("infusion", "") and "_" not in text, (
                    text
                )


def test_regression_a_trend_too_steep_for_exp_is_phrased_not_an_overflow() -> None:
    # The long fuzzing run drew two IL-6 values minutes apart and orders of magnitude apart: a log-slope whose
    # 12-hour fold overflows a float. It must read as words, never raise OverflowError.
    assert phrase("il6_log_slope", 500.0, 1.0) == "IL-6 rising more than a million-fold per 12 h (raised the risk)"
    assert "falling" in phrase("il6_log_slope", -500.0, -1.0)


@pytest.mark.parametrize(
    ("name", "value", "shap", "expected"),
    [
        ("platelets_log_slope", NAN, 0.3, "no platelets trend yet (its absence raised the risk)"),
        ("baseline_il15", NAN, -0.2, "IL-15 not measured before infusion (its absence lowered the risk)"),
        ("hours_since_crs_onset", NAN, -0.3, "no CRS so far (lowered the risk)"),  # a finding, not an absence
        ("fever_first_hours", NAN, -0.1, "no fever so far (lowered the risk)"),
        ("platelets_missing", 0.0, -0.1, "platelets measured since infusion (lowered the risk)"),
    ],
)
def test_an_absent_input_is_said_as_such(name: str, value: float, shap: float, expected: str) -> None:
    assert phrase(name, value, shap) == expected


def test_a_missing_trend_says_whether_the_analyte_was_measured_once_or_never() -> None:
    """The same NaN slope means one IFN-gamma value so far or none at all; the patient's row tells which."""
    once, never = {"ifng_last": 334.6}, {"ifng_last": NAN}
    assert phrase("ifng_log_slope", NAN, 0.2, row=once) == (
        "no IFN-gamma trend yet: one value since infusion (its absence raised the risk)"
    )
    assert phrase("ifng_log_slope", NAN, 0.2, row=never) == (
        "no IFN-gamma trend yet: not measured since infusion (its absence raised the risk)"
    )
    assert phrase("ifng_log_slope", NAN, 0.2, row={}) == "no IFN-gamma trend yet (its absence raised the risk)"


def test_times_are_said_from_the_hour_asked() -> None:
    # CRS began at 11.7 h, the first tocilizumab dose (the model's landmark) at 20.7 h, asked at hour 40
    at_dose = Clock(now=40.0, landmark=20.7, landmark_name="the first tocilizumab dose")
    expected = "CRS began 28 h ago, 9 h before the first tocilizumab dose (raised the risk)"
    assert phrase("hours_since_crs_onset", 9.0, 0.4, clock=at_dose) == expected
    now = Clock(now=40.0, landmark=40.0, landmark_name="hour 40")  # a super-model reads the record at now itself
    assert phrase("hours_since_crs_onset", 28.3, 0.4, clock=now) == "CRS began 28 h ago (raised the risk)"
    assert phrase("fever_first_hours", 9.2, 0.1, clock=now) == "febrile since hour 9 (31 h ago) (raised the risk)"
    assert phrase("il6_hours_to_max", 24.0, 0.1, clock=now) == "IL-6 peaked at hour 24 (16 h ago) (raised the risk)"
    assert phrase("crs_grade_current", 2.0, 0.2, clock=now) == "CRS grade 2 now (raised the risk)"
    # what a model read at the dose knew is said as of the dose, not as of now
    expected = "no platelets trend by the first tocilizumab dose (its absence raised the risk)"
    assert phrase("platelets_log_slope", NAN, 0.3, clock=at_dose) == expected
    assert (
        phrase("crs_grade_current", 2.0, 0.2, clock=at_dose)
        == "CRS grade 2 at the first tocilizumab dose (raised the risk)"
    )
    assert (
        phrase("crs_grade_max", 2.0, 0.2, clock=at_dose)
        == "CRS up to grade 2 by the first tocilizumab dose (raised the risk)"
    )


def test_missing_inputs_are_grouped_by_why_each_is_missing_and_said_once() -> None:
    names = [
        "baseline_il15",
        "baseline_temperature",
        "ifng_last",
        "ifng_max",
        "ifng_log_slope",
        "ifng_hours_to_max",
        "platelets_last",
        "platelets_max",
        "platelets_log_slope",
        "ferritin_log_slope",  # its latest value is there: one value, no trend
        "crp_log_slope",
        "m_easix_last",
        "weight_kg",
        "sex_male",
    ]
    assert missing_lines(names) == [
        "not measured before infusion: IL-15, temperature",
        "not measured since infusion: IFN-gamma, platelets",
        "only one value so far (no trend): ferritin, CRP",
        "not computable: m-EASIX (needs platelets)",
        "not recorded: weight, sex",
    ]


def test_missing_inputs_of_a_model_read_at_an_earlier_landmark_are_said_as_of_it() -> None:
    at_dose = Clock(now=40.0, landmark=20.7, landmark_name="the first tocilizumab dose")
    assert missing_lines(["il8_last", "il8_log_slope", "ldh_log_slope"], at_dose) == [
        "not measured from infusion to the first tocilizumab dose: IL-8",
        "only one value by the first tocilizumab dose (no trend): LDH",
    ]


def test_a_derived_value_is_missing_exactly_when_one_of_its_inputs_is() -> None:
    """``FeatureInfo.inputs`` (what ``missing_lines`` says a derived value needs) matches how the builder computes
    it, on the shipped examples at several hours (their platelets come and go; a ratio over zero aside)."""
    from pathlib import Path

    import numpy as np

    from crsrisk.cohort.record import read_record, validate_record
    from crsrisk.features.build import feature_matrix

    examples = Path(__file__).resolve().parents[1] / "examples"
    names = feature_names(True)
    derived = [n for n in names if feature_info(n).inputs]
    assert set(derived) == {
        "fever_hours",
        "m_easix_last",
        "ferritin_fold_change",
        "crp_fold_change",
        "il6_sgp130_ratio",
        "easix_baseline",
        "m_easix_baseline",
    }
    seen_missing = set()
    for example in ("patient.json", "patient-day1.json", "patient-tocilizumab.json"):
        arrays = validate_record(read_record(examples / example))
        hours = np.array([0.0, 6.0, 12.0, 20.0, 40.0])
        matrix = feature_matrix(arrays, np.zeros(hours.size, dtype=np.int64), hours, window=True)
        for name in derived:
            inputs = matrix[:, [names.index(i) for i in feature_info(name).inputs]]
            lacking = np.isnan(inputs).any(axis=1)
            at_zero = (inputs == 0).any(axis=1)
            value = matrix[:, names.index(name)]
            assert np.array_equal(np.isnan(value) & ~at_zero, lacking & ~at_zero), (example, name)
            seen_missing |= {name for _ in np.flatnonzero(lacking)}
    assert {"m_easix_last", "fever_hours"} <= seen_missing  # the check saw both sides


def test_a_one_hot_input_names_what_the_patient_has() -> None:
    row = {"product_obecabtagene_autoleucel": 0.0, "product_axicabtagene_ciloleucel": 1.0, "diagnosis_b_all": 0.0}
    assert (
        phrase("product_obecabtagene_autoleucel", 0.0, 0.2, row=row)
        == "product axicabtagene ciloleucel, not obecabtagene autoleucel (raised the risk)"
    )
    assert describe_value("diagnosis_b_all", 0.0, row={"diagnosis_other": 1.0}) == "another diagnosis, not B-ALL"
    assert describe_value("product_other", 1.0) == "another product"


@pytest.mark.parametrize(
    ("value", "said"),
    [(0.1234, "+0.123"), (-0.0004, "-<0.001"), (0.0004, "+<0.001"), (0.0, "+0.000"), (-0.0005, "-0.001")],
)
def test_a_log_odds_change_never_reads_minus_zero(value: float, said: str) -> None:
    assert log_odds(value) == said
