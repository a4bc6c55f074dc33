"""Published scores: the rules fire exactly at their thresholds; refits happen inside the training fold."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from crsrisk.baselines import BASELINES, PublishedScore, baselines_for


def frame(**columns) -> pd.DataFrame:
    return pd.DataFrame({k: np.asarray(v, dtype=float) for k, v in columns.items()})


def test_hay_rule_boundaries_and_missing_values() -> None:
    X = frame(temperature_max=[38.9, 38.89, 39.5, np.nan], mcp1_max=[1343.5, 5000, 1343.4, 5000])
    assert list(PublishedScore("hay2017").score_raw(X)) == [1.0, 0.0, 0.0, 0.0]


def test_gust_rule_needs_all_three() -> None:
    X = frame(temperature_max=[39, 39, 39], il6_max=[16, 15.9, 100], mcp1_max=[1343.5, 2000, 1000])
    assert list(PublishedScore("gust2017").score_raw(X)) == [1.0, 0.0, 0.0]


def test_teachey_is_refitted_on_the_training_fold_only() -> None:
    rng = np.random.default_rng(0)
    X = frame(sgp130_max=rng.lognormal(12, 0.3, 300), ifng_max=rng.lognormal(3, 1.5, 300),
              il1ra_max=rng.lognormal(7, 1, 300))
    y = (np.log(X["ifng_max"]) + rng.normal(0, 1, 300) > 3.5).astype(int).to_numpy()
    one = clone(PublishedScore("teachey2016")).fit(X.iloc[:150], y[:150])
    two = clone(PublishedScore("teachey2016")).fit(X.iloc[150:], y[150:])
    assert not np.allclose(one.predict_proba(X)[:, 1], two.predict_proba(X)[:, 1])
    assert one.model_.coef_[0, 1] > 0  # IFN-gamma carries the signal


def test_continuous_scores_impute_the_training_median_and_calibrate() -> None:
    X = frame(easix_baseline=[1, 2, 4, 8, 16, np.nan] * 20)
    y = np.array([0, 0, 1, 0, 1, 1] * 20)
    model = PublishedScore("easix").fit(X, y)
    raw = model.score_raw(X)
    assert raw[5] == pytest.approx(np.log(4))  # median of log(1, 2, 4, 8, 16)
    assert model.predict_proba(X).shape == (120, 2)


def test_registry_and_applicability() -> None:
    assert baselines_for("severe_crs", 36.0) == ["hay2017", "teachey2016", "m_easix", "easix"]
    assert baselines_for("severe_crs", 0) == ["m_easix", "easix"]
    assert baselines_for("icans", 36.0) == ["m_easix", "easix", "gust2017"]
    assert baselines_for("toci_refractory", "first_tocilizumab") == ["toci_simple"]
    assert all(spec.citation for spec in BASELINES.values())
    with pytest.raises(ValueError, match="lacks"):
        PublishedScore("hay2017").fit(frame(age_years=[1, 2]), np.array([0, 1]))
