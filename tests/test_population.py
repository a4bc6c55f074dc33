"""Outside the training population: an adult, an unseen product or diagnosis, most inputs missing, values beyond
training are flagged by name in predict, on the CLI and in evaluate, never silently scored as if typical."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from crsrisk.cli import app
from crsrisk.bundle.store import load_bundle
from crsrisk.cohort.validated import Cohort
from crsrisk.evaluation.external import evaluate_bundle
from crsrisk.scoring import predict
from tests_support import patient_record
from typer.testing import CliRunner


def _kinds(result) -> dict[str, dict]:
    return {flag["kind"]: flag for flag in result.population_flags}


def test_a_typical_training_patient_raises_no_patient_flag(small_cohort: Cohort, small_bundle: Path) -> None:
    record = patient_record(small_cohort, small_cohort.patients["patient_id"].iloc[0])
    flags = _kinds(predict(record, model=small_bundle, now_hours=40, audit=False))
    assert not {"age", "unseen_product", "unseen_diagnosis", "mostly_missing"} & set(flags)


def test_an_adult_with_an_unseen_product_and_diagnosis_is_flagged_by_name(
    small_cohort: Cohort, small_bundle: Path
) -> None:
    record = patient_record(small_cohort, small_cohort.patients["patient_id"].iloc[0])
    adult = copy.deepcopy(record)
    adult["patient"].update(
        {"age_years": 45.0, "product": "axicabtagene_ciloleucel", "costim_domain": None, "diagnosis": "LBCL"}
    )
    result = predict(adult, model=small_bundle, now_hours=40, audit=False)
    flags = _kinds(result)
    assert flags["age"]["value"] == 45.0 and flags["age"]["expected"].startswith("1.4 to 26 years")
    assert flags["unseen_product"]["value"] == "axicabtagene_ciloleucel"
    assert flags["unseen_diagnosis"]["value"] == "LBCL"
    assert result.predictions  # flagged, still scored: the flag says what the number is worth
    assert json.loads(json.dumps(result.to_dict()))["population_flags"] == result.population_flags


def test_most_inputs_missing_and_values_beyond_training_are_flagged(small_bundle: Path) -> None:
    sparse = {
        "patient": {"patient_id": "NEW", "age_years": 9, "product": "tisagenlecleucel"},
        "measurements": [{"hours_since_infusion": 10, "analyte": "il6", "value": 9_000_000, "unit": "pg/mL"}],
    }
    flags = _kinds(predict(sparse, model=small_bundle, now_hours=40, audit=False))
    assert flags["mostly_missing"]["value"] > 0.5
    assert "il6" in flags["beyond_training_range"]["expected"]


def test_the_cli_says_it_and_evaluate_counts_it(small_cohort: Cohort, small_bundle: Path, tmp_path: Path) -> None:
    record = patient_record(small_cohort, small_cohort.patients["patient_id"].iloc[1])
    record["patient"]["age_years"] = 45.0
    patient = tmp_path / "adult.json"
    patient.write_text(json.dumps(record, default=float))
    out = CliRunner().invoke(
        app, ["predict", str(patient), "--model", str(small_bundle), "--no-audit", "--now-hours", "40"]
    )
    assert out.exit_code == 0, out.output
    assert "outside the training population: age (age_years): 45.0" in " ".join(out.stdout.split())
    older = small_cohort.patients.assign(age_years=small_cohort.patients["age_years"] + 30)
    shifted = Cohort(older, small_cohort.measurements, small_cohort.events, small_cohort.metadata)
    summary = evaluate_bundle(shifted, load_bundle(small_bundle), n_boot=50).document["population_flags"]
    assert summary["recorded"] and summary["infusions"]["age"] == int((older["age_years"] > 26).sum())
