"""A prediction as FHIR R4: a Bundle (type ``collection``) of ``RiskAssessment`` resources, one per task answered,
the ``Device`` that made them, and an ``OperationOutcome`` stating every task not answered (not applicable, or
already occurred) and every input outside the training population, so no task is ever silently absent.

Built and validated with ``fhir.resources``' R4B models (the package's R4 line; R4B changed nothing in
RiskAssessment, Device, OperationOutcome or Bundle that is written here), as ``sources/fhir.py`` reads with them.
``probabilityDecimal`` is a fraction from 0 to 1, never a percent: R4's invariant ras-2 allows a decimal up to 100,
so both readings pass validation, but a fraction is what ``crsrisk.predict``, the CDS Hooks card and the audit log
all carry, and a reader told "0.23" can check it against them without a conversion.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from fhir.resources.R4B.bundle import Bundle as FhirBundle

from crsrisk.cohort.population import flag_text
from crsrisk.schema.codes import PROJECT_SYSTEM
from crsrisk.scoring.patient import PredictionResult, TaskPrediction
from crsrisk.service.page import task_view
from crsrisk.service.status import warning
from crsrisk.sources.daily import TimeRule, hours_since, infusion_start
from crsrisk.sources.fhir import NOT_DONE, is_fhir_bundle, read_fhir_rows

FHIR_JSON = "application/fhir+json"
STRUCTURE = "https://crsrisk.example/fhir/StructureDefinition"
HOURS_EXTENSION = f"{STRUCTURE}/hours-since-infusion"  # valueDecimal: the as-of hour, counted from the infusion
INTERVAL_EXTENSION = f"{STRUCTURE}/probability-interval-95"  # valueRange: 95 % interval of probabilityDecimal
BAND_SYSTEM = f"{PROJECT_SYSTEM}-risk-band"
MODEL_SYSTEM = f"{PROJECT_SYSTEM}-model"
PATIENT_ID_SYSTEM = f"{PROJECT_SYSTEM}-patient-id"  # a contract record's patient_id, when the input was not FHIR
UCUM = "http://unitsofmeasure.org"
BASIS_TYPES = ("Observation", "MedicationAdministration")
INFUSION_TYPES = ("Patient", "Procedure", "MedicationAdministration", "Medication")  # where the importer finds it


@dataclass(frozen=True)
class FhirInput:
    """What the RiskAssessments cite from a FHIR input: the Patient reference its resources use, the infusion
    (time zero) and each Observation and MedicationAdministration with its hour since infusion (None: not timed)."""

    patient: str
    infusion: datetime
    resources: tuple[tuple[str, float | None], ...]

    def basis(self, now_hours: float) -> list[str]:
        """References to the resources the model was given: those recorded strictly before ``now_hours``, and
        untimed ones (patient fields such as weight)."""
        return [reference for reference, hours in self.resources if hours is None or hours < now_hours]


def _moment(text: Any) -> datetime | date | None:
    if not isinstance(text, str):
        return None
    try:
        return date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text)
    except ValueError:  # a year or a month alone: the importer cannot place it either
        return None


def _when(resource: Mapping[str, Any]) -> Any:
    return resource.get("effectiveDateTime") or (resource.get("effectivePeriod") or {}).get("start")


def fhir_input(bundle: Mapping[str, Any], rule: TimeRule = TimeRule()) -> FhirInput:
    """The Patient reference, infusion time and timed resources of one patient's FHIR Bundle (the Bundle
    ``crsrisk.predict`` read; its infusion found by the importer, ``read_fhir_rows``)."""
    listed = [e for e in bundle.get("entry") or [] if isinstance(e, Mapping) and isinstance(e.get("resource"), Mapping)]
    entries = [(e.get("fullUrl"), e["resource"]) for e in listed]
    placing = [e for e in listed if e["resource"].get("resourceType") in INFUSION_TYPES]  # not every lab again
    rows = read_fhir_rows({"resourceType": "Bundle", "type": "collection", "entry": placing})
    patient_id, found = next((pid, found) for pid, found in rows.infusions.items() if found)
    infusion = infusion_start(found[0][0], rule)
    subjects = [r.get("subject", {}).get("reference") for _, r in entries if isinstance(r.get("subject"), Mapping)]
    patient = next((s for s in subjects if s), f"Patient/{patient_id}")
    timed = []
    for full_url, resource in entries:
        if resource.get("resourceType") not in BASIS_TYPES or resource.get("status") in NOT_DONE:
            continue
        reference = f"{resource['resourceType']}/{resource['id']}" if resource.get("id") else full_url
        moment = _moment(_when(resource))
        try:
            hours = None if moment is None else hours_since(moment, infusion, True, rule)
        except ValueError:  # a date-only lab of the infusion day: its side is the importer's to decide
            hours = None
        if reference:
            timed.append((str(reference), hours))
    return FhirInput(patient, infusion, tuple(timed))


def _urn() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def _device(model: Mapping[str, Any]) -> dict[str, Any]:
    """The crsrisk model as a Device: name, crsrisk version, and the bundle's SHA-256 as its identifier."""
    return {
        "resourceType": "Device",
        "status": "active",
        "identifier": [{"system": f"{MODEL_SYSTEM}-bundle-sha256", "value": str(model.get("bundle_sha256"))}],
        "deviceName": [{"name": str(model.get("name") or "crsrisk"), "type": "model-name"}],
        "version": [{"value": str(model.get("crsrisk_version"))}],
        "note": [{"text": warning(model)}],
    }


def _method(model: Mapping[str, Any], prediction: TaskPrediction) -> dict[str, Any]:
    return {
        "coding": [
            {
                "system": MODEL_SYSTEM,
                "code": prediction["model_key"],
                "display": f"crsrisk {model.get('crsrisk_version')} {prediction['model_key']}",
            }
        ],
        "text": f"{model.get('name') or 'crsrisk'} (crsrisk {model.get('crsrisk_version')}), model "
        f"{prediction['model_key']}, bundle sha256 "
        f"{model.get('bundle_sha256')}",
    }


def _prediction(prediction: TaskPrediction, start: datetime | None, now_hours: float) -> dict[str, Any]:
    view = task_view(prediction, {})  # every prediction states its own question
    end_hours = float(prediction["landmark_hours"]) + float(prediction["horizon_hours"])  # day 28 for day-28 tasks
    entry: dict[str, Any] = {
        "outcome": {"coding": [{"system": PROJECT_SYSTEM, "code": prediction["task"]}], "text": view["question"]},
        "probabilityDecimal": float(prediction["probability"]),  # a fraction 0-1 (module docstring)
        "qualitativeRisk": {
            "coding": [{"system": BAND_SYSTEM, "code": prediction["band"]}],
            "text": f"{prediction['band']} risk",
        },
        "rationale": "; ".join(r["phrase"] for r in view["reasons"]) or "no input moved the risk from the base rate",
    }
    if start is None:  # no calendar time in the input: the window in hours since infusion
        entry["whenRange"] = {
            "low": {"value": now_hours, "unit": "h", "system": UCUM, "code": "h"},
            "high": {"value": end_hours, "unit": "h", "system": UCUM, "code": "h"},
        }
    else:
        entry["whenPeriod"] = {
            "start": (start + timedelta(hours=now_hours)).isoformat(),
            "end": (start + timedelta(hours=end_hours)).isoformat(),
        }
    bounds = prediction.interval()
    if bounds is not None:
        entry["extension"] = [
            {"url": INTERVAL_EXTENSION, "valueRange": {"low": {"value": bounds[0]}, "high": {"value": bounds[1]}}}
        ]
    return entry


def _issue(severity: str, code: str, text: str, task: str | None = None) -> dict[str, Any]:
    """One OperationOutcome issue; ``task``, when given, is coded in the project's system."""
    details: dict[str, Any] = {"text": text}
    if task is not None:
        details = {"coding": [{"system": PROJECT_SYSTEM, "code": task}], **details}
    return {"severity": severity, "code": code, "details": details}


def _not_answered(result: PredictionResult, subject: dict[str, Any]) -> dict[str, Any] | None:
    """The OperationOutcome stating each task not scored and each input outside the training population."""
    issues = [
        _issue(
            "information",
            "informational",
            f"{o['task']}: already occurred ({o.get('text') or 'hour ' + str(o['hours'])}); not scored",
            o["task"],
        )
        for o in result.already_occurred
    ]
    issues += [
        _issue("information", "not-supported", f"{s['task']}: not applicable ({s['reason']}); not scored", s["task"])
        for s in result.not_applicable
    ]
    models = [p.model.key for p in result.predictions]
    issues += [
        _issue("warning", "informational", f"outside the training population: {flag_text(flag, models)}")
        for flag in result.population_flags
    ]
    if not issues:
        return None
    return {
        "resourceType": "OperationOutcome",
        "issue": issues,
        "extension": [{"url": f"{STRUCTURE}/subject", "valueReference": subject}],
    }


def risk_assessment_bundle(result: PredictionResult, patient: Mapping[str, Any]) -> dict[str, Any]:
    """The Bundle (validated, as plain JSON) for ``result``, ``crsrisk.predict`` on ``patient``: one patient's FHIR
    Bundle (its Patient reference is the subject, its resources the basis, its infusion time places the window in
    calendar time) or a contract record (subject: its ``patient_id`` as an identifier; window in hours)."""
    source = fhir_input(patient) if is_fhir_bundle(patient) else None
    return assessments(result, source or str(patient["patient"]["patient_id"]))


def assessments(result: PredictionResult, source: FhirInput | str) -> dict[str, Any]:
    """``risk_assessment_bundle`` from what it cites: the FHIR input, or the record's patient_id."""
    model, now = result.model, float(result.now_hours)
    device_url = _urn()
    fhir = None if isinstance(source, str) else source
    subject: dict[str, Any] = (
        {"identifier": {"system": PATIENT_ID_SYSTEM, "value": source}} if fhir is None else {"reference": fhir.patient}
    )
    start = fhir.infusion if fhir is not None and fhir.infusion.tzinfo is not None else None
    entries: list[dict[str, Any]] = [{"fullUrl": device_url, "resource": _device(model)}]
    for prediction in result.predictions:
        assessment: dict[str, Any] = {
            "resourceType": "RiskAssessment",
            "status": "final",
            "subject": subject,
            "extension": [{"url": HOURS_EXTENSION, "valueDecimal": now}],
            "method": _method(model, prediction),
            "performer": {"reference": device_url},
            "prediction": [_prediction(prediction, start, now)],
            "note": [{"text": warning(model)}],
        }
        if start is not None:
            assessment["occurrenceDateTime"] = (start + timedelta(hours=now)).isoformat()
        if fhir is not None:
            assessment["basis"] = [{"reference": reference} for reference in fhir.basis(now)]
        entries.append({"fullUrl": _urn(), "resource": assessment})
    outcome = _not_answered(result, subject)
    if outcome is not None:
        entries.append({"fullUrl": _urn(), "resource": outcome})
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "entry": entries,
    }
    return FhirBundle.model_validate(bundle).model_dump(mode="json", exclude_none=True)
