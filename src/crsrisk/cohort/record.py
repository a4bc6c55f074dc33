"""One patient's record (the cohort contract for a single infusion) validated into ``CohortArrays``.

The record is ``{"patient": {...patients fields...}, "measurements": [{...}], "events": [{...}]}``. A fast
path accepts records whose every value is plainly valid (numbers as numbers or decimal text, known names,
accepted units, values in range) in pure Python, in tens of microseconds. Anything else goes to the
table validator, which is the single authority on errors: it either accepts the record too, or raises the
``CohortValidationError`` naming every problem. Tests check that whatever the fast path accepts, the table
validator accepts with exactly the same canonical values. A key the contract does not know, at any level, is
refused by name (a misspelt table would otherwise be scored as absent).
"""

from __future__ import annotations

import json
import math
import os
from operator import itemgetter
from types import MappingProxyType
from typing import Any, Mapping

import numpy as np
import pandas as pd

from crsrisk.cohort.arrays import ANALYTE_CODES, EVENT_CODES, CohortArrays, Rows, cohort_arrays
from crsrisk.errors import CohortValidationError, Problem, shown
from crsrisk.schema.analytes import ANALYTES
from crsrisk.schema.tables import (
    DEFAULT_DIAGNOSIS,
    DEFAULT_FOLLOWUP_HOURS,
    EVENT_COLUMNS,
    GRADE_EVENTS,
    GRADE_RANGE,
    MAX_DRUG_DOSE,
    MEASUREMENT_COLUMNS,
    PATIENT_COLUMNS,
    PRODUCT_COSTIM,
    Column,
)
from crsrisk.cohort.io import read_limited
from crsrisk.cohort.validate import FALSE_TEXT, TRUE_TEXT, WHITESPACE, encodable, parse_number, validate_tables

_COLUMN = {c.name: c for c in (*MEASUREMENT_COLUMNS, *EVENT_COLUMNS)}
MAX_RECORD_BYTES = 50 * 1024 * 1024  # a patient JSON file larger than this is refused before it is read
_KEYS = MappingProxyType({"patient": frozenset(c.name for c in PATIENT_COLUMNS),
                          "measurements": frozenset(c.name for c in MEASUREMENT_COLUMNS),
                          "events": frozenset(c.name for c in EVENT_COLUMNS)})


class _NotPlain(Exception):
    """The fast path declines this record: the table validator decides."""


def _blank(value: Any) -> bool:
    """None, NaN, pandas' NA or blank text: a missing value, as the table validator reads it."""
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)) or (
        isinstance(value, str) and not value.strip(WHITESPACE))


def _number(value: Any, column: Column) -> float:
    """A finite float within the column's range (parsed as the table validator parses it), or ``_NotPlain``;
    NaN when blank."""
    number = parse_number(value)
    if number is None:
        raise _NotPlain
    if math.isnan(number):
        return number
    if not math.isfinite(number) or (column.low is not None and not column.low <= number <= column.high):
        raise _NotPlain
    return number


def _text(value: Any, column: Column) -> str | None:
    """Stripped UTF-8 text (in the column's choices, when it has them), None when blank, else ``_NotPlain``."""
    if _blank(value):
        return None
    if not isinstance(value, str) or not encodable(value):
        raise _NotPlain
    text = value.strip(WHITESPACE)
    if column.choices and text not in column.choices:
        raise _NotPlain
    return text


def _boolean(value: Any) -> bool | None:
    if _blank(value):
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, str) and value.isascii():
        text = value.strip(WHITESPACE).lower()
        if text in TRUE_TEXT:
            return True
        if text in FALSE_TEXT:
            return False
    raise _NotPlain


def _patient(record: Mapping[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for column in PATIENT_COLUMNS:
        raw = record.get(column.name)
        if column.kind == "float":
            value = _number(raw, column)
            missing = math.isnan(value)
        else:
            value = _boolean(raw) if column.kind == "bool" else _text(raw, column)
            missing = value is None
        if missing and column.required:
            raise _NotPlain
        values[column.name] = value
    implied = PRODUCT_COSTIM.get(values["product"])
    if values["costim_domain"] is None:
        if values["product"] == "other":
            raise _NotPlain
        values["costim_domain"] = implied
    elif implied is not None and values["costim_domain"] != implied:
        raise _NotPlain
    if values["diagnosis"] is None:
        values["diagnosis"] = DEFAULT_DIAGNOSIS
    if math.isnan(values["followup_hours"]):
        values["followup_hours"] = DEFAULT_FOLLOWUP_HOURS
    return values


def _rows(rows: Any, patient_id: str, table: str, columns: tuple[Column, ...]) -> list[Mapping[str, Any]]:
    """The row dicts of one table, when each has every required column, no other key, and names no patient
    or this one."""
    if not isinstance(rows, list):
        raise _NotPlain
    required = {c.name for c in columns if c.required and c.name != "patient_id"}
    known = _KEYS[table]
    for row in rows:
        if type(row) is not dict or not row.keys() >= required or not row.keys() <= known:
            raise _NotPlain
        if "patient_id" in row:
            if not isinstance(row["patient_id"], str) or row["patient_id"].strip(WHITESPACE) != patient_id:
                raise _NotPlain
    return rows


def _finite(value: Any, column: Column) -> float:
    """A number of a required column: plain floats in range pass at once, anything else via ``_number``."""
    if type(value) is float and value - value == 0.0 and (column.low is None or column.low <= value <= column.high):
        return value  # a finite float in range (inf - inf and nan - nan are nan)
    number = _number(value, column)
    if math.isnan(number):
        raise _NotPlain
    return number


# (analyte, unit) exactly as written -> analyte code, conversion, canonical range: one lookup per row
_UNIT_LOOKUP = MappingProxyType({(name, unit): (ANALYTE_CODES[name], conversion.scale, conversion.offset,
                                                analyte.low, analyte.high)
                                 for name, analyte in ANALYTES.items()
                                 for unit, conversion in analyte.conversions.items()})
_HOURS, _VALUE = _COLUMN["hours_since_infusion"], _COLUMN["value"]


def _measurement(row: Mapping[str, Any]) -> tuple[float, int, float]:
    hours = _finite(row["hours_since_infusion"], _HOURS)
    value = _finite(row["value"], _VALUE)
    name, unit = row["analyte"], row["unit"]
    found = _UNIT_LOOKUP.get((name, unit)) if type(name) is str and type(unit) is str else None
    if found is None:
        found = _UNIT_LOOKUP.get((_text(name, _COLUMN["analyte"]), _text(unit, _COLUMN["unit"])))
        if found is None:
            raise _NotPlain
    code, scale, offset, low, high = found
    canonical = value * scale + offset  # as UnitConversion.apply and the table validator compute it
    if not low <= canonical <= high:
        raise _NotPlain
    return hours, code, canonical


_PAIR_INDEX = {pair: i for i, pair in enumerate(_UNIT_LOOKUP)}  # a plain dict: faster lookups than the proxy
_PAIR_TABLE = np.array(list(_UNIT_LOOKUP.values()), dtype=np.float64).T  # rows: code, scale, offset, low, high
_MEASUREMENT_FIELDS = itemgetter("hours_since_infusion", "analyte", "value", "unit")


def _bulk_measurements(rows: Any, patient_id: str) -> Rows | None:
    """The common case in a few C-level passes: plain dicts, numbers as int/float, names and units exactly as
    in the registry, everything finite and in range. None when any of that fails: the row-by-row path decides."""
    if type(rows) is not list or not rows or set(map(type, rows)) != {dict}:
        return None
    try:
        hours, names, values, units = zip(*map(_MEASUREMENT_FIELDS, rows))
        sizes = set(map(len, rows))
        if sizes != {4}:  # the four keys read above, and a fifth may only be the patient's own id
            owners = [row["patient_id"] for row in rows if len(row) == 5]
            if not sizes <= {4, 5} or set(map(type, owners)) != {str} or set(owners) != {patient_id}:
                return None
        if not set(map(type, hours)) | set(map(type, values)) <= {float, int}:
            return None
        pairs = list(map(_PAIR_INDEX.get, zip(names, units)))
        if None in pairs:
            return None
        hours_array, value = np.array(hours, dtype=np.float64), np.array(values, dtype=np.float64)
    except (KeyError, TypeError, OverflowError):  # a missing field, an unhashable name, an integer beyond float
        return None
    code, scale, offset, low, high = _PAIR_TABLE[:, pairs]
    canonical = value * scale + offset  # as UnitConversion.apply and the table validator compute it
    # Comparisons with NaN are False and the limits are finite: this also refuses NaN and infinity.
    if not ((hours_array >= _HOURS.low) & (hours_array <= _HOURS.high) & (canonical >= low) & (canonical <= high)).all():
        return None
    return Rows(np.zeros(len(rows), dtype=np.int64), hours_array, code.astype(np.int64), canonical,
                np.array([0, len(rows)]))


def _event(row: Mapping[str, Any]) -> tuple[float, int, float]:
    hours = _finite(row["hours_since_infusion"], _HOURS)
    kind = _text(row["event"], _COLUMN["event"])
    value = _number(row.get("value"), _VALUE)
    if kind is None:
        raise _NotPlain
    low, high = GRADE_RANGE
    if kind in GRADE_EVENTS:
        if math.isnan(value) or not low <= value <= high or value != round(value):
            raise _NotPlain
    elif not math.isnan(value) and not 0 < value <= MAX_DRUG_DOSE:
        raise _NotPlain
    return hours, EVENT_CODES[kind], value


def _fast(data: Mapping[str, Any]) -> CohortArrays:
    record = data.get("patient")
    if not isinstance(record, Mapping) or not data.keys() <= _KEYS.keys() or not record.keys() <= _KEYS["patient"]:
        raise _NotPlain
    patient = _patient(record)
    rows = data.get("measurements", [])
    measurements = _bulk_measurements(rows, patient["patient_id"])
    if measurements is None:
        measurements = _table([_measurement(r) for r in
                               _rows(rows, patient["patient_id"], "measurements", MEASUREMENT_COLUMNS)])
    events = _table([_event(r) for r in _rows(data.get("events", []), patient["patient_id"], "events", EVENT_COLUMNS)])
    columns = {c.name: (np.array([patient[c.name]], dtype=np.float64) if c.kind == "float"
                        else np.array([patient[c.name]], dtype=object)) for c in PATIENT_COLUMNS}
    return CohortArrays(np.array([patient["patient_id"]], dtype=object), MappingProxyType(columns),
                        measurements, events)


def _table(rows: list[tuple[float, int, float]]) -> Rows:
    """One patient's rows (patient code 0) as ``Rows``: already grouped, so no sort is needed."""
    hours, code, value = (np.array(c) for c in zip(*rows)) if rows else (np.empty(0), np.empty(0), np.empty(0))
    return Rows(np.zeros(len(rows), dtype=np.int64), hours.astype(np.float64), code.astype(np.int64),
                value.astype(np.float64), np.array([0, len(rows)]))


def _unknown_keys(data: Mapping[str, Any]) -> list[Problem]:
    """Every key the record's contract does not know (a typo such as "measurement" would otherwise drop a
    whole table silently), each named with the keys expected there."""
    def unknown(where: str, mapping: Mapping[str, Any], allowed: Any, row: int | None = None) -> list[Problem]:
        expected = f"unknown key; expected one of {sorted(allowed)}"
        return [Problem(where, shown(key) if not isinstance(key, str) else key, expected, row=row, csv=False)
                for key in mapping if key not in allowed]

    problems = unknown("record", data, _KEYS.keys())
    if isinstance(data.get("patient"), Mapping):
        problems += unknown("patients", data["patient"], _KEYS["patient"], row=1)
    for table in ("measurements", "events"):
        rows = data.get(table)
        if isinstance(rows, list):
            problems += [p for i, row in enumerate(rows, start=1) if isinstance(row, Mapping)
                         for p in unknown(table, row, _KEYS[table], row=i)]
    return problems


def _owner(record: Mapping[str, Any]) -> Any:
    """The patient's own id, which rows that name no patient belong to: text, an integer or blank."""
    owner = record.get("patient_id")
    if owner is None or isinstance(owner, str) or (isinstance(owner, float) and math.isnan(owner)) or (
            isinstance(owner, (int, np.integer)) and not isinstance(owner, (bool, np.bool_))):
        return owner
    raise CohortValidationError([Problem("patients", "patient_id", "expected text (the infusion's id)", row=1,
                                         value=owner, csv=False)])


def record_tables(data: Mapping[str, Any]) -> dict[str, pd.DataFrame]:
    """The record as the three raw contract tables: rows that name no patient belong to the record's patient,
    rows naming another are left for the validator to refuse; an unknown key anywhere is refused."""
    record = data.get("patient")
    if not isinstance(record, Mapping):
        raise CohortValidationError([Problem("patient", "patient", "expected an object with the patients fields "
                                             "(patient_id, age_years, ...)", value=record)])
    problems = _unknown_keys(data)
    if problems:
        raise CohortValidationError(problems[:50], max(0, len(problems) - 50))
    owner = _owner(record)
    tables = {"patients": pd.DataFrame([dict(record)], dtype=object)}  # values exactly as given
    for name, columns in (("measurements", MEASUREMENT_COLUMNS), ("events", EVENT_COLUMNS)):
        rows = data.get(name, [])
        if not isinstance(rows, list) or not all(isinstance(r, Mapping) for r in rows):
            raise CohortValidationError([Problem(name, name, "expected a list of objects", value=rows)])
        table = pd.DataFrame([dict(r) for r in rows], columns=None if rows else [c.name for c in columns],
                             dtype=object)
        if "patient_id" not in table.columns:
            table.insert(0, "patient_id", pd.Series([owner] * len(table), index=table.index, dtype=object))
        else:
            table["patient_id"] = pd.Series([owner if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))
                                             else v for v in table["patient_id"].tolist()], index=table.index,
                                            dtype=object)
        tables[name] = table
    return tables


def read_record(patient: Mapping[str, Any] | str | os.PathLike) -> Mapping[str, Any]:
    """A record given as a mapping, a JSON text (starting with ``{``), or the path of a JSON file (a regular
    file of at most ``MAX_RECORD_BYTES``; folders, FIFOs and devices are refused without being opened)."""
    if isinstance(patient, Mapping):
        return patient
    if isinstance(patient, str) and patient.lstrip(WHITESPACE).startswith(("{", "[")):
        text: str | bytes = patient
    elif isinstance(patient, (str, os.PathLike)):
        text = read_limited(patient, MAX_RECORD_BYTES, "patient")
    else:
        raise CohortValidationError([Problem("patient", "<record>", "expected a record (a mapping), JSON text or "
                                             "the path of a JSON file", value=type(patient).__name__)])
    try:
        data = json.loads(text)
    except RecursionError:
        raise CohortValidationError([Problem("patient", "<json>", "not valid JSON: nested too deeply")]) from None
    except ValueError as error:  # also text that is not UTF-8, and integers beyond Python's digit limit
        raise CohortValidationError([Problem("patient", "<json>", f"not valid JSON: {error}")]) from None
    if not isinstance(data, Mapping):
        raise CohortValidationError([Problem("patient", "<json>", "expected a JSON object")])
    return data


def validate_record(patient: Mapping[str, Any] | str | os.PathLike) -> CohortArrays:
    """Validate one patient record into one-patient ``CohortArrays``, or raise naming every problem."""
    data = read_record(patient)
    try:
        return _fast(data)
    except _NotPlain:
        return cohort_arrays(validate_tables(record_tables(data), csv={"patients": False, "measurements": False,
                                                                       "events": False}))


def parse_hours(value: Any, field: str = "now_hours") -> float | None:
    """A time argument such as ``predict``'s ``now_hours``: None when not given, else a number of hours after
    infusion, from 0 to the contract's last hour (parsed as every number of the contract), or the validation
    error naming ``field`` and the value."""
    if value is None:
        return None
    number = parse_number(value)
    if number is None or not 0 <= number <= _HOURS.high:  # also refuses NaN and infinity
        raise CohortValidationError([Problem("arguments", field, "expected a number of hours after infusion "
                                             f"from 0 to {_HOURS.high:g}", value=value)])
    return number


def _plain(value: Any) -> Any:
    value = value.item() if isinstance(value, np.generic) else value
    return None if isinstance(value, float) and math.isnan(value) else value


def canonical_record(arrays: CohortArrays) -> dict[str, Any]:
    """The validated record in canonical names and units, rows sorted (by time, then name, then value), as plain
    JSON data: the same for every spelling and row order of the same record. The audit log fingerprints it."""
    patient = {name: _plain(column[0]) for name, column in arrays.patients.items()}
    analytes, kinds = list(ANALYTE_CODES), list(EVENT_CODES)
    m, e = arrays.measurements, arrays.events
    m_order, e_order = np.lexsort((m.value, m.code, m.hours)), np.lexsort((e.value, e.code, e.hours))
    return {"patient": patient,
            "measurements": [[h, analytes[c], v, ANALYTES[analytes[c]].unit] for h, c, v in
                             zip(m.hours[m_order].tolist(), m.code[m_order].tolist(), m.value[m_order].tolist())],
            "events": [[h, kinds[c], None if math.isnan(v) else v] for h, c, v in
                       zip(e.hours[e_order].tolist(), e.code[e_order].tolist(), e.value[e_order].tolist())]}
