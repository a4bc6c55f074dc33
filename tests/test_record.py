"""One patient's record: the fast validator accepts only what the table validator accepts, with the same values."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from crsrisk.cohort.validated import Cohort
from crsrisk.cohort.arrays import cohort_arrays
from crsrisk.errors import CohortValidationError
from crsrisk.cohort import record as R
from crsrisk.cohort.validate import validate_tables
from crsrisk.simulate import simulate_cohort
from fuzz_strategies import FUZZ
from fuzz_strategies import junk as junk_values
from tests_support import patient_record

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "patient.json"


@pytest.fixture(scope="module")
def records() -> list[dict]:
    sim = simulate_cohort(n=40, seed=8)
    cohort: Cohort = validate_tables({"patients": sim.patients, "measurements": sim.measurements, "events": sim.events})
    return [patient_record(cohort, pid) for pid in cohort.patients["patient_id"]]


def by_table_validator(record: dict) -> dict | CohortValidationError:
    """What the authoritative (table) validator makes of the record: its canonical form, or its error."""
    try:
        tables = R.record_tables(record)
        return R.canonical_record(cohort_arrays(validate_tables(tables, csv={name: False for name in tables})))
    except CohortValidationError as error:
        return error


def by_fast_path(record: dict) -> dict | None:
    try:
        return R.canonical_record(R._fast(record))
    except R._NotPlain:
        return None


def test_plain_records_take_the_fast_path_with_identical_values(records: list[dict]) -> None:
    for record in [*records, json.loads(EXAMPLE.read_text())]:
        fast = by_fast_path(record)
        assert fast is not None, record["patient"]["patient_id"]
        assert fast == by_table_validator(record)


def test_canonical_record_is_in_canonical_units_and_time_order() -> None:
    record = {
        "patient": {"patient_id": " P1 ", "age_years": "7", "product": "tisagenlecleucel", "prior_hsct": "yes"},
        "measurements": [
            {"hours_since_infusion": 30, "analyte": "crp", "value": 5, "unit": "mg/dL"},
            {"hours_since_infusion": 10, "analyte": "temperature", "value": 102.2, "unit": "degF"},
        ],
        "events": [{"hours_since_infusion": 20, "event": "tocilizumab"}],
    }
    canonical = R.canonical_record(R.validate_record(record))
    assert canonical["patient"]["patient_id"] == "P1" and canonical["patient"]["prior_hsct"] is True
    assert canonical["patient"]["costim_domain"] == "4-1BB" and canonical["patient"]["followup_hours"] == 672.0
    assert canonical["measurements"][0][:2] == [10.0, "temperature"]
    assert canonical["measurements"][0][2] == pytest.approx(39.0)
    assert canonical["measurements"][1] == [30.0, "crp", 50.0, "mg/L"]
    assert canonical["events"] == [[20.0, "tocilizumab", None]]


NUMBER_SPELLINGS = [
    lambda v: str(v),
    lambda v: f"  {v}  ",
    lambda v: f"{v:e}",
    lambda v: int(v) if v == int(v) else v,
    lambda v: np.float64(v),
    lambda v: True,
    lambda v: "nan",
    lambda v: None,
    lambda v: float("inf"),
    lambda v: "1_000",
    lambda v: [v],
    lambda v: -v - 1,
    lambda v: v * 1e9,
    lambda v: "",
    lambda v: "abc",
    # shapes the fast path must not coerce either (issue 14): huge integers, bytes, complex
    # numbers, non-ASCII digits and blanks, objects, numpy booleans
    lambda v: 10**400,
    lambda v: -(10**400),
    lambda v: 2**53 + 1,
    lambda v: str(v).encode(),
    lambda v: complex(v),
    lambda v: complex(v, 1),
    lambda v: "\u0661\u0662",
    lambda v: f"\u00a0{v}",
    lambda v: f"{v}\u2003",
    lambda v: {"value": v},
    lambda v: np.bool_(True),
    lambda v: f"\t{v}\n",
]
TEXT_SPELLINGS = [
    lambda t: f" {t} ",
    lambda t: t.upper(),
    lambda t: "",
    lambda t: None,
    lambda t: 3,
    lambda t: t + "x",
    lambda t: t,
    lambda t: [t],
    lambda t: {"name": t},
    lambda t: t + "\ud800",
    lambda t: True,
    lambda t: t.encode(),
    lambda t: 3.0,
    lambda t: f"\u00a0{t}",
    lambda t: f"\t{t}\r",
    lambda t: 10**400,
]


@st.composite
def mutated(draw, records: list[dict]) -> dict:
    """A real record with a few random changes of spelling, type, presence or value."""
    record = copy.deepcopy(draw(st.sampled_from(records)))
    for _ in range(draw(st.integers(1, 4))):
        where = draw(st.sampled_from(["patient", "measurements", "events", "owner", "unknown key"]))
        if where == "unknown key":
            place = draw(st.sampled_from([record, record["patient"]]))
            place[draw(st.sampled_from(["measurement", "event", "agee", "Patient_ID"]))] = 1
        elif where == "patient":
            key = draw(st.sampled_from(sorted(record["patient"])))
            value = record["patient"][key]
            if draw(st.booleans()):
                del record["patient"][key]
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                record["patient"][key] = draw(st.sampled_from(NUMBER_SPELLINGS))(value)
            elif isinstance(value, bool):
                record["patient"][key] = draw(st.sampled_from(["yes", "N", "1", 1, "maybe", None, np.bool_(value)]))
            elif isinstance(value, str):
                record["patient"][key] = draw(st.sampled_from(TEXT_SPELLINGS))(value)
        elif where == "owner":
            rows = record[draw(st.sampled_from(["measurements", "events"]))]
            owner = draw(st.sampled_from([record["patient"].get("patient_id"), "someone else", None, ["x"], 7]))
            for row in rows[: draw(st.integers(0, len(rows)))]:
                row["patient_id"] = owner
        elif record[where]:
            row = draw(st.sampled_from(record[where]))
            key = draw(st.sampled_from(sorted(row) + ["extra"]))
            value = row.get(key)
            if draw(st.booleans()) and key in row:
                del row[key]
            elif key == "unit":
                row[key] = draw(st.sampled_from(["ng/mL", "mg/dL", "degF", "U/L", "pg/mL", " pg/mL", "furlongs"]))
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                row[key] = draw(st.sampled_from(NUMBER_SPELLINGS + [lambda v: v + 0.5, lambda v: 0]))(value)
            elif isinstance(value, str):
                row[key] = draw(st.sampled_from(TEXT_SPELLINGS))(value)
            else:
                row[key] = draw(st.sampled_from([1.5, "x", None]))
    return record


@FUZZ
@given(data=st.data())
def test_fast_path_accepts_only_what_the_table_validator_accepts(records: list[dict], data: st.DataObject) -> None:
    """Differential: the fast path and the table validator read one set of declarations. Whenever the fast path
    accepts, the table validator accepts with the same canonical values; whenever the table validator refuses,
    the fast path must not have accepted; and validate_record answers exactly as the table validator does."""
    record = data.draw(mutated(records))
    authority = by_table_validator(record)
    fast = by_fast_path(record)
    refused = isinstance(authority, CohortValidationError)
    event(
        f"table validator {'refused' if refused else 'accepted'}; fast path {'declined' if fast is None else 'accepted'}"
    )
    if refused:
        assert fast is None, f"fast path accepted what the table validator refuses: {authority}"
    elif fast is not None:
        assert fast == authority
    try:
        answer = R.canonical_record(R.validate_record(record))
    except CohortValidationError as error:
        assert refused, f"validate_record refused what the table validator accepts: {error}"
        assert str(error) == str(authority)
    else:
        assert not refused, f"validate_record accepted what the table validator refuses: {authority}"
        assert answer == authority


@FUZZ
@given(junk=st.dictionaries(st.sampled_from(["patient", "measurements", "events", "other"]), junk_values, max_size=4))
def test_junk_records_get_the_validation_error_and_nothing_else(junk: dict) -> None:
    authority = by_table_validator(junk) if isinstance(junk.get("patient"), dict) else None
    try:
        answer = R.canonical_record(R.validate_record(junk))
    except CohortValidationError as error:
        event("junk refused")
        assert error.problems
        assert str(error).encode("utf-8")  # every refusal can be written as UTF-8 (lone surrogates escaped)
    else:
        event("junk accepted")
        assert answer == authority, "validate_record accepted junk the table validator does not accept alike"
