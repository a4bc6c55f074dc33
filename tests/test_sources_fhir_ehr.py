"""FHIR as EHRs export it: Synthea-style per-patient Bundles (urn:uuid), infusions by CPT or ICD-10-PCS, site code
maps (CSV and ConceptMap), dose units, honest defaults, and an all-fail import that shows its unknown codes first."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from crsrisk.cli import app
from crsrisk.cohort.io import load_cohort
from crsrisk.errors import CohortValidationError
from crsrisk.schema.codes import INFUSION_CODES, code_for, meaning
from crsrisk.sources.codemap import CSV_COLUMNS, load_code_map
from crsrisk.sources.daily import TimeRule
from crsrisk.sources.fhir import import_fhir
from fhir_export import ICD10PCS, LOCAL_LAB, cohort_bundles, synthea_bundle
from tests_support import assert_same_tables, simulated_tables, sorted_scores

IL6_LOINC = code_for("measurement", "il6")
LOCAL = {IL6_LOINC: "LAB-IL6"}


@pytest.fixture(scope="module")
def simulated():
    return simulated_tables(24, 5)


def _export(folder: Path, bundles: list[dict]) -> Path:
    """One .json per patient, as Synthea writes, plus a Bundle of a type crsrisk does not read (hospital info)."""
    folder.mkdir()
    for i, bundle in enumerate(bundles):
        (folder / f"patient_{i}.json").write_text(json.dumps(bundle))
    (folder / "hospitalInformation1.json").write_text(
        json.dumps(
            {
                "resourceType": "Bundle",
                "type": "batch",
                "entry": [
                    {
                        "fullUrl": "urn:uuid:org1",
                        "resource": {"resourceType": "Organization", "id": "org1", "name": "H"},
                    }
                ],
            }
        )
    )
    return folder


def _csv_map(path: Path, rows: list[tuple[str, str, str, str]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        writer.writerows(rows)
    return path


def _synthea(tables: dict) -> list[dict]:
    return [synthea_bundle(b, "cpt" if i % 2 else "icd10pcs", LOCAL) for i, b in enumerate(cohort_bundles(**tables))]


def test_synthea_folder_with_cpt_pcs_and_a_csv_code_map_gives_the_same_predictions(simulated, small_bundle, tmp_path):
    tables, original = simulated
    export = _export(tmp_path / "synthea", _synthea(tables))
    code_map = _csv_map(tmp_path / "map.csv", [(LOCAL_LAB, "LAB-IL6", "Interleukin 6 (send-out)", "il6")])
    result = CliRunner().invoke(
        app, ["import", "fhir", str(export), "--out", str(tmp_path / "cohort"), "--code-map", str(code_map)]
    )
    assert result.exit_code == 0, result.output
    assert "imported 24 infusions" in result.output and "Organization resources (not read)" in result.output
    loaded = load_cohort(tmp_path / "cohort")
    assert_same_tables(original, loaded)
    np.testing.assert_array_equal(
        sorted_scores(original, small_bundle)["probability"].to_numpy(),
        sorted_scores(loaded, small_bundle)["probability"].to_numpy(),
    )


def test_a_concept_map_maps_local_lab_and_infusion_codes(simulated, tmp_path):
    tables, original = simulated
    bundles = _synthea(tables)
    for bundle in bundles:  # the infusion as the hospital's own order code
        for entry in bundle["entry"]:
            if entry["resource"]["resourceType"] == "Procedure":
                entry["resource"]["code"] = {"coding": [{"system": "http://hospital.example/orders", "code": "CART1"}]}
    concept_map = {
        "resourceType": "ConceptMap",
        "status": "active",
        "group": [
            {
                "source": LOCAL_LAB,
                "element": [{"code": "LAB-IL6", "target": [{"code": "il6", "equivalence": "equivalent"}]}],
            },
            {
                "source": "http://hospital.example/orders",
                "element": [{"code": "CART1", "target": [{"code": "car_t_infusion", "equivalence": "equivalent"}]}],
            },
        ],
    }
    path = tmp_path / "map.json"
    path.write_text(json.dumps(concept_map))
    imported = import_fhir(_export(tmp_path / "x", bundles), codes=load_code_map(path))
    assert_same_tables(original, imported.cohort)
    assert imported.report["imported_from"]["code_map"] == "map.json"
    unread = import_fhir(_export(tmp_path / "y", bundles)).report["unknown_codes"]  # without the map (the product
    # named in usedCode still places the infusion): the local IL-6 code is counted as unread
    assert [(u["system"], u["code"], u["count"]) for u in unread] == [
        (LOCAL_LAB, "LAB-IL6", int((tables["measurements"].analyte == "il6").sum()))
    ]


def test_a_code_map_with_an_unknown_target_or_a_duplicate_code_is_refused_naming_the_row(tmp_path):
    bad = _csv_map(
        tmp_path / "bad.csv",
        [(LOCAL_LAB, "A", "", "il6"), (LOCAL_LAB, "B", "", "interleukin-6"), (LOCAL_LAB, "A", "", "crp")],
    )
    with pytest.raises(CohortValidationError) as caught:
        load_code_map(bad)
    text = str(caught.value)
    assert "bad.csv line 3: unknown target" in text and "'interleukin-6'" in text
    assert "bad.csv line 4: duplicate source code (first mapped at line 2)" in text
    (tmp_path / "cols.csv").write_text("vocabulary,code\nx,y\n")
    with pytest.raises(CohortValidationError, match="missing column"):
        load_code_map(tmp_path / "cols.csv")


def test_every_registered_infusion_code_places_the_infusion_and_product_codes_set_the_product():
    for code in INFUSION_CODES:
        found = meaning(
            {
                "cpt": "http://www.ama-assn.org/go/cpt",
                "icd10pcs": ICD10PCS,
                "rxnorm": "http://www.nlm.nih.gov/research/umls/rxnorm",
            }[code.system],
            code.code,
            ("infusion",),
        )
        assert found is not None and found.name == "car_t_infusion", code
    assert meaning(ICD10PCS, "XW043H7", ("product",)).name == "axicabtagene_ciloleucel"
    assert meaning("CPT4", "38228", ("infusion",)) is not None and meaning("CPT4", "38228", ("product",)) is None


def _mixed(tables: dict) -> tuple[dict, list[str]]:
    """Three patients: two given tocilizumab, one not."""
    events = tables["events"]
    given = list(dict.fromkeys(events.loc[events.event == "tocilizumab", "patient_id"]))[:2]
    without = [
        p
        for p in tables["patients"].patient_id
        if p not in set(events.loc[events.event == "tocilizumab", "patient_id"])
    ][:1]
    assert len(given) == 2 and len(without) == 1
    keep = given + without
    return {name: t[t.patient_id.isin(keep)] for name, t in tables.items()}, keep


def test_a_mixed_export_keeps_the_patients_given_tocilizumab_with_doses_in_mg(simulated, tmp_path):
    tables, _ = simulated
    mixed, keep = _mixed(tables)
    bundles = [synthea_bundle(b, "cpt") for b in cohort_bundles(**mixed)]
    imported = import_fhir(_export(tmp_path / "mixed", bundles))
    assert sorted(imported.cohort.patients.patient_id) == sorted(keep)
    toci = mixed["events"][mixed["events"].event == "tocilizumab"]
    got = imported.cohort.events[imported.cohort.events.event == "tocilizumab"]
    assert sorted(got["value"].dropna()) == pytest.approx(sorted(toci["value"].dropna()))


def _toci_bundle(tables: dict, unit: str, value: float) -> dict:
    mixed, keep = _mixed(tables)
    bundle = cohort_bundles(**{n: t[t.patient_id == keep[0]] for n, t in mixed.items()})[0]
    for entry in bundle["entry"]:
        if entry["resource"]["resourceType"] == "MedicationAdministration":
            entry["resource"]["dosage"] = {
                "dose": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}
            }
    return bundle


def test_a_dose_per_kg_is_converted_with_the_weight_and_a_volume_is_refused_by_name(simulated):
    tables, _ = simulated
    bundle = _toci_bundle(tables, "mg/kg", 8.0)
    weight = next(
        e["resource"]["valueQuantity"]["value"]
        for e in bundle["entry"]
        if e["resource"].get("code", {}).get("coding", [{}])[0].get("code") == "29463-7"
    )
    doses = import_fhir(bundle).cohort.events.query("event == 'tocilizumab'")["value"]
    assert doses.tolist() == pytest.approx([8.0 * weight] * len(doses))
    with pytest.raises(CohortValidationError) as caught:
        import_fhir(_toci_bundle(tables, "mL", 12.0))
    assert "tocilizumab dose in 'mL': expected mg" in str(caught.value)


def test_follow_up_ends_at_the_last_record_and_no_crs_grade_is_noted(simulated):
    tables, _ = simulated
    mixed, keep = _mixed(tables)
    patients = mixed["patients"].assign(followup_hours=np.nan)
    events = mixed["events"][mixed["events"].event != "crs_grade"]
    imported = import_fhir(
        {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [e for b in cohort_bundles(patients, mixed["measurements"], events) for e in b["entry"]],
        }
    )
    notes = " ".join(imported.cohort.metadata["notes"])
    assert "3 infusion(s) with no stated follow-up: follow-up taken to end at the patient's last record" in notes
    assert "no crs_grade record at all" in notes and "complete to day 28" not in notes.replace("(not complete", "")
    last = (
        mixed["measurements"]
        .groupby("patient_id")["hours_since_infusion"]
        .max()
        .combine(events.groupby("patient_id")["hours_since_infusion"].max(), max, fill_value=0)
    )
    got = imported.cohort.patients.set_index("patient_id")["followup_hours"]
    for pid in keep:
        assert got[pid] == pytest.approx(max(0.0, last[pid]), abs=1e-3)


def test_the_time_rule_note_reads_as_a_sentence():
    text = TimeRule().to_metadata()["description"]
    assert "(none given" not in text and "no side given for date-only labs of the infusion day" in text
    assert (
        "date-only labs of the infusion day before the infusion"
        in TimeRule(same_day_labs="before").to_metadata()["description"]
    )


def test_when_every_patient_fails_the_exit_is_non_zero_and_unknown_codes_come_first(simulated, tmp_path):
    tables, _ = simulated
    bundles = _synthea({n: t.iloc[:0] if n != "patients" else t.iloc[:3] for n, t in tables.items()})
    for bundle in bundles:
        for entry in bundle["entry"]:
            if entry["resource"]["resourceType"] == "Procedure":
                entry["resource"]["code"] = {
                    "coding": [
                        {"system": "http://hospital.example/orders", "code": "CART1", "display": "CAR-T infusion order"}
                    ]
                }
                entry["resource"].pop("usedCode", None)  # no product named: nothing places the infusion
    export = _export(tmp_path / "fail", bundles)
    result = CliRunner().invoke(app, ["import", "fhir", str(export), "--out", str(tmp_path / "cohort")])
    assert result.exit_code == 2
    assert "CART1" in result.output and "no CAR-T infusion" in result.output
    assert result.output.index("CART1") < result.output.index("error:")
