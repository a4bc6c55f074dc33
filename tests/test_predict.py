"""The clinician path: additivity, batch = one-by-one, task applicability, refusals, no mlflow/shap import."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crsrisk.cohort import Cohort
from crsrisk.errors import CohortValidationError
from crsrisk.predict import predict, predict_cohort
from tests_support import patient_record


def test_attributions_add_up_to_the_raw_score(small_cohort: Cohort, small_bundle: Path) -> None:
    some = small_cohort.patients["patient_id"].iloc[:15]
    for patient_id in some:
        result = predict(patient_record(small_cohort, patient_id), model=small_bundle, now_hours=40, audit=False)
        assert result.predictions
        for p in result.to_dict()["predictions"]:
            total = p["base_value"] + sum(c["shap"] for c in p["contributions"])
            assert total == pytest.approx(p["raw_score"], abs=1e-4)
            assert len(p["contributions"]) > 100  # every feature, not just the top ones
            shaps = [abs(c["shap"]) for c in p["contributions"]]
            assert shaps == sorted(shaps, reverse=True)
            assert 0 <= p["probability"] <= 1 and p["band"] in ("low", "intermediate", "high")
            assert set(p["contributions"][0]) >= {"feature", "value", "unit", "shap", "phrase"}


def test_batch_equals_one_by_one(small_cohort: Cohort, small_bundle: Path) -> None:
    batch = predict_cohort(small_cohort, small_bundle)
    assert set(batch["task"]) == {"severe_crs", "icans", "toci_refractory"}
    for row in batch.sample(25, random_state=1).itertuples():
        now = row.landmark_hours
        single = predict(patient_record(small_cohort, row.patient_id), model=small_bundle, now_hours=now, audit=False)
        match = [p for p in single.predictions if p["task"] == row.task]
        assert match and match[0]["probability"] == pytest.approx(row.probability, abs=1e-6)


def test_applicability_depends_on_time_and_course(small_cohort: Cohort, small_bundle: Path) -> None:
    events = small_cohort.events
    treated = events.loc[events["event"] == "tocilizumab", "patient_id"].iloc[0]
    first = events[(events["patient_id"] == treated) & (events["event"] == "tocilizumab")]["hours_since_infusion"].min()
    record = patient_record(small_cohort, treated)
    before = predict(record, model=small_bundle, now_hours=first - 0.5, audit=False)
    assert "toci_refractory" in {s["task"] for s in before.not_applicable}
    after = predict(record, model=small_bundle, now_hours=first + 1, audit=False)
    toci = [p for p in after.predictions if p["task"] == "toci_refractory"]
    assert toci and toci[0]["landmark_hours"] == first
    pre = predict(record, model=small_bundle, now_hours=0, audit=False)
    assert {p["landmark_hours"] for p in pre.predictions} == {0.0}


@pytest.mark.parametrize("change, field, shown", [
    ({"unit": "mg/L"}, "unit", "mg/L"), ({"value": -5}, "value", "-5"), ({"analyte": "il99"}, "analyte", "il99")])
def test_bad_input_is_refused_naming_field_and_value(small_cohort: Cohort, small_bundle: Path, change: dict,
                                                     field: str, shown: str) -> None:
    record = patient_record(small_cohort, small_cohort.patients["patient_id"].iloc[0])
    il6 = next(m for m in record["measurements"] if m["analyte"] == "il6")
    il6.update(change)
    with pytest.raises(CohortValidationError) as caught:
        predict(record, model=small_bundle, audit=False)
    assert any(p.field == field and shown in str(p) for p in caught.value.problems), str(caught.value)


def test_missing_inputs_are_allowed_and_listed(small_bundle: Path) -> None:
    record = {"patient": {"patient_id": "NEW", "age_years": 7, "product": "tisagenlecleucel"},
              "measurements": [{"hours_since_infusion": 10, "analyte": "il6", "value": 2400, "unit": "pg/mL"}]}
    result = predict(record, model=small_bundle, now_hours=36, audit=False)
    assert "baseline_ldh" in result.missing_inputs and "il6_max" not in result.missing_inputs
    il6 = next(c for p in result.predictions if p["task"] == "severe_crs" for c in p["contributions"]
               if c["feature"] == "il6_max")
    assert "2,400 pg/mL" in il6["phrase"]


def test_predictions_are_audited_unless_opted_out(small_cohort: Cohort, small_bundle: Path, tmp_path: Path) -> None:
    from crsrisk.audit.log import AuditLog, verify_log

    log = tmp_path / "audit.jsonl"
    record = patient_record(small_cohort, small_cohort.patients["patient_id"].iloc[3])
    predict(record, model=small_bundle, now_hours=40, audit_log=log)
    predict(record, model=small_bundle, now_hours=40, audit=False, audit_log=log)
    stored = list(AuditLog(log).records())
    assert len(stored) == 1 and verify_log(log).ok
    assert stored[0]["model"]["bundle_sha256"] and record["patient"]["patient_id"] not in log.read_text()
    assert stored[0]["outputs"][0]["shap"]


def test_fresh_process_predicts_without_mlflow_or_shap(small_cohort: Cohort, small_bundle: Path,
                                                       tmp_path: Path) -> None:
    patient = tmp_path / "patient.json"
    patient.write_text(json.dumps(patient_record(small_cohort, small_cohort.patients["patient_id"].iloc[1]),
                                  default=float))
    code = textwrap.dedent(f"""
        import sys, crsrisk
        result = crsrisk.predict({str(patient)!r}, model={str(small_bundle)!r}, now_hours=40, audit=False)
        assert result.predictions
        print("mlflow" in sys.modules, "shap" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]


def test_cli_single_and_batch(small_cohort: Cohort, small_cohort_dir: Path, small_bundle: Path, tmp_path: Path) -> None:
    patient = tmp_path / "p.json"
    patient.write_text(json.dumps(patient_record(small_cohort, small_cohort.patients["patient_id"].iloc[2]),
                                  default=float))
    cli = [sys.executable, "-m", "crsrisk.cli"]
    out = subprocess.run(cli + ["predict", str(patient), "--model", str(small_bundle), "--json", "--no-audit",
                                "--now-hours", "40"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert {p["task"] for p in json.loads(out.stdout)["predictions"]} >= {"severe_crs", "icans"}
    scores = tmp_path / "scores.csv"
    out = subprocess.run(cli + ["predict", str(small_cohort_dir), "--model", str(small_bundle), "--out", str(scores)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    table = pd.read_csv(scores)
    assert list(table.columns) == ["patient_id", "task", "landmark_hours", "probability", "band"]
    assert np.all((table["probability"] >= 0) & (table["probability"] <= 1))


def _predict_many(bundle: str, record: str, log: str, n: int) -> None:
    from crsrisk.predict import predict as run

    for i in range(n):
        run(record, model=bundle, now_hours=float(i % 60), audit_log=log)


@pytest.mark.slow
def test_four_processes_of_200_predictions_lose_no_audit_record(small_cohort: Cohort, small_bundle: Path,
                                                               tmp_path: Path) -> None:
    import multiprocessing

    from crsrisk.audit.log import AuditLog, verify_log

    log = tmp_path / "audit.jsonl"
    records = [json.dumps(patient_record(small_cohort, pid), default=float)
               for pid in small_cohort.patients["patient_id"].iloc[:4]]
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_predict_many, args=(str(small_bundle), r, str(log), 200)) for r in records]
    for w in workers:
        w.start()
    for w in workers:
        w.join(600)
    assert all(w.exitcode == 0 for w in workers)
    result = verify_log(log)
    assert result.ok and result.n_records == 800
    per_patient = {}
    for record in AuditLog(log).records():
        per_patient[record["patient_hash"]] = per_patient.get(record["patient_hash"], 0) + 1
    assert sorted(per_patient.values()) == [200, 200, 200, 200]
