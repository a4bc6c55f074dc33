"""One rule of computability for the published scores, and the comparison rows that list the rest (every registered
score's computability and orientation: ``check_published_score`` in tests/conformance.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from crsrisk.cohort.population import Population, flags_text, summarise
from crsrisk.cohort.summary import same_cohort_as_training
from crsrisk.evaluation.published import baseline_computable, split_computable
from crsrisk.training.artifacts import comparison_rows


def test_m_easix_at_36h_is_computable_from_window_values_without_a_baseline() -> None:
    """A registry extract has no pre-infusion labs: m-EASIX still has its in-window value at 36 h, not at 0 h."""
    at_0 = pd.DataFrame({"m_easix_baseline": [np.nan] * 4})
    at_36 = at_0.assign(m_easix_last=[1.0, 2.0, np.nan, 4.0])
    assert split_computable(["m_easix", "easix"], at_0) == ([], ["m_easix", "easix"])
    assert split_computable(["m_easix", "easix"], at_36) == (["m_easix"], ["easix"])


def test_hay_without_temperature_is_not_computable() -> None:
    X = pd.DataFrame({"temperature_max": [np.nan] * 3, "mcp1_max": [2000.0, 10.0, 5000.0]})
    assert not baseline_computable("hay2017", X)


def test_comparison_table_lists_not_computable_scores_without_an_auroc() -> None:
    ci = {"value": 0.8, "ci_low": 0.7, "ci_high": 0.9}
    row = {
        "task": "severe_crs",
        "landmark": "0h",
        "model": "xgboost",
        "kind": "model",
        "n": 10,
        "events": 3,
        "metrics": {k: ci for k in ("auroc", "auprc", "brier", "calibration_slope")},
        "not_computable": ["m_easix", "easix"],
    }
    rows = comparison_rows([row, {**row, "model": "logistic"}])
    listed = [r for r in rows if r[5] == "not computable"]
    assert [r[2] for r in listed] == ["m_easix", "easix"]
    assert all("beats" not in r[-1] for r in listed)


def test_population_flag_quotes_only_the_out_of_range_value_of_each_column() -> None:
    """Regression: the value of a column was taken from the first flagged row, where it may be in range
    (``il6_log_slope=0.0175 (trained on -0.064 to 0.276)``)."""
    population = Population(
        {
            "models": {
                "k": {
                    "features": ["a", "b"],
                    "low": [0.0, -0.064],
                    "high": [1.0, 0.276],
                    "missing": [0.0, 0.0],
                }
            }
        }
    )
    values = np.array([[5.0, 0.0175], [0.5, 0.9]])
    text = flags_text(summarise(population.input_flags("k", ["a", "b"], values, 36.0, "q")), ["k"])
    assert (
        text
        == "found a up to 5 in 1 row(s), trained on 0 to 1; found b up to 0.9 in 1 row(s), trained on -0.064 to 0.276"
    )


def test_same_cohort_as_training_compares_fingerprints(small_cohort) -> None:
    """The one check: equal fingerprints only; an unrecorded fingerprint is not "the same"."""
    assert same_cohort_as_training(small_cohort.fingerprint(), small_cohort) is True
    assert same_cohort_as_training("0" * 64, small_cohort) is False
    assert same_cohort_as_training(None, small_cohort) is False
