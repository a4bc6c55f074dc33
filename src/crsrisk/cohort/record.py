"""One patient's record (the cohort contract for a single infusion) validated into ``CohortArrays``.

The record is ``{"patient": {...patients fields...}, "measurements": [{...}], "events": [{...}]}``. A fast
path accepts records whose every value is plainly valid (numbers as numbers or decimal text, known names,
accepted units, values in range) in pure Python, in tens of microseconds. Anything else goes to the
table validator, which is the single authority on errors: it either accepts the record too, or raises the
``CohortValidationError`` naming every problem. Tests check that whatever the fast path accepts, the table
validator accepts with exactly the same canonical values. Both read the same declarations (``schema.tables``
columns, ``schema.kinds``, ``schema.rules``, ``schema.units``). A key the contract does not know, at any level, is
refused by name with the keys allowed there (a misspelt table would otherwise be scored as absent); ``now_hours``
is refused inside a record, pointing to the argument.
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
from crsrisk.errors import CohortValidationError, Problem, shown, unknown_key_message
from crsrisk.schema.analytes import ANALYTES
from crsrisk.schema.kinds import DECLINED
from crsrisk.schema.numbers import WHITESPACE
from crsrisk.schema.rules import COSTIM, EVENT_VALUE
from crsrisk.schema.tables import DEFAULTED, EVENT_COLUMNS, MEASUREMENT_COLUMNS, PATIENT_COLUMNS, Column
from crsrisk.schema.units import ACCEPTED_UNITS
from crsrisk.cohort.io import read_limited
from crsrisk.cohort.validate import validate_tables

_COLUMN = {c.name: c for c in (*MEASUREMENT_COLUMNS, *EVENT_COLUMNS)}
MAX_RECORD_BYTES = 50 * 1024 * 1024  # a patient JSON file larger than this is refused before it is read
_KEYS = MappingProxyType(
    {
        "patient": frozenset(c.name for c in PATIENT_COLUMNS),
        "measurements": frozenset(c.name for c in MEASUREMENT_COLUMNS),
        "events": frozenset(c.name for c in EVENT_COLUMNS),
    }
)


# Arguments given beside a record, never inside it (one record contract for the API, CLI, REST, page and pyfunc):
# a record that carries one is refused with a pointer to the argument, never read nor silently ignored.
ARGUMENT_NOT_IN_RECORD: Mapping[str, str] = MappingProxyType(
    {"now_hours": "not part of the record: give the hour beside the record, as the now_hours argument"}
)


class _NotPlain(Exception):
    """The fast path declines this record: the table validator decides."""


def _read(value: Any, column: Column) -> Any:
    """The value read by its column's kind (``schema.kinds``), or ``_NotPlain``."""
    read = column.kind.plain(value, column)
    if read is DECLINED:
        raise _NotPlain
    return read


def _patient(record: Mapping[str, Any]) -> dict[str, Any]:
    """The patient's fields by the same declarations as the table validator: kinds, ranges, rules, defaults."""
    values: dict[str, Any] = {}
    for column in PATIENT_COLUMNS:
        value = _read(record.get(column.name), column)
        if column.required and column.kind.missing(value):
            raise _NotPlain
        values[column.name] = value
    values[COSTIM.column], broken = COSTIM.fill(values[COSTIM.column], values[COSTIM.source])
    if broken is not None:
        raise _NotPlain
    for column in DEFAULTED:
        if column.kind.missing(values[column.name]):
            values[column.name] = column.default
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
    """A number of a required column: plain floats in range pass at once, anything else via the kind."""
    if type(value) is float and value - value == 0.0 and column.in_range(value):
        return value  # a finite float in range (inf - inf and nan - nan are nan)
    number = _read(value, column)
    if math.isnan(number):
        raise _NotPlain
    return number


# (analyte, unit) exactly as written -> analyte code, conversion, canonical range: one lookup per row
_UNIT_LOOKUP = MappingProxyType(
    {(u.analyte, u.unit): (ANALYTE_CODES[u.analyte], u.scale, u.offset, u.low, u.high) for u in ACCEPTED_UNITS}
)
_HOURS, _VALUE = _COLUMN["hours_since_infusion"], _COLUMN["value"]


def _measurement(row: Mapping[str, Any]) -> tuple[float, int, float]:
    hours = _finite(row["hours_since_infusion"], _HOURS)
    value = _finite(row["value"], _VALUE)
    name, unit = row["analyte"], row["unit"]
    found = _UNIT_LOOKUP.get((name, unit)) if type(name) is str and type(unit) is str else None
    if found is None:
        found = _UNIT_LOOKUP.get((_read(name, _COLUMN["analyte"]), _read(unit, _COLUMN["unit"])))
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
    code, scale, offset, low, high = _PAIR_TABLE[:, pairs]  # type: ignore[index]  # None was ruled out above
    canonical = value * scale + offset  # as UnitConversion.apply and the table validator compute it
    # Comparisons with NaN are False and the limits are finite: this also refuses NaN and infinity.
    if not (
        (hours_array >= _HOURS.low) & (hours_array <= _HOURS.high) & (canonical >= low) & (canonical <= high)  # type: ignore[operator]  # the hours column has both limits
    ).all():
        return None
    return Rows(
        np.zeros(len(rows), dtype=np.int64), hours_array, code.astype(np.int64), canonical, np.array([0, len(rows)])
    )


def _event(row: Mapping[str, Any]) -> tuple[float, int, float]:
    hours = _finite(row["hours_since_infusion"], _HOURS)
    kind = _read(row["event"], _COLUMN["event"])
    value = _read(row.get("value"), _VALUE)
    if kind is None or not EVENT_VALUE[kind].holds(value):
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
        measurements = _table(
            [_measurement(r) for r in _rows(rows, patient["patient_id"], "measurements", MEASUREMENT_COLUMNS)]
        )
    events = _table([_event(r) for r in _rows(data.get("events", []), patient["patient_id"], "events", EVENT_COLUMNS)])
    columns: dict[str, np.ndarray] = {c.name: np.array([patient[c.name]], dtype=c.kind.array) for c in PATIENT_COLUMNS}
    return CohortArrays(
        np.array([patient["patient_id"]], dtype=object), MappingProxyType(columns), measurements, events
    )


def _table(rows: list[tuple[float, int, float]]) -> Rows:
    """One patient's rows (patient code 0) as ``Rows``: already grouped, so no sort is needed."""
    hours, code, value = (np.array(c) for c in zip(*rows)) if rows else (np.empty(0), np.empty(0), np.empty(0))
    return Rows(
        np.zeros(len(rows), dtype=np.int64),
        hours.astype(np.float64),
        code.astype(np.int64),
        value.astype(np.float64),
        np.array([0, len(rows)]),
    )


def _unknown_keys(data: Mapping[str, Any]) -> list[Problem]:
    """Every key the record's contract does not know (a typo such as "measurement" would otherwise drop a
    whole table silently), each named with the keys expected there."""

    def unknown(where: str, mapping: Mapping[str, Any], allowed: Any, row: int | None = None) -> list[Problem]:
        return [
            Problem(
                where,
                shown(key) if not isinstance(key, str) else key,
                f"{ARGUMENT_NOT_IN_RECORD[key]}; {unknown_key_message(allowed)}"
                if key in ARGUMENT_NOT_IN_RECORD
                else unknown_key_message(allowed, key),
                row=row,
                csv=False,
            )
            for key in mapping
            if key not in allowed
        ]

    problems = unknown("record", data, _KEYS.keys())
    if isinstance(data.get("patient"), Mapping):
        problems += unknown("patients", data["patient"], _KEYS["patient"], row=1)
    for table in ("measurements", "events"):
        rows = data.get(table)
        if isinstance(rows, list):
            problems += [
                p
                for i, row in enumerate(rows, start=1)
                if isinstance(row, Mapping)
                for p in unknown(table, row, _KEYS[table], row=i)
            ]
    return problems


def refuse_unknown_keys(data: Mapping[str, Any]) -> None:
    """Raise the validation error naming every key the record contract does not know (``now_hours`` inside the
    record pointing to the argument), each with the keys allowed there; return when there is none."""
    problems = _unknown_keys(data)
    if problems:
        raise CohortValidationError(problems[:50], max(0, len(problems) - 50))


def _owner(record: Mapping[str, Any]) -> Any:
    """The patient's own id, which rows that name no patient belong to: text, an integer or blank."""
    owner = record.get("patient_id")
    if (
        owner is None
        or isinstance(owner, str)
        or (isinstance(owner, float) and math.isnan(owner))
        or (isinstance(owner, (int, np.integer)) and not isinstance(owner, (bool, np.bool_)))
    ):
        return owner
    raise CohortValidationError(
        [Problem("patients", "patient_id", "expected text (the infusion's id)", row=1, value=owner, csv=False)]
    )


def record_tables(data: Mapping[str, Any]) -> dict[str, pd.DataFrame]:
    """The record as the three raw contract tables: rows that name no patient belong to the record's patient,
    rows naming another are left for the validator to refuse; an unknown key anywhere is refused."""
    record = data.get("patient")
    if not isinstance(record, Mapping):
        raise CohortValidationError(
            [
                Problem(
                    "patient",
                    "patient",
                    "expected an object with the patients fields (patient_id, age_years, ...)",
                    value=record,
                )
            ]
        )
    refuse_unknown_keys(data)
    owner = _owner(record)
    tables = {"patients": pd.DataFrame([dict(record)], dtype=object)}  # values exactly as given
    for name, columns in (("measurements", MEASUREMENT_COLUMNS), ("events", EVENT_COLUMNS)):
        rows = data.get(name, [])
        if not isinstance(rows, list) or not all(isinstance(r, Mapping) for r in rows):
            raise CohortValidationError([Problem(name, name, "expected a list of objects", value=rows)])
        table = pd.DataFrame([dict(r) for r in rows], columns=None if rows else [c.name for c in columns], dtype=object)
        if "patient_id" not in table.columns:
            table.insert(0, "patient_id", pd.Series([owner] * len(table), index=table.index, dtype=object))
        else:
            table["patient_id"] = pd.Series(
                [
                    owner if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)) else v
                    for v in table["patient_id"].tolist()
                ],
                index=table.index,
                dtype=object,
            )
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
        raise CohortValidationError(
            [
                Problem(
                    "patient",
                    "<record>",
                    "expected a record (a mapping), JSON text or the path of a JSON file",
                    value=type(patient).__name__,
                )
            ]
        )
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
        return cohort_arrays(
            validate_tables(record_tables(data), csv={"patients": False, "measurements": False, "events": False})
        )


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
    return {
        "patient": patient,
        "measurements": [
            [h, analytes[c], v, ANALYTES[analytes[c]].unit]
            for h, c, v in zip(m.hours[m_order].tolist(), m.code[m_order].tolist(), m.value[m_order].tolist())
        ],
        "events": [
            [h, kinds[c], None if math.isnan(v) else v]
            for h, c, v in zip(e.hours[e_order].tolist(), e.code[e_order].tolist(), e.value[e_order].tolist())
        ],
    }
