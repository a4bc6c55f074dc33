"""Reasons read in clinical words: a few phrases pinned, and every feature phrased without codes or "nan"."""

from __future__ import annotations

import math

import pytest

from crsrisk.features.phrases import phrase
from crsrisk.features.spec import feature_names

NAN = math.nan


@pytest.mark.parametrize(("name", "value", "shap", "expected"), [
    ("ferritin_fold_change", 3.8, 0.2, "ferritin 3.8x its baseline (raised the risk)"),
    ("fever_first_hours", 9.2, 0.1, "febrile since hour 9 (raised the risk)"),
    ("platelets_missing", 1.0, 0.1, "platelets not measured yet (raised the risk)"),
    ("platelets_last", NAN, -0.1, "platelets not measured yet (lowered the risk)"),
    ("il6_log_slope", math.log(2400 / 40) / 12, 0.5, "IL-6 rising about 60-fold per 12 h (raised the risk)"),
    ("il6_max", 2400.0, 0.3, "IL-6 highest so far 2,400 pg/mL (raised the risk)"),
    ("product_obecabtagene_autoleucel", 1.0, -0.1, "product: obecabtagene autoleucel (lowered the risk)"),
    ("product_tisagenlecleucel", 0.0, 0.1, "product not tisagenlecleucel (raised the risk)"),
    ("costim_cd28", 0.0, 0.0, "4-1BB costimulatory domain (did not change the risk)"),
    ("tocilizumab_doses", 2.0, 0.4, "2 tocilizumab dose(s) so far (raised the risk)"),
])
def test_pinned_phrases(name: str, value: float, shap: float, expected: str) -> None:
    assert phrase(name, value, shap) == expected


def test_every_feature_reads_as_words() -> None:
    for name in feature_names(True):
        for value in (0.0, 1.0, 37.5, NAN):
            text = phrase(name, value, 0.1)
            assert "1 = " not in text and "nan" not in text.lower().replace("infusion", "") and "_" not in text, text


def test_regression_a_trend_too_steep_for_exp_is_phrased_not_an_overflow() -> None:
    # The long fuzzing run drew two IL-6 values minutes apart and orders of magnitude apart: a log-slope whose
    # 12-hour fold overflows a float. It must read as words, never raise OverflowError.
    assert phrase("il6_log_slope", 500.0, 1.0) == "IL-6 rising more than a million-fold per 12 h (raised the risk)"
    assert "falling" in phrase("il6_log_slope", -500.0, -1.0)
