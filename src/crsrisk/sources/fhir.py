"""FHIR R4 in, as EHRs export it -> a cohort. Three layouts: a folder of per-patient Bundles (one .json per
patient, transaction, collection or searchset, as Synthea writes them), a Bulk Data folder (NDJSON, one file per
resource type), or a single Bundle. References resolve by an entry's ``fullUrl`` (``urn:uuid:...`` or an
absolute URL), as ``Patient/ID`` or as an absolute URL ending in ``Patient/ID``.

Resources are parsed with ``fhir.resources`` (its R4B models, identical to R4 for every resource read here),
never walked as raw dicts. What is read, and how (every code comes from ``schema/codes.py`` and
``schema/analytes.py``):

- ``Patient``: ``id`` is the patient_id; ``gender`` -> sex; ``birthDate`` -> age at the infusion;
  ``managingOrganization`` (display, else the referenced id) -> center.
- ``Observation`` (status not entered-in-error/cancelled): a LOINC (or crsrisk) code of an analyte with a
  ``valueQuantity`` whose UCUM unit is matched by ``schema.units.match_unit``; a crsrisk ``crs_grade`` /
  ``icans_grade`` with an integer value; a patient field (LOINC 29463-7 body weight, or a crsrisk code named
  after the column) with a quantity, boolean, string or coded value. Time: ``effectiveDateTime`` or the start
  of ``effectivePeriod``.
- Every code is looked up in the site's code map (``--code-map``, ``sources.codemap``) before the registry.
- ``MedicationAdministration`` (not not-done/entered-in-error): tocilizumab, siltuximab, anakinra, systemic
  corticosteroids by RxNorm or ATC (``medicationCodeableConcept``, or a referenced ``Medication``); the dose
  from ``dosage.dose`` in mg (g, ug and mg/kg converted; any other unit refused by name). A CAR-T product
  given this way (by RxNorm code or by name) is the infusion.
- ``Procedure``: the CAR-T infusion (time zero), by CPT 38228/0540T, ICD-10-PCS (``schema.codes.INFUSION_CODES``)
  or crsrisk ``car_t_infusion``, or naming a product; the product from a product-specific code (ICD-10-PCS
  XW033J7 ...), a crsrisk product code or a generic/brand name in ``usedCode``, ``code`` or their text.
- ``Condition``: the diagnosis by ICD-10 (or crsrisk) code.

Codes nobody maps and resources of other types are counted in the import report, with an example each.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from datetime import date, datetime
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from crsrisk.cohort.io import MAX_TABLE_BYTES, is_folder, read_limited
from crsrisk.errors import CohortValidationError, Problem
from crsrisk.schema.codes import FHIR_GENDER, Kind, Meaning, product_in_text
from crsrisk.schema.tables import DRUG_EVENTS, GRADE_EVENTS
from crsrisk.schema.units import DOSE_UNIT, dose_to_mg, match_unit
from crsrisk.sources.assemble import Imported, SourceRows, as_record, assemble, raw_tables
from crsrisk.sources.codemap import NO_MAP, CodeMap
from crsrisk.sources.daily import Moment, TimeRule
from crsrisk.sources.values import patient_value

READ_TYPES = ("Patient", "Observation", "MedicationAdministration", "Procedure", "Condition", "Medication")
NOT_DONE = {"entered-in-error", "cancelled", "not-done", "stopped"}  # stopped: began, but no dose recorded as given


def is_fhir_bundle(obj: Any) -> bool:
    """True for a FHIR Bundle as parsed JSON (what ``crsrisk.predict`` then reads with ``record_from_fhir``)."""
    return isinstance(obj, Mapping) and obj.get("resourceType") == "Bundle"


def _resources_of(data: Mapping[str, Any], where: str) -> Iterator[tuple[dict, str]]:
    if data.get("resourceType") == "Bundle":
        entries = data.get("entry") or []
        if not isinstance(entries, list):
            raise CohortValidationError(
                [Problem("fhir", "entry", f"{where}: expected a list of entries", value=entries)]
            )
        for i, entry in enumerate(entries):
            resource = entry.get("resource") if isinstance(entry, Mapping) else None
            if isinstance(resource, Mapping):
                yield dict(resource), str(entry.get("fullUrl") or f"{where} entry {i}")
    else:
        yield dict(data), where


def _read_source(source: str | os.PathLike | Mapping[str, Any]) -> Iterator[tuple[dict, str]]:
    """Raw resources (dict, where) from a Bundle mapping, a Bundle/resource JSON file, or an NDJSON folder."""
    if isinstance(source, Mapping):
        yield from _resources_of(source, "bundle")
        return
    path = Path(source)
    if is_folder(path):
        files = sorted(path.glob("*.ndjson"))
        bundles = sorted(path.glob("*.json"))
        if not files and not bundles:
            raise CohortValidationError(
                [
                    Problem(
                        "fhir",
                        "<folder>",
                        f"{path}: no .json or .ndjson files (expected "
                        "one Bundle .json per patient, or the Bulk Data layout: one "
                        "Patient.ndjson, Observation.ndjson, ... per resource type)",
                    )
                ]
            )
        for file in bundles:  # per-patient Bundles (Synthea's layout)
            yield from _resources_of(_json(read_limited(file, MAX_TABLE_BYTES, "fhir"), file.name), file.name)
        for file in files:  # each bounded, and never a FIFO or device (read_limited)
            for number, line in enumerate(read_limited(file, MAX_TABLE_BYTES, "fhir").splitlines(), start=1):
                if line.strip():
                    yield from _resources_of(_json(line, f"{file.name} line {number}"), f"{file.name} line {number}")
        return
    yield from _resources_of(_json(read_limited(path, MAX_TABLE_BYTES, "fhir"), path.name), path.name)


def _json(text: str | bytes, where: str) -> Mapping[str, Any]:
    try:
        data = json.loads(text)
    except RecursionError:
        raise CohortValidationError(
            [Problem("fhir", "<json>", f"{where}: not valid JSON (nested too deeply)")]
        ) from None
    except ValueError as error:  # also bytes that are not UTF-8
        raise CohortValidationError([Problem("fhir", "<json>", f"{where}: not valid JSON ({error})")]) from None
    if not isinstance(data, Mapping):
        raise CohortValidationError([Problem("fhir", "<json>", f"{where}: expected a JSON object")])
    return data


def _parse(resources: Iterable[tuple[dict, str]], rows: SourceRows) -> dict[str, list[Any]]:
    """Typed fhir.resources models by type; a resource that fails FHIR validation is a problem naming it."""
    from fhir.resources.R4B import get_fhir_model_class
    from pydantic import ValidationError

    parsed: dict[str, list[Any]] = {name: [] for name in READ_TYPES}
    for data, where in resources:
        kind = data.get("resourceType")
        if kind not in READ_TYPES:
            rows.skipped[f"{kind} resources (not read)"] += 1
            continue
        try:
            model = get_fhir_model_class(kind).model_validate(data)
        except ValidationError as error:
            first = error.errors()[0]
            rows.problem(
                kind,
                ".".join(str(p) for p in first["loc"]) or "<resource>",
                f"{where}: not valid FHIR R4 {kind}: {first['msg']}",
                value=data.get("id"),
            )
            continue
        parsed[kind].append((model, where))
    return parsed


def _ref_id(reference: Any) -> str | None:
    """The id in a reference such as ``Patient/p1`` (or the whole text of a ``urn:uuid:`` reference)."""
    text = getattr(reference, "reference", None)
    return None if not text else text.rsplit("/", 1)[-1] if "/" in text and not text.startswith("urn:") else text


def _moment(value: Any, where: str, rows: SourceRows, patient_id: str | None) -> Moment | None:
    if isinstance(value, (datetime, date)):
        return value
    rows.problem(
        where, "time", "expected a date or date-time (a year or month alone cannot be placed)", patient_id, value
    )
    return None


def _codings(concept: Any) -> list[Any]:
    return list(getattr(concept, "coding", None) or []) if concept is not None else []


def _meaning_of(concept: Any, kinds: tuple[Kind, ...], rows: SourceRows) -> Meaning | None:
    """The meaning (of one of ``kinds``) of the first coding that has one (site map first), or None."""
    return next(
        (found for coding in _codings(concept) if (found := rows.meaning(coding.system, coding.code, kinds))), None
    )


def _unknown(rows: SourceRows, where: str, concept: Any, example: str) -> None:
    coding = _codings(concept)[0] if _codings(concept) else None
    rows.add_unknown(
        where,
        getattr(coding, "system", None),
        getattr(coding, "code", None),
        getattr(coding, "display", None) or getattr(concept, "text", None),
        example,
    )


def _observation_value(obs: Any) -> tuple[Any, str | None]:
    """The value (number, bool or text) and its unit as written (UCUM code first)."""
    if obs.valueQuantity is not None:
        quantity = obs.valueQuantity
        value = None if quantity.value is None else float(quantity.value)
        unit = quantity.code if quantity.system == "http://unitsofmeasure.org" and quantity.code else quantity.unit
        return value, unit
    if obs.valueInteger is not None:
        return float(obs.valueInteger), None
    if obs.valueBoolean is not None:
        return bool(obs.valueBoolean), None
    if obs.valueString is not None:
        return obs.valueString, None
    if obs.valueCodeableConcept is not None:
        coding = _codings(obs.valueCodeableConcept)
        return (coding[0].code if coding else obs.valueCodeableConcept.text), None
    return None, None


def _patients(parsed: dict[str, list[Any]], rows: SourceRows) -> dict[str, str]:
    """Read Patient resources; returns fullUrl -> patient_id so ``urn:uuid:`` references resolve."""
    by_url: dict[str, str] = {}
    for patient, where in parsed["Patient"]:
        if not patient.id:
            rows.problem("Patient", "id", f"{where}: a Patient needs an id (it becomes the patient_id)")
            continue
        by_url[where] = by_url[f"Patient/{patient.id}"] = patient.id
        rows.patient(patient.id)
        if patient.gender is not None:
            rows.set_field(patient.id, "sex", FHIR_GENDER.get(patient.gender), f"Patient/{patient.id}")
        if isinstance(patient.birthDate, date):
            rows.birth_dates[patient.id] = patient.birthDate
        elif patient.birthDate is not None:
            rows.problem(
                "Patient",
                "birthDate",
                "expected a full date (year-month-day) to compute the age at "
                "infusion; or give age_years as an Observation",
                patient.id,
                patient.birthDate,
            )
        organisation = patient.managingOrganization
        if organisation is not None:
            rows.set_field(patient.id, "center", organisation.display or _ref_id(organisation), f"Patient/{patient.id}")
    return by_url


def _subject(resource: Any, by_url: dict[str, str], rows: SourceRows, kind: str) -> str | None:
    reference = getattr(resource, "subject", None) or getattr(resource, "patient", None)
    text = getattr(reference, "reference", None)
    patient_id = by_url.get(text) if text in by_url else _ref_id(reference)
    if patient_id is None:
        rows.problem(kind, "subject", "no subject: expected a reference to the Patient", value=resource.id)
    return patient_id


def _observations(parsed: dict[str, list[Any]], by_url: dict[str, str], rows: SourceRows) -> None:
    for obs, where in parsed["Observation"]:
        if obs.status in NOT_DONE:
            rows.skipped[f"Observation status {obs.status}"] += 1
            continue
        found = _meaning_of(obs.code, ("measurement", "event", "patient"), rows)
        label = f"Observation/{obs.id}" if obs.id else where
        if found is None or (found.kind == "event" and found.name not in GRADE_EVENTS):
            _unknown(rows, "Observation", obs.code, label)
            continue
        patient_id = _subject(obs, by_url, rows, "Observation")
        if patient_id is None:
            continue
        value, unit = _observation_value(obs)
        if found.kind == "patient":
            value = patient_value(found.name, value, unit, label, patient_id, rows)
            rows.set_field(patient_id, found.name, value, label)
            continue
        when = obs.effectiveDateTime or (obs.effectivePeriod.start if obs.effectivePeriod else None)
        moment = _moment(when, label, rows, patient_id)
        if moment is None:
            continue
        if not isinstance(value, float) or math.isnan(value):
            rows.problem(label, "value", f"expected a number for {found.name}", patient_id, value)
        elif found.kind == "measurement":
            rows.measurements.append(
                (patient_id, moment, found.name, value, match_unit(found.name, unit) or unit or "")
            )
        else:
            rows.events.append((patient_id, moment, found.name, value))


def _medications(parsed: dict[str, list[Any]], by_url: dict[str, str], rows: SourceRows) -> None:
    catalogue = {key: m.code for m, where in parsed["Medication"] for key in (m.id, where) if key}
    for given, where in parsed["MedicationAdministration"]:
        if given.status in NOT_DONE:
            rows.skipped[f"MedicationAdministration status {given.status}"] += 1
            continue
        reference = getattr(given.medicationReference, "reference", None) or ""
        concept = (
            given.medicationCodeableConcept
            or catalogue.get(reference)
            or catalogue.get(_ref_id(given.medicationReference) or "")
        )
        found = _meaning_of(concept, ("event",), rows)
        label = f"MedicationAdministration/{given.id}" if given.id else where
        product = _product(rows, concept)
        patient_id = _subject(given, by_url, rows, "MedicationAdministration")
        when = given.effectiveDateTime or (given.effectivePeriod.start if given.effectivePeriod else None)
        if product is not None and patient_id is not None:
            _infusion(rows, patient_id, when, product, label)
            continue
        if found is None or found.name not in DRUG_EVENTS:
            _unknown(rows, "MedicationAdministration", concept, label)
            continue
        moment = _moment(when, label, rows, patient_id)
        if patient_id is None or moment is None:
            continue
        _dose(rows, patient_id, moment, found.name, given.dosage.dose if given.dosage else None, label)


def _dose(rows: SourceRows, patient_id: str, moment: Moment, event: str, dose: Any, label: str) -> None:
    """A drug event with its dose in the contract's unit (mg); a unit that is no mass is refused by name."""
    if dose is None or dose.value is None:
        rows.events.append((patient_id, moment, event, None))
        return
    unit = dose.code if dose.system == "http://unitsofmeasure.org" and dose.code else dose.unit
    factor = dose_to_mg(unit)
    if factor is None:
        rows.problem(
            label,
            "dosage.dose",
            f"{event} dose in {unit!r}: expected {DOSE_UNIT} (or g, ug, mg/kg), the contract's unit",
            patient_id,
            float(dose.value),
        )
        return
    if factor[1]:
        rows.per_kg[len(rows.events)] = label
    rows.events.append((patient_id, moment, event, float(dose.value) * factor[0]))


def _product(rows: SourceRows, *concepts: Any) -> str | None:
    """A product named by a product code (site map, ICD-10-PCS, RxNorm, crsrisk), or by a generic/brand name in a
    coding display or text."""
    for concept in concepts:
        for coding in _codings(concept):
            found = rows.meaning(coding.system, coding.code, ("product",))
            if found is not None:
                return found.name
            named = product_in_text(coding.display) or product_in_text(coding.code)
            if named:
                return named
        if concept is not None and product_in_text(getattr(concept, "text", None)):
            return product_in_text(concept.text)
    return None


def _infusion(rows: SourceRows, patient_id: str, when: Any, product: str | None, label: str) -> None:
    moment = _moment(when, label, rows, patient_id)
    if moment is not None:
        rows.add_infusion(patient_id, moment, product, label)


def _procedures(parsed: dict[str, list[Any]], by_url: dict[str, str], rows: SourceRows) -> None:
    for procedure, where in parsed["Procedure"]:
        label = f"Procedure/{procedure.id}" if procedure.id else where
        if procedure.status in NOT_DONE:
            rows.skipped[f"Procedure status {procedure.status}"] += 1
            continue
        infusion = _meaning_of(procedure.code, ("infusion",), rows)
        product = _product(rows, *(procedure.usedCode or []), procedure.code)
        if infusion is None and product is None:
            _unknown(rows, "Procedure", procedure.code, label)
            continue
        patient_id = _subject(procedure, by_url, rows, "Procedure")
        when = procedure.performedDateTime or (procedure.performedPeriod.start if procedure.performedPeriod else None)
        if patient_id is not None:
            _infusion(rows, patient_id, when, product, label)


def _conditions(parsed: dict[str, list[Any]], by_url: dict[str, str], rows: SourceRows) -> None:
    for condition, where in parsed["Condition"]:
        found = _meaning_of(condition.code, ("diagnosis",), rows)
        label = f"Condition/{condition.id}" if condition.id else where
        if found is None:
            _unknown(rows, "Condition", condition.code, label)
            continue
        patient_id = _subject(condition, by_url, rows, "Condition")
        if patient_id is not None:
            rows.set_field(patient_id, "diagnosis", found.name, label)


def read_fhir_rows(source: str | os.PathLike | Mapping[str, Any], codes: CodeMap = NO_MAP) -> SourceRows:
    """Every resource crsrisk reads from a FHIR source, decoded into source rows (problems collected)."""
    rows = SourceRows(codes=codes)
    parsed = _parse(_read_source(source), rows)
    by_url = _patients(parsed, rows)
    _procedures(parsed, by_url, rows)
    _medications(parsed, by_url, rows)
    _observations(parsed, by_url, rows)
    _conditions(parsed, by_url, rows)
    return rows


def import_fhir(
    source: str | os.PathLike | Mapping[str, Any], rule: TimeRule = TimeRule(), codes: CodeMap = NO_MAP
) -> Imported:
    """A FHIR Bundle, a folder of per-patient Bundles or an NDJSON folder as a validated cohort with its report."""
    described = {
        "kind": "fhir",
        "version": "R4",
        "source": "bundle" if isinstance(source, Mapping) else str(source),
        "code_map": codes.source,
    }
    return assemble(read_fhir_rows(source, codes), rule, described)


def record_from_fhir(obj: Mapping[str, Any] | str | os.PathLike, rule: TimeRule = TimeRule()) -> dict[str, Any]:
    """One patient's FHIR Bundle as the contract record ``crsrisk.predict`` scores; unknown codes are warned."""
    rows = read_fhir_rows(obj)
    tables, _ = raw_tables(rows, rule, every_patient=True)
    if rows.unknown:
        listed = "; ".join(
            f"{where} {system}|{code} x{count}" for (where, system, code, _), count in rows.unknown.items()
        )
        warnings.warn(f"FHIR codes crsrisk does not read (ignored): {listed}", UserWarning, stacklevel=2)
    return as_record(tables)
