"""Published scores: the rules fire exactly at their thresholds; refits happen inside the training fold."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.metrics import roc_auc_score

from crsrisk.evaluation.published import BASELINES, PublishedScore, baselines_for


def frame(**columns) -> pd.DataFrame:
    return pd.DataFrame({k: np.asarray(v, dtype=float) for k, v in columns.items()})


def test_hay_rule_fires_exactly_at_both_thresholds() -> None:
    X = frame(
        temperature_max=[38.9, 38.89, 39.5, np.nan, 40.0, 38.9], mcp1_max=[1343.5, 5000, 1343.4, 5000, np.nan, 1343.6]
    )
    assert list(PublishedScore("hay2017").score_raw(X)) == [1.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    assert list(PublishedScore("hay2017").predict(X)) == [1, 0, 0, 0, 0, 1]  # the published classification


def test_gust_rule_needs_all_three() -> None:
    X = frame(
        temperature_max=[39, 39, 39, 38.8, 39],
        il6_max=[16, 15.9, 100, 100, np.nan],
        mcp1_max=[1343.5, 2000, 1000, 2000, 2000],
    )
    assert list(PublishedScore("gust2017").score_raw(X)) == [1.0, 0.0, 0.0, 0.0, 0.0]


def test_rule_probability_is_the_training_event_rate_in_each_arm() -> None:
    X = frame(temperature_max=[39.0] * 10 + [37.0] * 10, mcp1_max=[2000.0] * 20)
    y = np.array([1] * 8 + [0] * 2 + [1] * 2 + [0] * 8)
    proba = PublishedScore("hay2017").fit(X, y).predict_proba(X)[:, 1]
    assert proba[0] == pytest.approx(0.8, abs=1e-3) and proba[-1] == pytest.approx(0.2, abs=1e-3)


def test_teachey_is_refitted_on_the_training_fold_only() -> None:
    rng = np.random.default_rng(0)
    X = frame(
        sgp130_max=rng.lognormal(12, 0.3, 300), ifng_max=rng.lognormal(3, 1.5, 300), il1ra_max=rng.lognormal(7, 1, 300)
    )
    y = (np.log(X["ifng_max"]) + rng.normal(0, 1, 300) > 3.5).astype(int).to_numpy()
    one = clone(PublishedScore("teachey2016")).fit(X.iloc[:150], y[:150])
    two = clone(PublishedScore("teachey2016")).fit(X.iloc[150:], y[150:])
    assert not np.allclose(one.predict_proba(X)[:, 1], two.predict_proba(X)[:, 1])
    assert one.model_.coef_[0, 1] > 0  # IFN-gamma (on the log scale) carries the signal
    assert roc_auc_score(y[150:], one.predict_proba(X.iloc[150:])[:, 1]) > 0.75
    # score_raw orders exactly as predict_proba
    assert roc_auc_score(y, one.score_raw(X)) == pytest.approx(roc_auc_score(y, one.predict_proba(X)[:, 1]))
    # the medians used for imputation are those of the training fold
    assert one.medians_["ifng_max"] == pytest.approx(np.log(X["ifng_max"].iloc[:150]).median())


def test_clone_gives_an_unfitted_copy_with_the_same_name() -> None:
    fitted = PublishedScore("easix").fit(frame(easix_baseline=[1, 2, 4, 8] * 5), np.array([0, 0, 1, 1] * 5))
    copy = clone(fitted)
    assert copy.get_params() == {"name": "easix"} and not hasattr(copy, "mapping_")


def test_continuous_scores_impute_the_training_median_and_use_the_published_cutoff() -> None:
    X = frame(easix_baseline=[1, 2, 4, 8, 16, np.nan] * 20)
    y = np.array([0, 0, 1, 0, 1, 1] * 20)
    model = PublishedScore("easix").fit(X, y)
    raw = model.score_raw(X)
    assert raw[5] == pytest.approx(np.log(4))  # median of log(1, 2, 4, 8, 16)
    assert model.predict_proba(X).shape == (120, 2)
    # Korell 2022: EASIX > 4.67 is high risk
    assert list(model.predict(frame(easix_baseline=[4.66, 4.67, 4.68]))) == [0, 0, 1]


def test_m_easix_uses_the_latest_value() -> None:
    y = np.array([0, 1] * 10)
    at_0 = frame(m_easix_baseline=[1, 10] * 10)
    at_36 = at_0.assign(m_easix_last=[20.0, 2.0] * 9 + [np.nan, np.nan])
    assert PublishedScore("m_easix").fit(at_0, y).score_raw(at_0)[1] == pytest.approx(np.log(10))
    raw = PublishedScore("m_easix").fit(at_36, y).score_raw(at_36)
    assert raw[:2] == pytest.approx(np.log([20.0, 2.0]))
    assert raw[-2:] == pytest.approx(np.log([1.0, 10.0]))  # no value in the window: fall back to the baseline


def test_toci_simple_logs_the_lab_values_only() -> None:
    rng = np.random.default_rng(1)
    X = frame(
        il6_last=rng.lognormal(5, 1, 80),
        ferritin_last=rng.lognormal(8, 1, 80),
        marrow_blasts_pct=rng.uniform(0, 90, 80),
        crs_grade_current=rng.integers(0, 3, 80),
    )
    y = (X["crs_grade_current"] >= 2).astype(int).to_numpy()
    model = PublishedScore("toci_simple").fit(X, y)
    assert model.medians_["crs_grade_current"] == X["crs_grade_current"].median()
    assert model.medians_["il6_last"] == pytest.approx(np.log(X["il6_last"]).median())
    assert np.all(np.diff(model.predict_proba(X.sort_values("crs_grade_current"))[:, 1][[0, -1]]) > 0)


def test_registry_and_applicability() -> None:
    assert baselines_for("severe_crs", 36.0) == ["hay2017", "teachey2016", "m_easix", "easix"]
    assert baselines_for("severe_crs", 0) == ["m_easix", "easix"]
    assert baselines_for("icans", 36) == ["m_easix", "easix", "gust2017"]
    assert baselines_for("toci_refractory", "first_tocilizumab") == ["toci_simple"]
    assert baselines_for("toci_refractory", 36.0) == []
    assert all(
        spec.citation and spec.status in {"confirmed", "to confirm", "project baseline"} for spec in BASELINES.values()
    )


def test_clear_errors() -> None:
    with pytest.raises(ValueError, match=r"lacks \['temperature_max', 'mcp1_max'\]"):
        PublishedScore("hay2017").fit(frame(age_years=[1, 2]), np.array([0, 1]))
    with pytest.raises(ValueError, match="unknown published score 'nope'"):
        PublishedScore("nope").fit(frame(age_years=[1, 2]), np.array([0, 1]))
    with pytest.raises(ValueError, match="both classes"):
        PublishedScore("easix").fit(frame(easix_baseline=[1, 2]), np.array([0, 0]))
    with pytest.raises(ValueError, match="pandas DataFrame"):
        PublishedScore("easix").fit(np.ones((2, 1)), np.array([0, 1]))
