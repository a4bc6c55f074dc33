"""Every scoring path writes the audit log: single predictions (surviving a torn line), batch predict, explain."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crsrisk.audit import AuditLog, verify_log
from crsrisk.cli import app
from crsrisk.cohort.validated import Cohort
from tests_support import patient_record


def test_a_torn_line_does_not_stop_the_next_prediction(
    small_cohort: Cohort, small_bundle: Path, tmp_path: Path
) -> None:
    from crsrisk.scoring import predict

    log = tmp_path / "audit.jsonl"
    record = patient_record(small_cohort, small_cohort.patients["patient_id"].iloc[0])
    predict(record, model=small_bundle, now_hours=40, audit_log=log)
    whole = log.read_bytes()
    with open(log, "ab") as handle:  # a writer killed half-way through its record
        handle.write(whole[: len(whole) // 2])
    assert verify_log(log).problems[0].startswith("line 2: incomplete last record")
    result = predict(record, model=small_bundle, now_hours=40, audit_log=log)
    assert result.predictions
    checked = verify_log(log)
    assert checked.ok and checked.n_records == 3, checked.problems
    assert "line 2 (seq 1): a torn last line" in checked.notes[0] and "holds exactly those bytes" in checked.notes[0]
    kinds = [r["kind"] for r in AuditLog(log).records()]
    assert kinds == ["prediction", "recovery", "prediction"]


def test_batch_predict_writes_one_record_for_the_cohort(
    small_cohort_dir: Path, small_bundle: Path, tmp_path: Path
) -> None:
    log, out = tmp_path / "audit.jsonl", tmp_path / "scores.csv"
    result = CliRunner().invoke(
        app,
        ["predict", str(small_cohort_dir), "--model", str(small_bundle), "--out", str(out), "--audit-log", str(log)],
    )
    assert result.exit_code == 0 and "$CRSRISK_TRUSTED_KEYS), verified)" in " ".join(result.output.split()), (
        result.output
    )
    (stored,) = AuditLog(log).records()
    assert stored["kind"] == "batch_prediction"
    assert stored["model"]["signature"].endswith("($CRSRISK_TRUSTED_KEYS), verified")  # conftest's session key
    assert stored["n_rows"] == len(out.read_text().splitlines()) - 1 == len(stored["rows"])
    first_id = out.read_text().splitlines()[1].split(",")[0]
    assert stored["columns"][0] == "patient_hash" and first_id not in json.dumps(stored)
    assert stored["rows"][0][0] == AuditLog(log).hash_patient_id(first_id)
    assert all(0 <= row[stored["columns"].index("probability")] <= 1 for row in stored["rows"])
    assert verify_log(log).ok


def test_an_unwritable_audit_log_stops_batch_scoring_with_a_clear_error(
    small_cohort_dir: Path, small_bundle: Path, tmp_path: Path
) -> None:
    out = tmp_path / "scores.csv"
    result = CliRunner().invoke(
        app,
        [
            "predict",
            str(small_cohort_dir),
            "--model",
            str(small_bundle),
            "--out",
            str(out),
            "--audit-log",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 2 and "AuditLogError" in result.output and "cannot write the audit log" in result.output
    assert not out.exists()  # no scores without their audit record


@pytest.mark.slow
def test_explain_writes_records_for_a_patient_and_a_cohort(
    small_cohort: Cohort, small_cohort_dir: Path, small_bundle: Path, tmp_path: Path
) -> None:
    log = tmp_path / "audit.jsonl"
    patient = tmp_path / "patient.json"
    patient.write_text(
        json.dumps(patient_record(small_cohort, small_cohort.patients["patient_id"].iloc[0]), default=str)
    )
    runner = CliRunner()
    for target in (patient, small_cohort_dir):
        result = runner.invoke(
            app,
            [
                "explain",
                str(target),
                "--model",
                str(small_bundle),
                "--now-hours",
                "40",
                "--out",
                str(tmp_path / "plots"),
                "--audit-log",
                str(log),
            ],
        )
        assert result.exit_code == 0 and "verified)" in result.output, result.output
    single, cohort = AuditLog(log).records()
    assert single["kind"] == "prediction" and single["outputs"]
    assert cohort["kind"] == "explanation" and cohort["columns"] == ["model", "feature", "label", "mean_abs_shap"]
    assert cohort["n_rows"] == len(cohort["rows"]) > 0
    assert verify_log(log).ok
