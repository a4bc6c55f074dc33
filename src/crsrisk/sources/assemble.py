"""Source rows gathered by an importer, turned into the three contract tables, validated and written.

Importers (FHIR, OMOP) only read and decode; everything they share lives here: the rows they collect, the
report of codes they did not recognise (counted, with an example, never dropped in silence), the age at
infusion, the time rule for dates without times, and writing the cohort folder with its metadata.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from crsrisk.cohort.io import METADATA_FILE, write_tables
from crsrisk.cohort.validate import validate_tables
from crsrisk.cohort.validated import Cohort
from crsrisk.errors import CohortValidationError, Problem, SourceImportError
from crsrisk.schema.codes import Kind, Meaning, meaning
from crsrisk.schema.tables import EVENT_COLUMNS, MEASUREMENT_COLUMNS, PATIENT_COLUMNS, TABLES
from crsrisk.sources.codemap import NO_MAP, CodeMap
from crsrisk.sources.daily import Moment, SameDayUnspecified, TimeRule, has_time, hours_since, infusion_start

DAYS_PER_YEAR = 365.25
AGE_DECIMALS = 1  # age at infusion from a birth date, in years to one decimal (about five weeks)


@dataclass
class SourceRows:
    """What an importer read, keyed by patient_id, with times as the source gave them."""

    patients: dict[str, dict[str, Any]] = field(default_factory=dict)
    birth_dates: dict[str, date] = field(default_factory=dict)
    infusions: dict[str, list[tuple[Moment, str]]] = field(default_factory=dict)  # (time, where it came from)
    measurements: list[tuple[str, Moment, str, float, str]] = field(default_factory=list)
    events: list[tuple[str, Moment, str, float | None]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    unknown: Counter = field(default_factory=Counter)  # (where, system, code, display) -> count
    examples: dict[tuple, str] = field(default_factory=dict)
    skipped: Counter = field(default_factory=Counter)  # reason -> count (e.g. "Observation status entered-in-error")
    codes: CodeMap = NO_MAP  # the site's own codes, read before the registry
    per_kg: dict[int, str] = field(default_factory=dict)  # index in events of a dose per kg -> where it came from

    def meaning(self, system: str | None, code: str | None, kinds: tuple[Kind, ...] | None = None) -> Meaning | None:
        """What a code means: the site's code map first, then the registry (``schema.codes``)."""
        return self.codes.meaning(system, code, kinds) or meaning(system, code, kinds)

    def patient(self, patient_id: str) -> dict[str, Any]:
        """The patient's contract fields, created on first mention."""
        return self.patients.setdefault(patient_id, {"patient_id": patient_id})

    def set_field(self, patient_id: str, column: str, value: Any, where: str) -> None:
        """Set a patient field once; a second, different value is a problem naming both."""
        fields = self.patient(patient_id)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return
        if column in fields and fields[column] != value:
            self.problems.append(
                Problem(
                    where,
                    column,
                    f"conflicts with an earlier value {fields[column]!r} for this patient",
                    patient_id=patient_id,
                    value=value,
                    csv=False,
                )
            )
            return
        fields[column] = value

    def add_infusion(self, patient_id: str, moment: Moment, product: str | None, where: str) -> None:
        """Record a CAR-T infusion (time zero) and, when named, its product."""
        self.infusions.setdefault(patient_id, []).append((moment, where))
        self.set_field(patient_id, "product", product, where)

    def add_unknown(self, where: str, system: str | None, code: str | None, display: str | None, example: str) -> None:
        """Count a code nobody maps (listed in the import report with one example)."""
        key = (where, system or "", code or "", display or "")
        self.unknown[key] += 1
        self.examples.setdefault(key, example)

    def problem(
        self, where: str, field_name: str, message: str, patient_id: str | None = None, value: Any = None
    ) -> None:
        """Record a problem found while reading (reported with the validation problems)."""
        self.problems.append(Problem(where, field_name, message, patient_id=patient_id, value=value, csv=False))


@dataclass(frozen=True)
class Imported:
    """An imported cohort: the raw contract tables, the validated ``Cohort`` and the import report."""

    tables: dict[str, pd.DataFrame]
    cohort: Cohort
    report: dict[str, Any]


def age_at(birth: date, infusion: date) -> float:
    """Age in years at infusion from a birth date (days / 365.25, to one decimal)."""
    return round((infusion - birth).days / DAYS_PER_YEAR, AGE_DECIMALS)


def _unknown_report(rows: SourceRows) -> list[dict[str, Any]]:
    return [
        {
            "where": where,
            "system": system,
            "code": code,
            "display": display,
            "count": count,
            "example": rows.examples[(where, system, code, display)],
        }
        for (where, system, code, display), count in rows.unknown.most_common()
    ]


MAX_NAMED = 200  # patients named in the report when left out (all of them in any export of a treating centre)


def _dose(rows: SourceRows, index: int, patient_id: str, value: float | None, problems: list[Problem]) -> float | None:
    """The dose in mg: a dose given per kg is multiplied by the patient's weight_kg (a problem when none)."""
    if index not in rows.per_kg or value is None:
        return value
    weight = rows.patients.get(patient_id, {}).get("weight_kg")
    if weight is None:
        problems.append(
            Problem(
                rows.per_kg[index],
                "dose",
                "a dose in mg/kg needs the patient's body weight (weight_kg, LOINC 29463-7) to be given in mg",
                patient_id=patient_id,
                value=value,
                csv=False,
            )
        )
        return None
    return value * float(weight)


def followup_to_last_record(tables: dict[str, pd.DataFrame]) -> int:
    """Set each blank followup_hours of an export to the patient's last record after infusion (never day 28 by
    default: an export ends where its data end); returns how many were set."""
    patients = tables["patients"]
    blank = patients["followup_hours"].isna()
    if not blank.any():
        return 0
    hours = pd.concat([tables[name][["patient_id", "hours_since_infusion"]] for name in ("measurements", "events")])
    last = hours.groupby("patient_id")["hours_since_infusion"].max().clip(lower=0).round(3)
    patients.loc[blank, "followup_hours"] = patients.loc[blank, "patient_id"].map(last).fillna(0.0)
    return int(blank.sum())


def raw_tables(
    rows: SourceRows, rule: TimeRule, every_patient: bool = False
) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    """The three raw contract tables (units as given) and the timing counts; problems raise, all at once.

    A patient with no CAR-T infusion in the source (an EHR export holds other patients too) is left out and
    counted in the report, with example ids; with ``every_patient`` (one patient's record) it is an error."""
    problems = list(rows.problems)
    starts: dict[str, datetime] = {}
    without = [p for p in rows.patients if not rows.infusions.get(p)]
    if without and (every_patient or len(without) == len(rows.patients)):
        problems.append(
            Problem(
                "infusion",
                "time",
                "no CAR-T infusion (a Procedure or drug record coded "
                "car_t_infusion or naming a product): nothing to place at time zero",
                patient_id=without[0],
                csv=False,
            )
        )
    for patient_id in rows.patients:
        found = rows.infusions.get(patient_id, [])
        if len(found) > 1:
            problems.append(
                Problem(
                    "infusion",
                    "time",
                    f"{len(found)} CAR-T infusions ({', '.join(w for _, w in found)}):"
                    " expected one per patient_id (give a second infusion its own patient_id)",
                    patient_id=patient_id,
                    csv=False,
                )
            )
            continue
        if not found:
            continue
        starts[patient_id] = infusion_start(found[0][0], rule)
        birth = rows.birth_dates.get(patient_id)
        if "age_years" not in rows.patients[patient_id] and birth is not None:
            rows.patients[patient_id]["age_years"] = age_at(birth, starts[patient_id].date())
    date_only = Counter(infusions=sum(not has_time(found[0][0]) for found in rows.infusions.values() if found))
    same_day: list[str] = []
    left_out: Counter = Counter()

    def place(patient_id: str, moment: Moment, lab: bool, table: str) -> float | None:
        if patient_id not in starts:
            if patient_id in without:
                left_out[table] += 1
            elif patient_id not in rows.patients:
                problems.append(
                    Problem(
                        table,
                        "patient_id",
                        "refers to no Patient/person in the source",
                        patient_id=patient_id,
                        csv=False,
                    )
                )
            return None
        if not has_time(moment):
            date_only[table] += 1
        try:
            return hours_since(moment, starts[patient_id], lab, rule)
        except SameDayUnspecified as error:
            same_day.append(patient_id)
            if len(same_day) == 1:
                problems.append(Problem(table, "time", str(error), patient_id=patient_id, csv=False))
        return None

    measurements = [
        (pid, hours, analyte, value, unit)
        for pid, moment, analyte, value, unit in rows.measurements
        if (hours := place(pid, moment, True, "measurements")) is not None
    ]
    events = [
        (pid, hours, event, _dose(rows, i, pid, value, problems))
        for i, (pid, moment, event, value) in enumerate(rows.events)
        if (hours := place(pid, moment, False, "events")) is not None
    ]
    if len(same_day) > 1:
        problems.append(
            Problem(
                "measurements",
                "time",
                f"{len(same_day)} date-only labs on an infusion day in all ({len(set(same_day))} patients)",
                csv=False,
            )
        )
    if problems:
        raise CohortValidationError(problems[:50], max(0, len(problems) - 50))
    tables = {
        "patients": pd.DataFrame([rows.patients[p] for p in starts], columns=[c.name for c in PATIENT_COLUMNS]),
        "measurements": pd.DataFrame(measurements, columns=[c.name for c in MEASUREMENT_COLUMNS]),
        "events": pd.DataFrame(events, columns=[c.name for c in EVENT_COLUMNS]),
    }
    report = {
        "date_only": {k: date_only[k] for k in ("infusions", "measurements", "events")},
        "without_infusion": {
            "patients": len(without),
            "examples": without[:MAX_NAMED],
            "measurements": left_out["measurements"],
            "events": left_out["events"],
        },
    }
    return tables, report


def assemble(rows: SourceRows, rule: TimeRule, source: dict[str, Any]) -> Imported:
    """Validate the rows as a cohort and build the import report (unknown codes, skipped rows, the time rule)."""
    try:
        tables, timing = raw_tables(rows, rule)
    except CohortValidationError as error:  # the unknown codes often explain the problems: shown first
        raise SourceImportError(error.problems, error.truncated, error.counts, _unknown_report(rows)) from None
    to_last = followup_to_last_record(tables)
    notes = (
        [
            f"patients: {to_last} infusion(s) with no stated follow-up: follow-up taken to end at the patient's "
            "last record in the export (not complete to day 28)"
        ]
        if to_last
        else []
    )
    report = {
        "imported_from": source,
        "time_rule": rule.to_metadata(),
        **timing,
        "notes": notes,
        "followup_to_last_record": to_last,
        "counts": {name: int(len(tables[name])) for name in TABLES},
        "unknown_codes": _unknown_report(rows),
        "skipped": dict(rows.skipped),
    }
    cohort = validate_tables(tables, csv={name: False for name in TABLES}, metadata=report)
    return Imported(tables, cohort, report)


def write_imported(imported: Imported, out_dir: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write the imported cohort as a contract folder (CSV, units as the source gave them) with cohort.json."""
    files = {f"{name}.csv": imported.tables[name] for name in TABLES}
    meta = json.dumps(imported.report, sort_keys=True, indent=1, default=str).encode()
    return write_tables(files, out_dir, {METADATA_FILE: meta}, overwrite=overwrite)


def as_record(imported_tables: dict[str, pd.DataFrame]) -> dict[str, Any]:
    """One patient's raw tables as the single-patient record ``crsrisk.predict`` reads."""
    patients = imported_tables["patients"]
    if len(patients) != 1:
        raise CohortValidationError(
            [Problem("patients", "patient_id", f"expected one patient, found {len(patients)}", csv=False)]
        )

    def plain(value: Any) -> Any:
        return None if value is None or (not isinstance(value, str) and pd.isna(value)) else value

    record: dict[str, Any] = {"patient": {k: plain(v) for k, v in patients.iloc[0].items()}}
    for name in ("measurements", "events"):
        record[name] = [
            {k: plain(v) for k, v in row.items() if k != "patient_id"}
            for row in imported_tables[name].to_dict("records")
        ]
    return record
