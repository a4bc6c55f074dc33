"""External validation: a trained bundle scored on a cohort it never saw, in metrics.json shape."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crsrisk.cli import app
from crsrisk.cohort.io import load_cohort
from crsrisk.evaluation.external import evaluate_bundle
from crsrisk.simulate import simulate_cohort, write_simulated
from tests_support import DEFAULT_MODELS


@pytest.fixture(scope="module")
def held_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("held_out") / "cohort"
    write_simulated(simulate_cohort(n=300, seed=77), out)
    return out


@pytest.mark.slow
def test_held_out_cohort_gets_every_metric_with_cis_beside_published_scores(trained, held_out: Path) -> None:
    _, _, result = trained
    document = evaluate_bundle(load_cohort(held_out), result.bundle_dir, n_boot=60).document
    assert document["same_cohort_as_training"] is False and document["cohort"]["size"] == 300
    rows = {(r["task"], r["landmark"], r["model"]): r for r in document["results"]}
    own = {
        (r["task"], r["landmark"]) for r in document["results"] if r["model"] == "xgboost" and "model_landmark" not in r
    }
    assert own | {(s["task"], s["landmark"]) for s in document["skipped"]} == DEFAULT_MODELS
    at_72 = rows[("icans_dynamic", "72h", "xgboost")]  # a super-model is also evaluated at each grid landmark
    assert at_72["landmark_hours"] == 72 and at_72["horizon_hours"] == 48 and at_72["scope"] == "landmark"
    severe = rows[("severe_crs", "36h", "xgboost")]
    assert severe["kind"] == "model" and "beats_best_published" in severe
    for name in ("auroc", "auprc", "brier", "calibration_slope", "calibration_intercept", "sensitivity"):
        assert set(severe["metrics"][name]) == {"value", "ci_low", "ci_high"}
    assert severe["metrics"]["auroc"]["value"] > 0.7  # an external AUROC, on infusions the model never saw
    hay = rows[("severe_crs", "36h", "hay2017")]
    assert hay["kind"] == "published" and "hay2017" in hay["fitted_on_this_cohort"]


@pytest.mark.slow
def test_cli_writes_metrics_and_says_when_the_cohort_is_the_training_one(
    trained, small_cohort_dir: Path, tmp_path: Path
) -> None:
    _, _, result = trained
    out = CliRunner().invoke(
        app,
        [
            "evaluate",
            str(small_cohort_dir),
            "--model",
            str(result.bundle_dir),
            "--out",
            str(tmp_path / "ev"),
            "--n-boot",
            "50",
        ],
    )
    assert out.exit_code == 0, out.output
    assert "not an external validation" in out.stdout
    document = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert document["same_cohort_as_training"] is True and document["results"]
