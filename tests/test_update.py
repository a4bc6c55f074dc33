"""``crsrisk update``: closed-testing model updating on shifted and unshifted local cohorts, its lineage and report,
and the sample-size statements of train, evaluate and update."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.optimize import minimize, minimize_scalar
from scipy.special import expit
from scipy.stats import chi2, norm
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from typer.testing import CliRunner
from xgboost import XGBClassifier

from crsrisk.bundle import TaskModel, load_bundle, save_bundle
from crsrisk.bundle.calibration import Isotonic, Platt, fit_calibrator
from crsrisk.bundle.metadata import BundleMetadata
from crsrisk.cli import app
from crsrisk.cohort.io import load_cohort, write_cohort
from crsrisk.errors import InputError
from crsrisk.evaluation.metrics import auroc, calibration_intercept, calibration_slope, logit
from crsrisk.evaluation.update_options import composed, fit_option
from crsrisk.evaluation.samplesize import train_readiness, validation_precision
from crsrisk.evaluation.updating import UpdateLineage, choose, deviance_test, lr_test, update
from crsrisk.reporting.model_card import _update_section
from crsrisk.simulate import Shift, simulate_cohort, write_simulated
from crsrisk.tasks import DEFAULT_TASKS
from crsrisk.training.config import BootstrapConfig, CVConfig, TrainConfig, TuningConfig
from crsrisk.training.run import train

KEY = "severe_crs__0h"
SHIFT = Shift(centre_shares={"C2": 1}, centre_effect={"C2": 1.0})  # a centre whose patients do worse: miscalibration
QUICK = TrainConfig(
    seed=1,
    cv=CVConfig(n_splits=3, n_repeats=1),
    tuning=TuningConfig(n_iter=2, inner_splits=2),
    bootstrap=BootstrapConfig(n_boot=60),
)
QUICK_YAML = "seed: 1\ncv: {n_splits: 3, n_repeats: 1}\ntuning: {n_iter: 2, inner_splits: 2}\nbootstrap: {n_boot: 60}\n"


def _cohort(root: Path, name: str, n: int, seed: int, shift: Shift = Shift()):
    write_simulated(simulate_cohort(n=n, seed=seed, shift=shift), root / name)
    return load_cohort(root / name)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("update")


@pytest.fixture(scope="module")
def origin(work: Path) -> Path:
    """A one-model bundle (severe CRS before infusion) trained on the default synthetic cohort, calibrated on
    out-of-fold margins so that it is calibrated on new default cohorts."""
    cohort = _cohort(work, "training", 900, 21)
    task = DEFAULT_TASKS["severe_crs"]
    landmark = task.landmarks[0]
    data = task.dataset(cohort, landmark)
    classifier = XGBClassifier(n_estimators=60, max_depth=2, learning_rate=0.1, n_jobs=1, random_state=0)
    folds = StratifiedKFold(3, shuffle=True, random_state=0)
    margin = cross_val_predict(classifier, data.X, data.y, cv=folds, method="predict_proba")[:, 1]
    classifier.fit(data.X, data.y)
    calibrator = fit_calibrator(logit(margin), data.y, "platt")
    model = TaskModel(
        task.name,
        landmark,
        classifier.get_booster(),
        calibrator,
        list(data.X.columns),
        {"low": 0.1, "high": 0.3},
        {},
        task.rule_version,
        task.describe(),
    )
    meta = {"synthetic": True, "training_cohort_fingerprint": cohort.fingerprint()}
    return save_bundle([model], work / "origin", meta)


@pytest.fixture(scope="module")
def shifted_run(work: Path, origin: Path) -> tuple[object, Path, Path]:
    """``crsrisk update`` run on a shifted local cohort: the CLI result, the new bundle and the local cohort."""
    write_simulated(simulate_cohort(n=450, seed=31, shift=SHIFT), work / "shifted")
    (work / "quick.yaml").write_text(QUICK_YAML)
    out = work / "updated"
    result = CliRunner().invoke(
        app, ["update", str(origin), str(work / "shifted"), "--out", str(out), "--config", str(work / "quick.yaml")]
    )
    assert result.exit_code == 0, result.output
    return result, out, work / "shifted"


def _calibration(bundle: Path, cohort) -> tuple[float, float]:
    model = load_bundle(bundle).models[KEY]
    data = model.definition.dataset(cohort, model.landmark)
    p = model.probability(data.X[model.feature_names].to_numpy(dtype=float))
    return calibration_intercept(data.y, p), calibration_slope(data.y, p)


def test_a_shifted_cohort_gets_a_non_trivial_update_that_calibrates_a_second_shifted_cohort(
    shifted_run, origin: Path, work: Path
) -> None:
    result, out, _ = shifted_run
    report = json.loads((work / "updated.REPORT.json").read_text())
    entry = report["models"][KEY]
    assert entry["choice"] != "original", entry["reason"]
    assert entry["tests"]["original_vs_logistic"]["p_value"] < 0.05
    assert entry["options"]["original"]["metrics"]["calibration_intercept"]["ci_low"] > 0.5  # under-predicts
    for option in ("original", "intercept", "logistic", "revision", "refit"):  # every option, cross-validated
        metrics = entry["options"][option]["metrics"]
        assert set(metrics) == {"auroc", "calibration_intercept", "calibration_slope", "brier"}
        assert metrics["brier"]["ci_low"] <= metrics["brier"]["value"] <= metrics["brier"]["ci_high"]
    second = _cohort(work, "second", 450, 77, SHIFT)  # same shift, another seed: never seen by the update
    (before, _), (after, slope_after) = _calibration(origin, second), _calibration(out, second)
    assert before > 1.0 and abs(after) < 0.3 and 0.7 < slope_after < 1.3, (before, after, slope_after)
    assert KEY in result.output and "(b) recalibration in the large" in result.output and "kept" in result.output


def test_an_unshifted_cohort_keeps_the_original_or_its_intercept(origin: Path, work: Path) -> None:
    plain = _cohort(work, "plain", 450, 31)
    entry = update(origin, plain, config=QUICK).report["models"][KEY]
    assert entry["choice"] in ("original", "intercept"), entry["reason"]


def test_too_few_local_events_keep_the_parent_and_say_so(origin: Path, work: Path) -> None:
    local = _cohort(work, "few", 300, 41)
    severe = set(local.events.query("event == 'crs_grade' and value >= 3")["patient_id"])
    ids = [p for p in local.patients["patient_id"] if p not in severe] + sorted(severe)[:2]
    result = update(origin, local.subset(ids), config=QUICK)
    entry = result.report["models"][KEY]
    assert entry["choice"] == "original" and "too few local events" in entry["reason"] and entry["events"] <= 2
    parent = load_bundle(origin).models[KEY]
    assert result.models[0].booster.save_raw("json") == parent.booster.save_raw("json")
    assert result.models[0].calibrator == parent.calibrator


def test_lineage_is_recorded_round_trips_and_shows_on_the_card(shifted_run, origin: Path) -> None:
    _, out, local_dir = shifted_run
    parent, child = load_bundle(origin), load_bundle(out)
    stored = child.metadata.update
    assert stored is not None and child.metadata.recalibration is None and child.metadata.mlflow_run_id is None
    lineage = UpdateLineage.from_dict(stored)
    assert lineage.parent_bundle_sha256 == parent.digest
    assert lineage.training_cohort_fingerprint == parent.metadata.training_cohort_fingerprint
    assert lineage.local_cohort_fingerprint == load_cohort(local_dir).fingerprint()
    assert lineage.models[KEY]["choice"] != "original" and "original_vs_intercept" in lineage.models[KEY]["tests"]
    again = BundleMetadata.from_dict(json.loads(json.dumps(child.metadata.to_dict())))
    assert again == child.metadata and UpdateLineage.from_dict(again.update) == lineage
    assert lineage.to_dict() == stored
    with pytest.raises(InputError, match="unknown field"):
        UpdateLineage.from_dict(stored | {"surprise": 1})
    with pytest.raises(InputError, match="alpha"):
        UpdateLineage.from_dict({k: v for k, v in stored.items() if k != "alpha"})
    card = _update_section(stored)
    assert "Model update to a local cohort" in card and parent.digest in card and KEY in card
    assert lineage.training_cohort_fingerprint in card and lineage.local_cohort_fingerprint in card  # both cohorts
    assert _update_section(None) == ""


def test_lr_statistics_equal_a_hand_computation(shifted_run, origin: Path, work: Path) -> None:
    _, _, local_dir = shifted_run
    report = json.loads((work / "updated.REPORT.json").read_text())["models"][KEY]
    model = load_bundle(origin).models[KEY]
    data = model.definition.dataset(load_cohort(local_dir), model.landmark)
    y = data.y.astype(float)
    lp = logit(model.probability(data.X[model.feature_names].to_numpy(dtype=float)))

    def loglik(eta: np.ndarray) -> float:
        return float(np.sum(y * np.log(expit(eta)) + (1 - y) * np.log(expit(-eta))))

    ll_a = loglik(lp)
    ll_b = -minimize_scalar(lambda a: -loglik(a + lp)).fun
    ll_c = -minimize(lambda ab: -loglik(ab[0] + ab[1] * lp), x0=[0.0, 1.0], method="Nelder-Mead", tol=1e-10).fun
    tests = report["tests"]
    for name, (simple, extended, df) in {
        "original_vs_intercept": (ll_a, ll_b, 1),
        "intercept_vs_logistic": (ll_b, ll_c, 1),
        "original_vs_logistic": (ll_a, ll_c, 2),
    }.items():
        assert tests[name]["statistic"] == pytest.approx(2 * (extended - simple), abs=2e-3), name
        assert tests[name]["df"] == df
        assert tests[name]["p_value"] == pytest.approx(chi2.sf(tests[name]["statistic"], df), rel=1e-9)


def test_lr_and_deviance_tests_on_small_numbers() -> None:
    assert lr_test(-10.0, -7.0, 1) == {"statistic": 6.0, "df": 1, "p_value": pytest.approx(chi2.sf(6.0, 1))}
    y = np.array([1, 0, 1, 0, 1, 0])
    simple, best = np.full(6, 0.5), np.array([0.8, 0.2, 0.7, 0.4, 0.6, 0.3])
    groups = np.array(["a", "a", "b", "b", "c", "c"])
    per = pd.Series(-2 * (np.log(np.where(y, simple, 1 - simple)) - np.log(np.where(y, best, 1 - best))))
    sums = per.groupby(groups).sum().to_numpy()
    z = sums.sum() / (sums.std(ddof=1) * np.sqrt(3))
    found = deviance_test(y, simple, best, groups)
    assert found["deviance_difference"] == pytest.approx(sums.sum()) and found["z"] == pytest.approx(z)
    assert found["p_value"] == pytest.approx(norm.sf(z))


def test_update_prints_the_ci_widths_its_cohort_can_give(shifted_run, origin: Path, work: Path) -> None:
    result, _, local_dir = shifted_run
    model = load_bundle(origin).models[KEY]
    data = model.definition.dataset(load_cohort(local_dir), model.landmark)
    # the anticipated C is the parent's recorded AUROC, else the one seen on this cohort (this bundle records none)
    c = round(auroc(data.y, model.probability(data.X[model.feature_names].to_numpy(dtype=float))), 3)
    expected = validation_precision(data.patient_ids.nunique(), int(data.y.sum()), c)
    stored = json.loads((work / "updated.REPORT.json").read_text())["models"][KEY]["precision"]
    assert stored == {k: getattr(expected, k) for k in stored}
    assert f"{KEY}: {expected.statement}" in " ".join(result.output.split())


def test_evaluate_prints_the_ci_widths_its_cohort_can_give(origin: Path, work: Path, tmp_path: Path) -> None:
    local = _cohort(work, "evaluated", 300, 51)
    result = CliRunner().invoke(app, ["evaluate", str(work / "evaluated"), "--model", str(origin), "--n-boot", "50"])
    assert result.exit_code == 0, result.output
    model = load_bundle(origin).models[KEY]
    data = model.definition.dataset(local, model.landmark)
    c = round(auroc(data.y, model.probability(data.X[model.feature_names].to_numpy(dtype=float))), 3)
    expected = validation_precision(data.patient_ids.nunique(), int(data.y.sum()), c)
    assert f"{KEY}: {expected.statement}" in " ".join(result.output.split())


class Stated(Exception):
    """Raised by the announcer below: proof that the statement came before any fit, output or MLflow run."""


def test_train_states_riley_readiness_before_any_fit(small_cohort, tmp_path: Path) -> None:
    heard: list[str] = []

    def announce(line: str) -> None:
        heard.append(line)
        raise Stated

    with pytest.raises(Stated):
        train(small_cohort, task="severe_crs", out=tmp_path / "run", tracking_uri="sqlite:///unused", announce=announce)
    assert not (tmp_path / "run").exists()
    data = DEFAULT_TASKS["severe_crs"].dataset(small_cohort, DEFAULT_TASKS["severe_crs"].landmarks[0])
    expected = train_readiness(data.patient_ids.nunique(), int(data.y.sum()), data.X.shape[1])
    assert heard == [f"severe_crs at 0h: {expected.statement}"]


@pytest.mark.slow
def test_train_prints_riley_readiness_before_the_results(small_cohort, tmp_path: Path) -> None:
    ids = small_cohort.patients["patient_id"].tolist()[:150]
    cohort_dir = write_cohort(small_cohort.subset(ids), tmp_path / "cohort")
    config = tmp_path / "tiny.yaml"
    config.write_text(
        "models: [xgboost]\ncv: {n_splits: 2, n_repeats: 1}\ntuning: {n_iter: 1, inner_splits: 2}\n"
        "bootstrap: {n_boot: 50}\ntasks: [severe_crs]\ntask_overrides:\n  severe_crs: {landmarks: [0]}\n"
    )
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = CliRunner().invoke(
        app,
        ["train", str(cohort_dir), "--config", str(config), "--out", str(tmp_path / "run"), "--tracking-uri", uri]
        + ["--workers", "1", "--no-progress"],
    )
    assert result.exit_code == 0, result.output
    data = DEFAULT_TASKS["severe_crs"].dataset(load_cohort(cohort_dir), DEFAULT_TASKS["severe_crs"].landmarks[0])
    expected = train_readiness(data.patient_ids.nunique(), int(data.y.sum()), data.X.shape[1])
    text = " ".join(result.output.split())
    assert f"severe_crs at 0h: {expected.statement}" in text
    assert text.index(expected.statement) < text.index("cross-validated comparison")  # stated before the results


@pytest.mark.parametrize(
    ("arguments", "field"),
    [(["--alpha", "1.5"], "--alpha"), (["--alpha", "0"], "--alpha"), (["--task", "nonsense"], "--task")],
)
def test_cli_bad_input_exits_2_naming_the_field(
    origin: Path, small_cohort_dir: Path, tmp_path: Path, arguments: list[str], field: str
) -> None:
    result = CliRunner().invoke(
        app, ["update", str(origin), str(small_cohort_dir), "--out", str(tmp_path / "new"), *arguments]
    )
    assert result.exit_code == 2 and field in result.output, result.output
    assert not (tmp_path / "new").exists()


@given(alpha=st.one_of(st.floats(max_value=0.0), st.floats(min_value=1.0), st.just(float("nan"))))
def test_update_refuses_an_alpha_outside_zero_one_by_name(alpha: float) -> None:
    with pytest.raises(InputError, match="alpha"):
        update("unused: refused before loading", None, alpha=alpha)  # type: ignore[arg-type]


def test_recalibration_in_the_large_states_a_probability_interval_as_logistic_does(origin: Path, work: Path) -> None:
    # an updated bundle that keeps (b) used to lose the interval its probabilities were stated with
    model = load_bundle(origin).models[KEY]
    local = _cohort(work, "interval", 300, 51, SHIFT)
    data = model.definition.dataset(local, model.landmark)
    X, y, groups = data.X, data.y.astype(int), data.patient_ids.to_numpy()
    p = model.probability(X[model.feature_names].to_numpy(dtype=float))
    fitted = fit_option("intercept", model, X, y, groups, QUICK, 3, 50)
    assert isinstance(model.calibrator, Platt) and isinstance(fitted.calibrator, Platt)
    assert fitted.calibrator.a == pytest.approx(model.calibrator.a)  # slope 1 on the parent's logit
    assert fitted.calibrator.b == pytest.approx(model.calibrator.b + calibration_intercept(y, p))
    boot = fitted.calibrator.bootstrap
    assert 45 <= len(boot) <= 50 and all(r["a"] == pytest.approx(model.calibrator.a) for r in boot)
    for margin in (-2.0, 0.0, 2.0):
        low, high = fitted.calibrator.interval(margin)
        assert low < float(fitted.calibrator.transform(np.array([margin]))[0]) < high
    assert fit_option("intercept", model, X, y, groups, QUICK, 3).calibrator.bootstrap == ()  # folds: no refits


def test_composed_calibrators_apply_the_new_intercept_and_slope_to_the_parents_logit() -> None:
    margin = np.linspace(-4, 4, 9)
    platt = Platt(0.8, -1.2, ({"a": 0.7, "b": -1.0},))
    outer = Platt(1.3, 0.4, ({"a": 1.1, "b": 0.2},))
    new = composed(platt, outer)
    assert np.allclose(new.transform(margin), expit(1.3 * (0.8 * margin - 1.2) + 0.4))
    # the local refits compose with the parent's fitted map (the parent's own refits describe another cohort)
    assert new.bootstrap == ({"a": pytest.approx(1.1 * 0.8), "b": pytest.approx(1.1 * -1.2 + 0.2)},)
    iso = Isotonic((-2.0, 0.0, 2.0), (0.1, 0.3, 0.6))
    mapped = composed(iso, outer)
    assert np.allclose(mapped.transform(np.array(iso.x)), expit(1.3 * logit(np.array(iso.y)) + 0.4))


def test_choose_keeps_the_simplest_option_not_significantly_worse() -> None:
    rng = np.random.default_rng(0)
    truth = rng.uniform(0.05, 0.95, 400)
    y = (rng.random(400) < truth).astype(float)
    groups = np.arange(400)
    significant = {"p_value": 0.001}
    tests = {"original_vs_logistic": significant, "intercept_vs_logistic": significant}
    oof = {"logistic": np.full(400, y.mean()), "revision": truth, "refit": np.clip(truth + 0.01, 0, 1)}
    deviance = {o: -2 * float(np.sum(y * np.log(p) + (1 - y) * np.log(1 - p))) for o, p in oof.items()}
    choice, reason, compared = choose(tests, deviance, oof, y, groups, 0.05)
    assert choice == "revision" and "not nested" in reason  # far better than (c); (e) is no better than (d)
    assert (
        compared["logistic_vs_revision"]["p_value"] < 0.05 and compared["refit_vs_revision"]["deviance_difference"] > 0
    )
    close = {"logistic": truth, "revision": np.clip(truth * 0.99 + 0.005, 0, 1)}
    deviance = {o: -2 * float(np.sum(y * np.log(p) + (1 - y) * np.log(1 - p))) for o, p in close.items()}
    assert choose(tests, deviance, close, y, groups, 0.05)[0] == "logistic"
    not_significant = {"p_value": 0.5}
    tests = {"original_vs_logistic": not_significant, "intercept_vs_logistic": not_significant}
    assert choose(tests, {"original": 1.0}, {"original": truth}, y, groups, 0.05)[0] == "original"
