"""A small, independent FHIR R4 writer for tests: contract tables -> one Bundle per patient (plain JSON).

Written from the README's "Real data in" section, not from the importer's code, so that a round trip tests
the documented codes: LOINC for labs with a code, the crsrisk code system otherwise, UCUM units.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta, timezone
from typing import Any

import pandas as pd

from crsrisk.schema.codes import PROJECT_SYSTEM, code_for
from crsrisk.schema.units import UCUM

LOINC, UCUM_URI = "http://loinc.org", "http://unitsofmeasure.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
DRUG_RXNORM = {"tocilizumab": "612865", "siltuximab": "1535218", "anakinra": "72435", "corticosteroid": "3264"}
ICD10 = {"B-ALL": "C91.0", "LBCL": "C83.3", "MCL": "C83.1", "FL": "C82.9", "MM": "C90.0"}
PATIENT_UNITS = {"weight_kg": "kg", "marrow_blasts_pct": "%", "dose_1e6_cells_per_kg": "10*6/kg", "followup_hours": "h"}
BASE = datetime(2024, 1, 1, 10, 0, tzinfo=timezone(timedelta(hours=1)))


def _blank(value: Any) -> bool:
    return value is None or (not isinstance(value, str) and pd.isna(value))


def _project(code: str) -> dict:
    return {"coding": [{"system": PROJECT_SYSTEM, "code": code}]}


def _time(start: datetime, hours: float) -> str:
    return (start + timedelta(seconds=round(hours * 3600))).isoformat()


def _field(pid: str, n: int, column: str, value: Any, start: datetime) -> dict:
    code = {"coding": [{"system": LOINC, "code": "29463-7"}]} if column == "weight_kg" else _project(column)
    obs = {
        "resourceType": "Observation",
        "id": f"{pid}-f{n}",
        "status": "final",
        "code": code,
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": start.isoformat(),
    }
    if isinstance(value, bool):
        obs["valueBoolean"] = value
    elif isinstance(value, (int, float)):
        unit = PATIENT_UNITS[column]
        obs["valueQuantity"] = {"value": float(value), "unit": unit, "system": UCUM_URI, "code": unit}
    else:
        obs["valueString"] = str(value)
    return obs


def patient_bundle(index: int, patient: dict, measurements: pd.DataFrame, events: pd.DataFrame) -> dict:
    """One patient's Bundle: Patient, Condition, Procedure (infusion), Observations, MedicationAdministrations."""
    pid = str(patient["patient_id"])
    start = BASE + timedelta(days=index)
    subject = {"reference": f"Patient/{pid}"}
    resources: list[dict] = [
        {
            "resourceType": "Patient",
            "id": pid,
            "birthDate": (start.date() - timedelta(days=round(patient["age_years"] * 365.25))).isoformat(),
        }
    ]
    if not _blank(patient.get("sex")):
        resources[0]["gender"] = {"M": "male", "F": "female"}[patient["sex"]]
    if not _blank(patient.get("center")):
        resources[0]["managingOrganization"] = {"display": patient["center"]}
    diagnosis = patient.get("diagnosis")
    if not _blank(diagnosis):
        code = (
            {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": ICD10[diagnosis]}]}
            if diagnosis in ICD10
            else _project(diagnosis)
        )
        resources.append({"resourceType": "Condition", "id": f"{pid}-dx", "subject": subject, "code": code})
    procedure = {
        "resourceType": "Procedure",
        "id": f"{pid}-inf",
        "status": "completed",
        "subject": subject,
        "code": _project("car_t_infusion"),
        "performedDateTime": start.isoformat(),
    }
    if not _blank(patient.get("product")):
        product = patient["product"]
        procedure["usedCode"] = [_project("other") if product == "other" else {"text": product.replace("_", " ")}]
    resources.append(procedure)
    fields = (
        "weight_kg",
        "marrow_blasts_pct",
        "extramedullary_disease",
        "cns_status",
        "prior_hsct",
        "costim_domain",
        "dose_1e6_cells_per_kg",
        "lymphodepletion",
        "followup_hours",
    )
    for n, column in enumerate(fields):
        value = patient.get(column)
        if not _blank(value) and value != "":
            resources.append(_field(pid, n, column, value.item() if hasattr(value, "item") else value, start))
    for n, row in enumerate(measurements.itertuples(index=False)):
        loinc = code_for("measurement", row.analyte)
        code = {"coding": [{"system": LOINC, "code": loinc}]} if loinc else _project(row.analyte)
        resources.append(
            {
                "resourceType": "Observation",
                "id": f"{pid}-m{n}",
                "status": "final",
                "code": code,
                "subject": subject,
                "effectiveDateTime": _time(start, row.hours_since_infusion),
                "valueQuantity": {
                    "value": float(row.value),
                    "unit": row.unit,
                    "system": UCUM_URI,
                    "code": UCUM[row.unit],
                },
            }
        )
    for n, row in enumerate(events.itertuples(index=False)):
        when = _time(start, row.hours_since_infusion)
        if row.event in ("crs_grade", "icans_grade"):
            resources.append(
                {
                    "resourceType": "Observation",
                    "id": f"{pid}-e{n}",
                    "status": "final",
                    "code": _project(row.event),
                    "subject": subject,
                    "effectiveDateTime": when,
                    "valueInteger": int(row.value),
                }
            )
            continue
        given = {
            "resourceType": "MedicationAdministration",
            "id": f"{pid}-e{n}",
            "status": "completed",
            "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": DRUG_RXNORM[row.event]}]},
            "subject": subject,
            "effectiveDateTime": when,
        }
        if not (isinstance(row.value, float) and math.isnan(row.value)):
            given["dosage"] = {"dose": {"value": float(row.value), "unit": "mg"}}
        resources.append(given)
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"fullUrl": f"urn:x:{r['resourceType']}/{r['id']}", "resource": r} for r in resources],
    }


def cohort_bundles(patients: pd.DataFrame, measurements: pd.DataFrame, events: pd.DataFrame) -> list[dict]:
    """One Bundle per patient, in patients order."""
    by_m, by_e = dict(tuple(measurements.groupby("patient_id"))), dict(tuple(events.groupby("patient_id")))
    empty_m, empty_e = measurements.iloc[:0], events.iloc[:0]
    return [
        patient_bundle(i, row, by_m.get(row["patient_id"], empty_m), by_e.get(row["patient_id"], empty_e))
        for i, row in enumerate(patients.to_dict("records"))
    ]


CPT, ICD10PCS = "http://www.ama-assn.org/go/cpt", "http://www.cms.gov/Medicare/Coding/ICD10"
# Product-specific ICD-10-PCS codes (peripheral vein), written from the CMS/MAC billing tables, not the importer.
PCS_PRODUCT = {
    "tisagenlecleucel": "XW033J7",
    "axicabtagene_ciloleucel": "XW033H7",
    "brexucabtagene_autoleucel": "XW033M7",
    "lisocabtagene_maraleucel": "XW23376",
}
LOCAL_LAB = "http://hospital.example/fhir/CodeSystem/lab"


def synthea_bundle(bundle: dict, infusion: str, local: dict[str, str] | None = None) -> dict:
    """A patient Bundle rewritten as Synthea writes one: a transaction whose entries have ``urn:uuid`` fullUrls,
    referenced by that URN; the infusion coded ``cpt`` (38228) or ``icd10pcs`` (product-specific code when the
    product has one, else XW033C3); ``local`` LOINC codes replaced by the site's own lab codes."""
    import uuid

    entries = []
    urls = {
        f"{e['resource']['resourceType']}/{e['resource']['id']}": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, e['resource']['resourceType'] + e['resource']['id'])}"
        for e in bundle["entry"]
    }
    for entry in bundle["entry"]:
        resource = json.loads(json.dumps(entry["resource"]))
        if "subject" in resource:
            resource["subject"] = {"reference": urls[resource["subject"]["reference"]]}
        if resource["resourceType"] == "Procedure":
            product = (resource.get("usedCode") or [{}])[0].get("text", "").replace(" ", "_")
            coding = (
                {"system": CPT, "code": "38228", "display": "CAR-T cell administration, autologous"}
                if infusion == "cpt"
                else {"system": ICD10PCS, "code": PCS_PRODUCT.get(product, "XW033C3")}
            )
            resource["code"] = {"coding": [coding]}
        for coding in (resource.get("code") or {}).get("coding", []):
            if coding.get("system") == LOINC and coding.get("code") in (local or {}):
                coding.update(system=LOCAL_LAB, code=local[coding["code"]])
        entries.append(
            {
                "fullUrl": urls[f"{resource['resourceType']}/{resource['id']}"],
                "resource": resource,
                "request": {"method": "POST", "url": resource["resourceType"]},
            }
        )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}
