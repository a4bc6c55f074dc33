"""FHIR R4 in: a cohort written as FHIR imports back to the same tables and the same predictions."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

import crsrisk
from crsrisk.cli import app
from crsrisk.cohort.io import load_cohort
from crsrisk.errors import CohortValidationError
from crsrisk.schema.analytes import ANALYTES
from crsrisk.schema.codes import PROJECT_SYSTEM
from crsrisk.schema.units import UCUM, match_unit
from crsrisk.sources.daily import TimeRule, hours_since
from crsrisk.sources.fhir import import_fhir, is_fhir_bundle, record_from_fhir
from fhir_export import cohort_bundles, patient_bundle
from tests_support import assert_same_tables, patient_record, simulated_tables, sorted_scores


@pytest.fixture(scope="module")
def simulated():
    return simulated_tables(30, 3)


def _merged(bundles: list[dict]) -> dict:
    return {"resourceType": "Bundle", "type": "collection", "entry": [e for b in bundles for e in b["entry"]]}


def test_bundle_round_trip_gives_the_same_tables_and_predictions(simulated, small_bundle):
    tables, original = simulated
    imported = import_fhir(_merged(cohort_bundles(**tables)))
    assert_same_tables(original, imported.cohort)
    a, b = sorted_scores(original, small_bundle), sorted_scores(imported.cohort, small_bundle)
    assert len(a) > 60
    np.testing.assert_array_equal(a["probability"].to_numpy(), b["probability"].to_numpy())
    assert imported.report["unknown_codes"] == [] and imported.report["date_only"]["measurements"] == 0


def test_bulk_ndjson_folder_imports_through_the_cli(simulated, small_bundle, tmp_path):
    tables, original = simulated
    resources: dict[str, list[dict]] = {}
    for bundle in cohort_bundles(**tables):
        for entry in bundle["entry"]:
            resources.setdefault(entry["resource"]["resourceType"], []).append(entry["resource"])
    export = tmp_path / "export"
    export.mkdir()
    for kind, items in resources.items():
        (export / f"{kind}.ndjson").write_text("".join(json.dumps(r) + "\n" for r in items))
    result = CliRunner().invoke(app, ["import", "fhir", str(export), "--out", str(tmp_path / "cohort")])
    assert result.exit_code == 0, result.output
    assert "imported 30 infusions" in result.output
    loaded = load_cohort(tmp_path / "cohort")
    assert loaded.metadata["time_rule"]["hour"] == 8.0 and loaded.metadata["imported_from"]["kind"] == "fhir"
    np.testing.assert_array_equal(
        sorted_scores(original, small_bundle)["probability"].to_numpy(),
        sorted_scores(loaded, small_bundle)["probability"].to_numpy(),
    )


def test_predict_accepts_a_fhir_bundle_for_one_patient(simulated, small_bundle):
    tables, original = simulated
    bundle = cohort_bundles(**tables)[4]
    assert is_fhir_bundle(bundle) and not is_fhir_bundle({"patient": {}})
    pid = tables["patients"]["patient_id"].iloc[4]
    plain = patient_record(original, pid)
    from_fhir = crsrisk.predict(bundle, model=small_bundle, audit=False).to_dict()["predictions"]
    from_record = crsrisk.predict(plain, model=small_bundle, audit=False).to_dict()["predictions"]
    assert [p["probability"] for p in from_fhir] == [p["probability"] for p in from_record]
    assert record_from_fhir(bundle)["patient"]["patient_id"] == pid


def _one(tables: dict, extra: list[dict] | None = None, unit: str | None = None) -> dict:
    patients = tables["patients"].iloc[:1]
    pid = patients["patient_id"].iloc[0]
    measurements = (
        tables["measurements"][tables["measurements"].patient_id == pid]
        .head(3)
        .assign(analyte="il6", unit="pg/mL", value=5.0)
    )
    bundle = patient_bundle(0, patients.iloc[0].to_dict(), measurements, tables["events"].iloc[:0])
    if unit is not None:
        bundle["entry"][-1]["resource"]["valueQuantity"]["code"] = unit
    bundle["entry"] += [{"resource": r} for r in extra or []]
    return bundle


def test_unknown_codes_are_listed_with_count_and_example(simulated):
    tables, _ = simulated
    pid = tables["patients"]["patient_id"].iloc[0]
    odd = [
        {
            "resourceType": "Observation",
            "id": f"hb{i}",
            "status": "final",
            "subject": {"reference": f"Patient/{pid}"},
            "code": {"coding": [{"system": "http://loinc.org", "code": "718-7", "display": "Hemoglobin"}]},
            "effectiveDateTime": "2024-01-02T08:00:00+01:00",
            "valueQuantity": {"value": 9.1, "code": "g/dL"},
        }
        for i in range(3)
    ] + [{"resourceType": "Encounter", "id": "enc1", "status": "finished", "class": {"code": "IMP"}}]
    report = import_fhir(_one(tables, odd)).report
    assert report["unknown_codes"] == [
        {
            "where": "Observation",
            "system": "http://loinc.org",
            "code": "718-7",
            "display": "Hemoglobin",
            "count": 3,
            "example": "Observation/hb0",
        }
    ]
    assert report["skipped"] == {"Encounter resources (not read)": 1}


def test_unit_case_follows_ucum_and_a_misspelled_case_is_named(simulated):
    tables, _ = simulated
    assert import_fhir(_one(tables, unit="pg/ml")).cohort.measurements["unit"].eq("pg/mL").all()
    with pytest.raises(CohortValidationError) as caught:
        import_fhir(_one(tables, unit="Pg/mL"))
    assert "'Pg/mL'" in str(caught.value) and "unit not accepted for il6" in str(caught.value)


@given(st.sampled_from([(a, u) for a, info in ANALYTES.items() for u in info.conversions]), st.booleans())
def test_every_contract_unit_matches_its_ucum_code_and_capitals(pair, capitals):
    analyte, unit = pair
    code = UCUM[unit]
    assert match_unit(analyte, code.upper() if capitals else code) == unit
    assert match_unit(analyte, unit) == unit


def test_ucum_matching_does_not_fold_case_blindly():
    assert match_unit("crp", "mg/dl") == "mg/dL" and match_unit("crp", "MG/DL") == "mg/dL"
    assert match_unit("creatinine", "\u00b5mol/l") == "umol/L"
    assert (
        match_unit("crp", "Mg/dL") is None and match_unit("crp", "MG/dl") is None and match_unit("il6", "mg/L") is None
    )


def _daily(tables: dict, day: int, rule: TimeRule):
    bundle = _one(tables)
    last = bundle["entry"][-1]["resource"]
    last["effectiveDateTime"] = (date(2024, 1, 1) + timedelta(days=day)).isoformat()
    return import_fhir(bundle, rule)


def test_date_only_labs_follow_the_documented_rule(simulated):
    tables, _ = simulated
    # infusion 2024-01-01 10:00 (+01:00); a lab dated 2024-01-03 goes to 08:00 that day: 2 * 24 + 8 - 10 = 46 h
    imported = _daily(tables, 2, TimeRule())
    assert 46.0 in imported.cohort.measurements["hours_since_infusion"].tolist()
    assert imported.report["date_only"]["measurements"] == 1
    with pytest.raises(CohortValidationError, match="same_day_labs"):
        _daily(tables, 0, TimeRule())
    before = _daily(tables, 0, TimeRule(same_day_labs="before")).cohort.measurements["hours_since_infusion"]
    after = _daily(tables, 0, TimeRule(hour=6, same_day_labs="after")).cohort.measurements["hours_since_infusion"]
    assert -2.0 in before.tolist() and 1.0 in after.tolist()


def test_date_only_events_and_infusion():
    rule = TimeRule(hour=8, infusion_hour=12)
    start = datetime(2024, 5, 1, 12, 0)
    assert hours_since(date(2024, 5, 1), start, lab=False, rule=rule) == 1.0  # events of the day: after infusion
    assert hours_since(date(2024, 4, 30), start, lab=True, rule=rule) == -28.0
    zoned = datetime.fromisoformat("2024-05-02T12:00:00+02:00")
    assert hours_since(zoned, start, lab=True, rule=rule) == 24.0  # a date-only infusion takes the value's zone
    with pytest.raises(ValueError, match="hour of the day"):
        TimeRule(hour=24)


def test_patients_without_an_infusion_are_left_out_and_counted(simulated):
    tables, _ = simulated
    bundles = cohort_bundles(tables["patients"].iloc[:3], tables["measurements"], tables["events"])
    other = bundles[1]
    other["entry"] = [e for e in other["entry"] if e["resource"]["resourceType"] != "Procedure"]
    imported = import_fhir(_merged(bundles))
    pid = tables["patients"]["patient_id"].iloc[1]
    assert pid not in set(imported.cohort.patients["patient_id"]) and len(imported.cohort.patients) == 2
    assert imported.report["without_infusion"]["patients"] == 1 and imported.report["without_infusion"]["examples"] == [
        pid
    ]
    assert imported.report["without_infusion"]["measurements"] == int((tables["measurements"].patient_id == pid).sum())
    with pytest.raises(CohortValidationError, match="no CAR-T infusion"):
        import_fhir(other)  # nobody to import
    with pytest.raises(CohortValidationError, match="no CAR-T infusion"):
        record_from_fhir(other)  # one patient to score: an infusion is required


def test_a_grade_without_a_time_and_invalid_fhir_are_named(simulated):
    tables, _ = simulated
    pid = tables["patients"]["patient_id"].iloc[0]
    grade = {
        "resourceType": "Observation",
        "id": "g1",
        "status": "final",
        "subject": {"reference": f"Patient/{pid}"},
        "code": {"coding": [{"system": PROJECT_SYSTEM, "code": "crs_grade"}]},
        "valueInteger": 2,
    }
    broken = {"resourceType": "Observation", "id": "bad", "status": "final"}
    with pytest.raises(CohortValidationError) as caught:
        import_fhir(_one(tables, [grade, broken]))
    text = str(caught.value)
    assert "Observation/g1" in text and "expected a date" in text and "not valid FHIR R4 Observation" in text


@given(
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2040, 1, 1)),
    st.integers(-30, 60),
    st.floats(0, 23.99),
    st.sampled_from(["before", "after"]),
)
def test_the_daily_rule_places_every_date_only_lab_by_its_day_and_side(infusion, days, hour, side):
    rule = TimeRule(hour=hour, same_day_labs=side)
    placed = hours_since(infusion.date() + timedelta(days=days), infusion, lab=True, rule=rule)
    clock = infusion.hour + infusion.minute / 60 + infusion.second / 3600 + infusion.microsecond / 3.6e9
    if days:
        assert placed == pytest.approx(days * 24 + hour - clock)
    else:
        assert (placed <= -1.0) if side == "before" else (placed >= 1.0)
