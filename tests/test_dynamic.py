"""Risk at any hour: leakage at every hour, "already occurred", batch scoring at an hour, the risk trajectory."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from crsrisk.cli import app
from crsrisk.bundle.store import Bundle, load_bundle
from crsrisk.cohort.validated import Cohort
from crsrisk.scoring import predict, predict_cohort
from crsrisk.scoring.trajectory import risk_trajectory
from tests_support import BATCH_CSV_COLUMNS, patient_record

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "patient.json"
COURSE = EXAMPLE.with_name("patient-course.json")  # the whole course: grade 3 CRS at 46.7 h


@pytest.fixture(scope="module")
def bundle(small_bundle: Path) -> Bundle:
    return load_bundle(small_bundle)


def _outputs(result) -> list:
    """Everything a prediction says, to the bit: tasks, hours, probabilities and every SHAP value."""
    return (
        [
            (p["task"], p["landmark_hours"], p["horizon_hours"], p["probability"], p.shap.tobytes())
            for p in result.predictions
        ]
        + [(o["task"], o["hours"]) for o in result.already_occurred]
        + [(s["task"], s["reason"]) for s in result.not_applicable]
    )


def _scramble_from(record: dict, t: float, seed: int) -> dict:
    """Change or delete every measurement and event at or after hour ``t``, and add new ones there."""
    rng = np.random.default_rng(seed)
    changed = copy.deepcopy(record)
    measurements = []
    for row in changed["measurements"]:
        if row["hours_since_infusion"] >= t:
            if rng.random() < 0.3:
                continue
            row["value"] = 41.0 if row["analyte"] == "temperature" else float(row["value"]) * rng.uniform(0.1, 1.0)
        measurements.append(row)
    measurements.append(
        {"hours_since_infusion": t + rng.uniform(0, 30), "analyte": "il6", "value": 50_000.0, "unit": "pg/mL"}
    )
    measurements.append({"hours_since_infusion": t, "analyte": "ferritin", "value": 90_000.0, "unit": "ng/mL"})
    events = [row for row in changed["events"] if row["hours_since_infusion"] < t or rng.random() < 0.5]
    events += [
        {"hours_since_infusion": t, "event": "crs_grade", "value": 4},
        {"hours_since_infusion": t + 1.0, "event": "tocilizumab", "value": 8.0},
        {"hours_since_infusion": t + 2.0, "event": "icans_grade", "value": 3},
    ]
    changed["measurements"], changed["events"] = measurements, events
    return changed


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(t=st.floats(0, 168), which=st.integers(0, 399), seed=st.integers(0, 2**31))
def test_anything_at_or_after_the_hour_leaves_the_prediction_byte_identical(
    small_cohort: Cohort, bundle: Bundle, t: float, which: int, seed: int
) -> None:
    record = patient_record(small_cohort, small_cohort.patients["patient_id"].iloc[which])
    before = predict(record, model=bundle, now_hours=t, audit=False)
    after = predict(_scramble_from(record, t, seed), model=bundle, now_hours=t, audit=False)
    assert _outputs(after) == _outputs(before)


def test_a_value_just_before_the_hour_does_change_it(small_cohort: Cohort, bundle: Bundle) -> None:
    changed = 0
    for patient_id in small_cohort.patients["patient_id"].iloc[:10]:
        record = patient_record(small_cohort, patient_id)
        before = predict(record, model=bundle, now_hours=72, audit=False)
        late = copy.deepcopy(record)
        late["measurements"].append(
            {"hours_since_infusion": 71.9, "analyte": "il6", "value": 90_000.0, "unit": "pg/mL"}
        )
        late["measurements"].append(
            {"hours_since_infusion": 71.9, "analyte": "temperature", "value": 40.8, "unit": "degC"}
        )
        after = predict(late, model=bundle, now_hours=72, audit=False)
        dynamic = {p["task"]: p for p in before.predictions if p["task"].endswith("_dynamic")}
        for p in after.predictions:
            if p["task"] in dynamic:
                assert p["landmark_hours"] == 72.0  # the super-model is asked at 72 h itself, not at a grid point
                changed += p["probability"] != dynamic[p["task"]]["probability"]
    assert changed > 0


def test_the_example_patient_with_grade_3_crs_is_told_it_already_occurred(bundle: Bundle) -> None:
    record = json.loads(COURSE.read_text())
    onset = min(e["hours_since_infusion"] for e in record["events"] if e["event"] == "crs_grade" and e["value"] >= 3)
    result = predict(record, model=bundle, audit=False)  # no hour: the first whole hour after the latest record
    assert result.now_hours == 48  # the latest record is at 47.2 h
    occurred = {o["task"]: o for o in result.already_occurred}
    assert occurred["severe_crs"]["hours"] == onset and occurred["severe_crs_dynamic"]["hours"] == onset
    assert f"already occurred at hour {onset:g}" == occurred["severe_crs"]["text"]
    assert not {"severe_crs", "severe_crs_dynamic"} & {p["task"] for p in result.predictions}
    earlier = predict(record, model=bundle, now_hours=onset - 6, audit=False)
    dynamic = next(p for p in earlier.predictions if p["task"] == "severe_crs_dynamic")
    assert dynamic["question"] == f"severe CRS (ASTCT CRS grade >= 3) in the next 48 h, as of hour {onset - 6:g}"
    assert dynamic["horizon_hours"] == 48 and dynamic["landmark_hours"] == onset - 6
    day28 = next(p for p in earlier.predictions if p["task"] == "severe_crs")
    assert day28["landmark_hours"] == 36 and day28["horizon_hours"] == 672 - 36


def test_outside_the_trained_hours_a_super_model_says_so(small_cohort: Cohort, bundle: Bundle) -> None:
    record = patient_record(small_cohort, small_cohort.patients["patient_id"].iloc[0])
    result = predict(record, model=bundle, now_hours=200, audit=False)
    reasons = {s["task"]: s["reason"] for s in result.not_applicable}
    for task in ("severe_crs_dynamic", "icans_dynamic"):
        assert task in reasons or task in {o["task"] for o in result.already_occurred}
        if task in reasons:
            assert reasons[task] == "hour 200 is outside the trained range 0-168 h"


@pytest.mark.parametrize("hours", [48.0, 72.0, 96.0])
def test_batch_at_an_hour_equals_predict_at_that_hour(small_cohort: Cohort, bundle: Bundle, hours: float) -> None:
    batch = predict_cohort(small_cohort, bundle, at_hours=hours)
    batch = batch[batch["status"] == "scored"]
    assert set(batch.loc[batch["task"].str.endswith("_dynamic"), "landmark_hours"]) == {hours}
    assert set(batch.loc[batch["task"].str.endswith("_dynamic"), "horizon_hours"]) == {48.0}
    by_patient = batch.groupby("patient_id")
    for patient_id in batch["patient_id"].drop_duplicates().sample(12, random_state=int(hours)):
        single = predict(patient_record(small_cohort, patient_id), model=bundle, now_hours=hours, audit=False)
        rows = by_patient.get_group(patient_id).set_index("task")
        assert {p["task"] for p in single.predictions} == set(rows.index)
        for p in single.predictions:
            assert p["probability"] == pytest.approx(rows.loc[p["task"], "probability"], abs=1e-6)
            assert p["landmark_hours"] == rows.loc[p["task"], "landmark_hours"]
    # Nobody whose outcome came before the hour, or whose follow-up had ended, is scored.
    onset = small_cohort.events[(small_cohort.events["event"] == "crs_grade") & (small_cohort.events["value"] >= 3)]
    early = set(onset.loc[onset["hours_since_infusion"] < hours, "patient_id"])
    scored = set(batch.loc[batch["task"] == "severe_crs_dynamic", "patient_id"])
    assert early and not early & scored


def test_cli_batch_at_an_hour(small_cohort_dir: Path, small_bundle: Path, tmp_path: Path) -> None:
    scores = tmp_path / "scores.csv"
    cli = ["predict", str(small_cohort_dir), "--model", str(small_bundle), "--at", "72", "--out", str(scores)]
    out = CliRunner().invoke(app, cli)
    assert out.exit_code == 0, out.output
    table = pd.read_csv(scores)
    assert list(table.columns) == BATCH_CSV_COLUMNS
    assert len(table) == table["patient_id"].nunique() * table["task"].nunique()  # every infusion and task, once
    dynamic = table[(table["task"] == "icans_dynamic") & (table["status"] == "scored")]
    assert len(dynamic) > 100 and set(dynamic["landmark_hours"]) == {72.0} and set(dynamic["horizon_hours"]) == {48}


def test_trajectory_points_are_predictions_at_those_hours(small_cohort: Cohort, bundle: Bundle, tmp_path: Path) -> None:
    record = patient_record(small_cohort, small_cohort.patients["patient_id"].iloc[11])
    trajectory = risk_trajectory(record, bundle, until_hours=100, audit=False)
    hours = sorted({p["hours"] for p in trajectory.points})
    assert {0.0, 12.0, 24.0, 48.0, 96.0} <= set(hours) and max(hours) <= 100
    measured = [m["hours_since_infusion"] for m in record["measurements"] if 0 <= m["hours_since_infusion"] < 100]
    assert len(hours) >= len(set(measured))  # a point just after each new measurement
    for point in [p for p in trajectory.points if p["hours"] in (24.0, hours[len(hours) // 2])]:
        single = predict(record, model=bundle, now_hours=point["hours"], audit=False)
        match = next(p for p in single.predictions if p["task"] == point["task"])
        assert match["probability"] == pytest.approx(point["probability"], abs=1e-12)
        assert point["reasons"] == [c["phrase"] for c in match["contributions"][:3]]
    path = trajectory.plot(tmp_path / "t.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


def test_cli_trajectory_writes_the_png_and_the_points(bundle: Bundle, small_bundle: Path, tmp_path: Path) -> None:
    from crsrisk.audit import AuditLog, verify_log

    plot, log = tmp_path / "example.png", tmp_path / "audit.jsonl"
    cli = ["predict", str(COURSE), "--model", str(small_bundle), "--trajectory", "--plot", str(plot), "--json"]
    out = CliRunner().invoke(app, [*cli, "--audit-log", str(log)])
    assert out.exit_code == 0, out.output
    (record,) = AuditLog(log).records()  # the trajectory is a scoring path too: one record holds every point
    assert verify_log(log).ok and sum("trajectory_point" in o for o in record["outputs"]) == len(
        json.loads(out.stdout)["points"]
    )
    document = json.loads(out.stdout)
    assert document["plot"] == str(plot) and plot.stat().st_size > 10_000
    assert "severe_crs" in document["already_occurred"]
    assert {p["task"] for p in document["points"]} >= {"severe_crs_dynamic", "icans_dynamic"}
    assert all(
        p["hours"] < document["already_occurred"]["severe_crs"] or p["task"] not in ("severe_crs", "severe_crs_dynamic")
        for p in document["points"]
    )


def test_features_cli_reads_the_grid_from_a_config(small_cohort_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "grid.yaml"
    config.write_text("task_overrides:\n  icans_dynamic: {landmarks: [{start: 0, stop: 96, step: 24}]}\n")
    out = tmp_path / "X.csv"
    done = CliRunner().invoke(
        app, ["features", str(small_cohort_dir), "--task", "icans_dynamic", "--config", str(config), "--out", str(out)]
    )
    assert done.exit_code == 0, done.output
    table = pd.read_csv(out)
    assert sorted(set(table["landmark_hours"])) == [0.0, 24.0, 48.0, 72.0, 96.0]
    assert table.groupby("patient_id").size().max() == 5 and set(table["label"]) == {0, 1}


def test_a_registry_model_without_a_registry_is_a_clear_error_and_creates_no_store(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "crsrisk.cli",
            "predict",
            str(EXAMPLE),
            "--model",
            "models:/crsrisk-severe_crs@candidate",
            "--no-audit",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"},
    )
    assert done.returncode == 2 and "no MLflow registry at" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "mlflow.db").exists()
