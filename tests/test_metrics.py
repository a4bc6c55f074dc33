"""Evaluation metrics against scikit-learn and hand-computed values; bootstrap; decision curves; subgroups; plots."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.figure import Figure
from scipy.optimize import minimize_scalar
from scipy.special import expit
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from crsrisk.evaluation import metrics as m
from crsrisk.evaluation.bootstrap import bootstrap_ci
from crsrisk.evaluation.decision import net_benefit, net_benefit_curve
from crsrisk.evaluation.plots import calibration_plot, decision_curve_plot, roc_plot, save_figure
from crsrisk.evaluation.subgroups import age_band, subgroup_metrics


@pytest.fixture(scope="module")
def calibrated() -> tuple[np.ndarray, np.ndarray]:
    """n = 20,000 outcomes drawn from their own probabilities: a perfectly calibrated model."""
    rng = np.random.default_rng(0)
    p = expit(rng.normal(-1, 1.5, 20_000))
    return (rng.random(p.size) < p).astype(int), p


@pytest.mark.parametrize("n, rounding", [(7, 1), (300, 1), (2000, 6)])
def test_discrimination_and_brier_match_sklearn_with_ties(n: int, rounding: int) -> None:
    rng = np.random.default_rng(n)
    p = np.round(rng.random(n), rounding)  # rounding to 0.1 makes many ties
    y = (rng.random(n) < p).astype(int)
    y[:2] = [0, 1]
    assert m.auroc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert m.auprc(y, p) == pytest.approx(average_precision_score(y, p), abs=1e-12)
    assert m.brier(y, p) == pytest.approx(brier_score_loss(y, p), abs=1e-12)


def test_small_hand_computed_values() -> None:
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.4, 0.35, 0.8])
    assert m.auroc(y, p) == pytest.approx(0.75)  # pairs (pos > neg): 0.35>0.1, 0.8>0.1, 0.8>0.4 -> 3/4
    assert m.auprc(y, p) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert m.brier(y, p) == pytest.approx((0.01 + 0.16 + 0.4225 + 0.04) / 4)
    assert m.auroc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == pytest.approx(0.5)  # all tied
    assert m.auroc(y, np.array([-3.0, 1.0, 0.5, 7.0])) == pytest.approx(0.75)  # raw scores are fine


def test_one_class_gives_nan_not_a_crash() -> None:
    y, p = np.zeros(5), np.linspace(0.1, 0.9, 5)
    table = m.metric_table(y, p, 0.5)
    assert all(
        np.isnan(table[k]) for k in ("auroc", "auprc", "calibration_intercept", "calibration_slope", "sensitivity")
    )
    assert table["ppv"] == 0.0 and table["specificity"] == pytest.approx(0.4) and table["npv"] == 1.0
    assert table["brier"] == pytest.approx(np.mean(p**2))
    assert all(np.isnan(v) for v in m.metric_table([], [], 0.5).values())


def test_calibration_of_a_calibrated_and_a_miscalibrated_model(calibrated) -> None:
    y, p = calibrated
    intercept, slope = m.calibration_intercept_slope(y, p)
    assert intercept == pytest.approx(0, abs=0.05) and slope == pytest.approx(1, abs=0.05)
    lp = m.logit(p)
    assert m.calibration_slope(y, expit(2 * lp)) == pytest.approx(0.5, abs=0.03)  # overconfident -> slope < 1
    assert m.calibration_slope(y, expit(0.5 * lp)) == pytest.approx(2.0, abs=0.1)  # underconfident -> slope > 1
    assert m.calibration_intercept(y, expit(lp + 1)) == pytest.approx(-1, abs=0.06)  # risks too high


def test_calibration_matches_reference_fits() -> None:
    rng = np.random.default_rng(3)
    p = expit(rng.normal(-0.5, 2, 500))
    y = (rng.random(500) < expit(0.3 + 0.7 * m.logit(p))).astype(int)
    lp = m.logit(p)
    slope_ref = LogisticRegression(C=np.inf, solver="newton-cholesky", tol=1e-12).fit(lp[:, None], y).coef_[0, 0]
    offset_nll = lambda a: -np.sum(y * (a + lp) - np.logaddexp(0, a + lp))  # noqa: E731
    intercept_ref = minimize_scalar(offset_nll, bounds=(-5, 5), method="bounded", options={"xatol": 1e-10}).x
    assert m.calibration_slope(y, p) == pytest.approx(slope_ref, abs=1e-5)
    assert m.calibration_intercept(y, p) == pytest.approx(intercept_ref, abs=1e-5)


def test_calibration_is_nan_when_undefined() -> None:
    assert np.isnan(m.calibration_slope([0, 1, 0, 1], [0.3] * 4))  # constant predictions: slope not identified
    assert np.isnan(m.calibration_slope([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]))  # complete separation
    assert np.isnan(m.calibration_slope([0, 0, 1, 1], [0.1, 0.5, 0.5, 0.9]))  # quasi-complete separation
    assert np.isfinite(m.calibration_slope([0, 1, 0, 1], [0.1, 0.5, 0.6, 0.9]))  # overlap: finite slope


def test_threshold_metrics_by_hand() -> None:
    y = np.array([1, 1, 0, 0, 0])
    p = np.array([0.9, 0.2, 0.6, 0.1, 0.5])  # 0.5 is flagged at threshold 0.5 (p >= threshold)
    assert m.threshold_metrics(y, p, 0.5) == pytest.approx(
        {"sensitivity": 0.5, "specificity": 1 / 3, "ppv": 1 / 3, "npv": 1 / 2}
    )
    assert set(m.metric_table(y, p, 0.5)) == {
        "auroc",
        "auprc",
        "brier",
        "calibration_intercept",
        "calibration_slope",
        "sensitivity",
        "specificity",
        "ppv",
        "npv",
    }


def test_calibration_bins() -> None:
    y = np.array([0, 1, 0, 0, 1, 1, 1, 0])
    rule = np.array([0.2, 0.2, 0.2, 0.2, 0.7, 0.7, 0.7, 0.7])  # two distinct values: one bin each
    table = m.calibration_bins(y, rule, bins=10)
    assert table.to_dict("list") == {
        "n": [4, 4],
        "mean_predicted": pytest.approx([0.2, 0.7]),
        "observed_rate": [0.25, 0.75],
    }
    p = np.linspace(0.05, 0.95, 40)
    quartiles = m.calibration_bins((p > 0.5).astype(int), p, bins=4)
    assert list(quartiles["n"]) == [10, 10, 10, 10] and list(quartiles["observed_rate"]) == [0, 0, 1, 1]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from([0.5, 2.0, -1.0, np.nan]), min_size=1, max_size=5))
def test_bad_labels_are_refused(bad: list[float]) -> None:
    with pytest.raises(ValueError, match="y: row 0 is"):
        m.auroc(np.array(bad + [0.0, 1.0]), np.linspace(0, 1, len(bad) + 2))


def test_bad_probabilities_are_refused() -> None:
    with pytest.raises(ValueError, match=r"p: row 1 is 1.2; expected a probability"):
        m.brier([0, 1], [0.2, 1.2])
    with pytest.raises(ValueError, match="p: row 0 is nan"):
        m.auroc([0, 1], [np.nan, 0.3])
    with pytest.raises(ValueError, match="3 values for 2 labels"):
        m.auroc([0, 1], [0.1, 0.2, 0.3])


def test_bootstrap_is_seeded_and_brackets_the_estimate(calibrated) -> None:
    y, p = calibrated[0][:1500], calibrated[1][:1500]
    first = bootstrap_ci(y, p, {"auroc": m.auroc}, n_boot=1000, seed=4)
    assert first == bootstrap_ci(y, p, {"auroc": m.auroc}, n_boot=1000, seed=4)
    assert first != bootstrap_ci(y, p, {"auroc": m.auroc}, n_boot=1000, seed=5)
    a = first["auroc"]
    assert a["value"] == pytest.approx(roc_auc_score(y, p))
    assert a["ci_low"] < a["value"] < a["ci_high"] and a["ci_high"] - a["ci_low"] < 0.1


def test_vectorised_and_per_resample_paths_agree(calibrated) -> None:
    y, p = calibrated[0][:400], calibrated[1][:400]
    plain = {name: (lambda fn: lambda a, b: fn(a, b))(fn) for name, fn in m.standard_metrics(0.3).items()}  # noqa: B023 (fn is bound by the outer lambda)
    fast = bootstrap_ci(y, p, m.standard_metrics(0.3), n_boot=60, seed=1)
    slow = bootstrap_ci(y, p, plain, n_boot=60, seed=1)
    for name in fast:
        assert fast[name] == pytest.approx(slow[name], abs=1e-9), name


def test_grouped_bootstrap_resamples_whole_patients(calibrated) -> None:
    y, p = calibrated[0][:300], calibrated[1][:300]
    # every patient appears 3 times: a patient-level bootstrap gives a wider CI than a row-level one
    y3, p3, ids = np.tile(y, 3), np.tile(p, 3), np.tile(np.arange(300), 3)
    rows = bootstrap_ci(y3, p3, {"auroc": m.auroc}, n_boot=400, seed=0, stratify=False)["auroc"]
    grouped = bootstrap_ci(y3, p3, {"auroc": m.auroc}, n_boot=400, seed=0, groups=ids)["auroc"]
    assert grouped["value"] == rows["value"]
    assert (grouped["ci_high"] - grouped["ci_low"]) > 1.4 * (rows["ci_high"] - rows["ci_low"])
    with pytest.raises(ValueError, match="groups: 3 values for 900 rows"):
        bootstrap_ci(y3, p3, {"auroc": m.auroc}, n_boot=10, groups=[1, 2, 3])


def test_net_benefit_by_hand() -> None:
    y = np.array([1, 0, 1, 0])
    p = np.array([0.8, 0.6, 0.4, 0.1])
    # at 0.5: TP = 1, FP = 1, n = 4 -> 1/4 - 1/4 * (0.5 / 0.5) = 0
    # at 0.2: TP = 2, FP = 1 -> 2/4 - 1/4 * 0.25 = 0.4375 ; at 0.4 the 0.4 row is flagged (p >= pt, as dcurves)
    assert net_benefit_curve(y, p, [0.5, 0.2, 0.4]) == pytest.approx([0.0, 0.4375, 0.5 - 0.25 * 0.4 / 0.6])
    table = net_benefit(y, {"m": p, "partial": np.array([0.9, np.nan, 0.1, 0.2])}, [0.2, 0.5])
    assert list(table.columns) == ["threshold", "model", "n", "net_benefit", "treat_all", "treat_none"]
    mine = table[table["model"] == "m"].set_index("threshold")
    assert mine.loc[0.2, "net_benefit"] == pytest.approx(0.4375)
    assert mine.loc[0.2, "treat_all"] == pytest.approx(0.5 - 0.5 * 0.25) and (table["treat_none"] == 0).all()
    partial = table[table["model"] == "partial"].set_index("threshold")  # rows 0, 2, 3: two events in three
    assert partial.loc[0.5, "n"] == 3 and partial.loc[0.5, "treat_all"] == pytest.approx(2 / 3 - 1 / 3)
    with pytest.raises(ValueError, match="expected 0 <= threshold < 1"):
        net_benefit_curve(y, p, [0.5, 1.0])


def test_subgroups_flag_small_groups_and_survive_one_class(calibrated) -> None:
    y, p = calibrated[0][:600].copy(), calibrated[1][:600]
    y[580:] = 0  # the tiny group has no events
    groups = pd.Series(np.where(np.arange(600) < 580, "big", "tiny"), name="centre").astype(object)
    groups[0] = None
    table = subgroup_metrics(y, p, groups, n_boot=50).set_index("level")
    assert list(table.index) == ["(missing)", "big", "tiny"]
    assert table.loc["big", "warning"] == "" and table.loc["big", "n"] == 579
    assert table.loc["tiny", "warning"] == "small group: n=20, events=0"
    assert np.isnan(table.loc["tiny", "auroc"]) and np.isnan(table.loc["tiny", "calibration_slope"])
    assert table.loc["big", "auroc_ci_low"] < table.loc["big", "auroc"] < table.loc["big", "auroc_ci_high"]
    assert list(age_band(pd.Series([1.0, 5.0, 15.0, 20.0, 40.0]))) == ["<3", "3-11", "12-17", "18-25", "26+"]


def test_plots_are_figures_without_pyplot_state(calibrated, tmp_path) -> None:
    import matplotlib.pyplot as plt

    y, p = calibrated[0][:500], calibrated[1][:500]
    before = plt.get_fignums()
    predictions = {"model": p, "flipped": 1 - p, "gappy": np.where(np.arange(500) % 7 == 0, np.nan, p)}
    figures = [
        roc_plot(y, predictions),
        calibration_plot(y, predictions),
        decision_curve_plot(y, p, np.arange(0.05, 0.5, 0.05)),
    ]
    assert all(isinstance(f, Figure) for f in figures) and plt.get_fignums() == before
    assert len(figures[1].axes) == 2  # reliability above, risk histogram below
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the model card calls tight_layout on these figures
        for fig in figures:
            fig.tight_layout()
    assert any("AUROC" in t.get_text() for t in figures[0].axes[0].get_legend().get_texts())
    path = save_figure(figures[0], tmp_path / "roc.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert save_figure(figures[2], tmp_path / "dca.svg").read_text().lstrip().startswith("<?xml")


def test_paired_auroc_difference_says_beats_only_when_its_ci_excludes_zero() -> None:
    from crsrisk.evaluation import metrics as m
    from crsrisk.evaluation.bootstrap import paired_difference
    from crsrisk.landmarks import Hours
    from crsrisk.evaluation.comparison import result_rows

    rng = np.random.default_rng(4)
    y = (rng.random(600) < 0.3).astype(int)
    expit = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    signal = 2 * y - 1 + rng.normal(0, 0.6, 600)
    strong, close = expit(signal), expit(signal + rng.normal(0, 0.05, 600))
    weak = expit(2 * y - 1 + rng.normal(0, 3.0, 600))
    same = paired_difference(y, strong, strong, m.auroc, n_boot=200)
    assert same == {"value": 0.0, "ci_low": 0.0, "ci_high": 0.0}
    clear = paired_difference(y, strong, weak, m.auroc, n_boot=200)
    assert clear["ci_low"] > 0.1 and clear["value"] == pytest.approx(m.auroc(y, strong) - m.auroc(y, weak))
    rows = result_rows(
        "severe_crs", Hours(36.0), y, {"xgboost": close, "logistic": weak, "m_easix": strong}, 0.3, 200, 0, {"m_easix"}
    )
    verdicts = {r["model"]: r.get("comparison") for r in rows}
    assert verdicts == {"xgboost": "not distinguishable from", "logistic": "worse than", "m_easix": None}
    assert not any(r.get("beats_best_published") for r in rows)
