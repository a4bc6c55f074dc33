"""Local recalibration: new calibrators on a local cohort, same boosters, lineage recorded, better calibrated."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from crsrisk.bundle import load_bundle
from crsrisk.bundle.calibration import Platt
from crsrisk.cli import app
from crsrisk.cohort.io import write_cohort
from crsrisk.cohort.validate import validate_tables
from crsrisk.evaluation.metrics import calibration_intercept
from crsrisk.evaluation.recalibration import recalibrate, write_recalibrated
from crsrisk.reporting.model_card import _recalibration_section
from crsrisk.simulate import simulate_cohort

KEY = "severe_crs__0h"


@pytest.fixture(scope="module")
def enriched():
    """A local population with far more severe CRS than the training one: every infusion that reached grade >= 3
    and a quarter of the others, split in two halves (fit on one, check on the other)."""
    sim = simulate_cohort(n=900, seed=11)
    cohort = validate_tables(
        {"patients": sim.patients, "measurements": sim.measurements, "events": sim.events}, metadata={"synthetic": True}
    )
    severe = set(cohort.events.query("event == 'crs_grade' and value >= 3")["patient_id"])
    ids = cohort.patients["patient_id"].tolist()
    keep = [p for i, p in enumerate(ids) if p in severe or i % 4 == 0]
    return cohort.subset(keep[0::2]), cohort.subset(keep[1::2])


def _intercept(bundle, cohort) -> float:
    model = bundle.models[KEY]
    data = model.definition.dataset(cohort, model.landmark)
    margin = model.booster.inplace_predict(data.X[model.feature_names].to_numpy(), predict_type="margin")
    return calibration_intercept(data.y, model.calibrator.transform(margin))


@pytest.mark.slow
def test_recalibration_moves_calibration_in_the_large_towards_zero_on_held_out_local_data(
    small_bundle, enriched, tmp_path
):
    fit_on, check_on = enriched
    parent = load_bundle(small_bundle)
    result = write_recalibrated(recalibrate(parent, fit_on, "platt", n_boot=100), parent, tmp_path / "local")
    child = load_bundle(result.path)
    before, after = _intercept(parent, check_on), _intercept(child, check_on)
    assert before > 0.5 and abs(after) < abs(before) / 2, (before, after)
    for key, model in child.models.items():  # same trees: same raw scores
        assert model.booster.save_raw("json") == parent.models[key].booster.save_raw("json")
    lineage = child.metadata.recalibration
    assert lineage["parent_bundle_sha256"] == parent.digest and lineage["method"] == "platt"
    assert lineage["local_cohort_fingerprint"] == fit_on.fingerprint()
    assert lineage["training_cohort_fingerprint"] == parent.metadata.training_cohort_fingerprint
    entry = lineage["models"][KEY]
    assert entry["status"] == "recalibrated" and entry["before"]["calibration_intercept"]["ci_low"] > 0
    assert abs(entry["after"]["calibration_intercept"]["value"]) < 1e-3  # Platt in-sample: exactly calibrated
    assert "Local recalibration" in _recalibration_section(
        lineage
    ) and "parent_bundle_sha256" in _recalibration_section(lineage)
    assert _recalibration_section(None) == ""


@pytest.mark.slow
def test_cli_prints_before_and_after_and_refuses_an_existing_folder(small_bundle, enriched, tmp_path):
    fit_on, _ = enriched
    local = write_cohort(fit_on, tmp_path / "local_cohort")
    out = tmp_path / "recalibrated"
    result = CliRunner().invoke(
        app, ["recalibrate", str(small_bundle), str(local), "--out", str(out), "--method", "isotonic", "--n-boot", "50"]
    )
    assert result.exit_code == 0, result.output
    table = [line for line in result.output.splitlines() if line[:1] in "┃│"]  # within 80 columns, words whole
    assert KEY in result.output and max(map(len, table)) <= 80 and "recalibrated" in result.output
    assert {"intercept", "before", "after"} <= set(" ".join(table).split())
    assert "under recalibration" in " ".join(result.output.split())  # where the columns left out are
    document = json.loads((out / "bundle.json").read_text())
    assert document["recalibration"]["method"] == "isotonic" and document.get("mlflow_run_id") is None
    again = CliRunner().invoke(app, ["recalibrate", str(small_bundle), str(local), "--out", str(out)])
    assert again.exit_code == 2 and "not empty" in again.output
    wrong = CliRunner().invoke(
        app, ["recalibrate", str(small_bundle), str(local), "--out", str(tmp_path / "x"), "--method", "beta"]
    )
    assert wrong.exit_code == 2 and "--method" in wrong.output


@pytest.mark.slow
def test_intercept_method_is_updates_option_b(small_bundle, enriched, tmp_path):
    # issue 18: recalibrate stays as update's options (b) (intercept) and (c) (platt)
    fit_on, _ = enriched
    parent = load_bundle(small_bundle)
    result = recalibrate(parent, fit_on, "intercept", n_boot=50)
    entry = result.lineage["models"][KEY]
    assert result.lineage["method"] == "intercept" and entry["status"] == "recalibrated"
    model = parent.models[KEY]
    data = model.definition.dataset(fit_on, model.landmark)
    p = model.probability(data.X[model.feature_names].to_numpy(dtype=float))
    new, old = {m.key: m for m in result.models}[KEY].calibrator, model.calibrator
    assert isinstance(new, Platt) and isinstance(old, Platt) and new.bootstrap  # with its probability interval
    assert new.a == pytest.approx(old.a)  # slope 1 on the parent's log-odds: one new intercept
    assert new.b - old.b == pytest.approx(calibration_intercept(data.y, p)) and new.b > old.b  # enriched: higher
    local = write_cohort(fit_on, tmp_path / "local_cohort")
    cli = CliRunner().invoke(
        app, ["recalibrate", str(small_bundle), str(local), "--out", str(tmp_path / "b"), "--method", "intercept"]
    )
    assert cli.exit_code == 0, cli.output
    assert json.loads((tmp_path / "b" / "bundle.json").read_text())["recalibration"]["method"] == "intercept"
