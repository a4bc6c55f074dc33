"""Hypothesis strategies over the whole patient record: every field, right and wrong types, extreme numbers,
unicode (lone surrogates included), nested junk, unknown keys. Shared by the fuzz tests and tests/test_record.py.

Budget: the hypothesis profile loaded by tests/conftest.py (``CRSRISK_FUZZ_PROFILE``: ``ci`` by default, 150
examples per fuzz test or ``CRSRISK_FUZZ_EXAMPLES``; ``long`` for a campaign of 20,000). ``FUZZ`` takes the
profile's budget and settings as they stand when this module is imported, after conftest loaded the profile.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st

from crsrisk.schema.analytes import ANALYTES
from crsrisk.schema.kinds import NUMBER, TRUTH
from crsrisk.schema.tables import EVENT_KINDS, PATIENT_COLUMNS

FUZZ = settings()  # the loaded profile (tests/conftest.py)

# Any text, lone surrogate halves included (st.text leaves them out by default).
any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=12)
# Spellings a number can take, right and wrong: only ASCII decimal text is a number in the contract.
number_text = st.sampled_from(
    [
        "7",
        " 7 ",
        "+7",
        "-0",
        "7.",
        ".5",
        "7e1",
        "1E-3",
        "1_000",
        "0x10",
        "\u0661\u0662",
        "\uff17",
        "7\u00a0",
        "nan",
        "NaN",
        "inf",
        "-Infinity",
        "1e999",
        "",
        "  ",
        "7,5",
        "7 5",
        "1" * 400,
    ]
)
extreme_numbers = st.sampled_from(
    [0, -1, 2**53 + 1, 2**63, 2**64, 10**400, -(10**400), 1e308, -1e308, 5e-324, math.nan, math.inf, -math.inf, -0.0]
)
not_json = st.sampled_from(
    [
        b"7",
        bytearray(b"7"),
        1j,
        complex(7, 0),
        np.float64(7),
        np.int64(7),
        np.bool_(True),
        np.array([1.0]),
        (7,),
        {7},
        object(),
    ]
)
scalars = st.none() | st.booleans() | st.integers() | st.floats() | any_text | number_text | extreme_numbers
junk = (
    st.recursive(
        scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(any_text, inner, max_size=3), max_leaves=8
    )
    | not_json
)

_UNITS = [(name, unit) for name, analyte in ANALYTES.items() for unit in analyte.conversions]
_CHOICES = {c.name: c.choices for c in PATIENT_COLUMNS if c.choices}


def _valid_patient_value(draw: st.DrawFn, column: Any) -> Any:
    if column.name == "patient_id":
        return draw(st.sampled_from(["P1", "EXAMPLE-001", " p 2 ", "\u00e9l\u00e8ve-3", "7"]))
    if column.kind is NUMBER:
        low, high = column.low, column.high
        number = draw(st.floats(low, min(high, 1e4)))
        return draw(st.sampled_from([number, repr(number), int(number)]))
    if column.kind is TRUTH:
        return draw(st.sampled_from([True, False, "yes", "no", "1", "0", "TRUE", None]))
    if column.name == "costim_domain":
        return None  # derived from the product: a random one would contradict it
    if column.choices:
        return draw(st.sampled_from(list(column.choices)))
    return draw(st.sampled_from(["C1", "centre 2", None]))


@st.composite
def measurement_rows(draw: st.DrawFn) -> dict[str, Any]:
    """A plausible measurement: a registry analyte and unit, a small value, an hour in the first days."""
    name, unit = draw(st.sampled_from(_UNITS))
    low, high = ANALYTES[name].low, ANALYTES[name].high
    conversion = ANALYTES[name].conversions[unit]
    value = (draw(st.floats(low, min(high, 1e5))) - conversion.offset) / conversion.scale
    return {
        "hours_since_infusion": draw(st.floats(-48, 200).map(lambda h: round(h, 2))),
        "analyte": name,
        "value": value,
        "unit": unit,
    }


@st.composite
def event_rows(draw: st.DrawFn) -> dict[str, Any]:
    """A grade change or a dose."""
    kind = draw(st.sampled_from(EVENT_KINDS))
    value = draw(st.integers(0, 4)) if kind.endswith("_grade") else draw(st.none() | st.floats(1, 800))
    return {"hours_since_infusion": draw(st.floats(0, 200).map(lambda h: round(h, 2))), "event": kind, "value": value}


@st.composite
def valid_records(draw: st.DrawFn) -> dict[str, Any]:
    """A record the contract accepts (random fields present or absent, numbers as numbers or text)."""
    patient = {}
    for column in PATIENT_COLUMNS:
        if column.required or draw(st.booleans()):
            patient[column.name] = _valid_patient_value(draw, column)
    if patient.get("product") == "other":
        patient["costim_domain"] = draw(st.sampled_from(["4-1BB", "CD28"]))
    record = {"patient": patient, "measurements": draw(st.lists(measurement_rows(), max_size=25))}
    if draw(st.booleans()):
        record["events"] = draw(st.lists(event_rows(), max_size=6))
    return record


@st.composite
def records(draw: st.DrawFn) -> dict[str, Any]:
    """A valid record with up to four random breakages anywhere in its shape: a junk value in any field (the
    patient's, a row's, a row's patient_id), a table or the patient replaced by junk, an unknown key at any
    level, a row naming the patient itself or someone else."""
    record = draw(valid_records())
    for _ in range(draw(st.integers(0, 4))):
        where = draw(st.sampled_from(["patient", "measurements", "events", "table", "top key", "owner"]))
        if where == "patient" and isinstance(record.get("patient"), dict):
            key = draw(st.sampled_from([c.name for c in PATIENT_COLUMNS] + ["agee"]))
            record["patient"][key] = draw(junk)
        elif (
            where in ("measurements", "events")
            and isinstance(record.get(where), list)
            and any(isinstance(row, dict) for row in record[where])
        ):
            row = draw(st.sampled_from([row for row in record[where] if isinstance(row, dict)]))
            key = draw(st.sampled_from(sorted(row) + ["patient_id", "extra"]))
            row[key] = draw(junk)
        elif where == "table":
            record[draw(st.sampled_from(["patient", "measurements", "events"]))] = draw(junk)
        elif where == "top key":
            record[draw(st.sampled_from(["measurement", "event", "Patient"]) | any_text)] = draw(junk)
        elif where == "owner" and isinstance(record.get("patient"), dict):
            rows = record.get(draw(st.sampled_from(["measurements", "events"])))
            owner = draw(st.sampled_from([record["patient"].get("patient_id"), "someone else", None]))
            for row in (rows if isinstance(rows, list) else [])[: draw(st.integers(0, 5))]:
                if isinstance(row, dict):
                    row["patient_id"] = owner
    return record


_FHIR_TYPES = st.sampled_from(
    ["Patient", "Observation", "Procedure", "MedicationAdministration", "Condition", "Medication", "Encounter"]
)
fhir_resources = st.fixed_dictionaries(
    {"resourceType": _FHIR_TYPES},
    optional={
        "id": junk | st.just("p1"),
        "status": junk | st.just("final"),
        "subject": junk | st.just({"reference": "Patient/p1"}),
        "code": junk,
        "valueQuantity": junk | st.fixed_dictionaries({"value": scalars, "unit": any_text}),
        "effectiveDateTime": junk | st.just("2024-01-01T10:00:00Z"),
        "birthDate": junk | st.just("2015-01-01"),
    },
)
# What ``crsrisk.predict`` reads as a FHIR Bundle: entries of junk or of loosely shaped resources.
fhir_bundles = st.fixed_dictionaries(
    {"resourceType": st.just("Bundle")},
    optional={
        "type": junk,
        "entry": junk
        | st.lists(
            junk | st.fixed_dictionaries({}, optional={"resource": fhir_resources, "fullUrl": junk}), max_size=4
        ),
    },
)
