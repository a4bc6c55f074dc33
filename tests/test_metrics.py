"""Evaluation metrics against scikit-learn and hand-computed values; bootstrap; decision curves; subgroups."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from crsrisk.evaluation.bootstrap import bootstrap_ci
from crsrisk.evaluation.decision import net_benefit, net_benefit_curve
from crsrisk.evaluation.metrics import auprc, auroc, brier, calibration_intercept_slope, threshold_metrics
from crsrisk.evaluation.subgroups import age_band, subgroup_metrics


@pytest.fixture(scope="module")
def calibrated() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    p = 1 / (1 + np.exp(-rng.normal(-1, 1.5, 20_000)))
    return (rng.random(p.size) < p).astype(int), p


def test_discrimination_matches_sklearn(calibrated) -> None:
    y, p = calibrated
    assert auroc(y, p) == pytest.approx(roc_auc_score(y, p))
    assert auprc(y, p) == pytest.approx(average_precision_score(y, p))
    assert brier(y, p) == pytest.approx(brier_score_loss(y, p))
    assert np.isnan(auroc(np.zeros(5), np.linspace(0, 1, 5)))


def test_calibration_intercept_and_slope(calibrated) -> None:
    y, p = calibrated
    intercept, slope = calibration_intercept_slope(y, p)
    assert intercept == pytest.approx(0, abs=0.05) and slope == pytest.approx(1, abs=0.05)
    logit = np.log(p / (1 - p))
    overconfident = 1 / (1 + np.exp(-2 * logit))
    assert calibration_intercept_slope(y, overconfident)[1] == pytest.approx(0.5, abs=0.03)
    too_high = 1 / (1 + np.exp(-(logit + 1)))
    assert calibration_intercept_slope(y, too_high)[0] == pytest.approx(-1, abs=0.06)


def test_threshold_metrics_by_hand() -> None:
    y = np.array([1, 1, 0, 0, 0])
    p = np.array([0.9, 0.2, 0.6, 0.1, 0.0])
    assert threshold_metrics(y, p, 0.5) == {"sensitivity": 0.5, "specificity": 2 / 3, "ppv": 0.5, "npv": 2 / 3}


def test_bootstrap_is_seeded_and_brackets_the_estimate(calibrated) -> None:
    y, p = calibrated[0][:2000], calibrated[1][:2000]
    first = bootstrap_ci(y, p, {"auroc": auroc}, n_boot=200, seed=4)
    assert first == bootstrap_ci(y, p, {"auroc": auroc}, n_boot=200, seed=4)
    assert first != bootstrap_ci(y, p, {"auroc": auroc}, n_boot=200, seed=5)
    a = first["auroc"]
    assert a["ci_low"] < a["value"] < a["ci_high"] and a["ci_high"] - a["ci_low"] < 0.1


def test_net_benefit_by_hand() -> None:
    y = np.array([1, 0, 1, 0])
    p = np.array([0.8, 0.6, 0.4, 0.1])
    # at 0.5: TP = 1, FP = 1, n = 4 -> 1/4 - 1/4 * (0.5 / 0.5) = 0
    assert net_benefit_curve(y, p, np.array([0.5]))[0] == pytest.approx(0.0)
    # at 0.2: TP = 2, FP = 1 -> 2/4 - 1/4 * 0.25 = 0.4375
    assert net_benefit_curve(y, p, np.array([0.2]))[0] == pytest.approx(0.4375)
    table = net_benefit(y, {"m": p}, np.array([0.2, 0.5]))
    assert set(table["model"]) == {"m", "treat_all", "treat_none"}
    assert table[table["model"] == "treat_all"]["net_benefit"].iloc[0] == pytest.approx(0.5 - 0.5 * 0.25)


def test_subgroups_flag_small_groups(calibrated) -> None:
    y, p = calibrated[0][:600], calibrated[1][:600]
    groups = pd.Series(np.where(np.arange(600) < 580, "big", "tiny"), name="centre")
    table = subgroup_metrics(y, p, groups, n_boot=50).set_index("level")
    assert table.loc["big", "warning"] == "" and table.loc["tiny", "warning"].startswith("small group: n=20")
    assert list(age_band(pd.Series([1.0, 5.0, 15.0, 20.0, 40.0]))) == ["<3", "3-11", "12-17", "18-25", "26+"]
