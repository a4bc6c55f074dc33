"""Fuzzing ``crsrisk.predict``: every input is either a sound prediction or a ``CohortValidationError`` naming the
problem; anything else (a crash, NaN, a probability outside [0, 1], SHAP that does not add up) fails.
Below the fuzz test, one named regression test per crash class the fuzzing found (issue 14)."""

from __future__ import annotations

import copy
import functools
import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from crsrisk.bundle.store import Bundle
from crsrisk.cohort.record import MAX_RECORD_BYTES, validate_record
from crsrisk.errors import CohortValidationError
from crsrisk.util.outputs import json_text
from crsrisk.scoring import load_model, predict
from fuzz_strategies import FUZZ, fhir_bundles, junk, records

EXAMPLE = json.loads(
    (Path(__file__).resolve().parents[1] / "examples" / "patient-course.json").read_text()
)  # every table


@functools.cache
def loaded(path: Path) -> Bundle:
    """The test bundle, loaded once; tests under @given take its path (hypothesis prints a failing example's
    arguments, and a path reads better than a whole bundle)."""
    return load_model(path)


@pytest.fixture
def bundle(small_bundle: Path) -> Bundle:
    return loaded(small_bundle)


def outcome(record: Any, bundle: Bundle, **options: Any) -> dict | CohortValidationError:
    """The documented result of a sound prediction, or the validation error; any other outcome raises."""
    try:
        result = predict(record, model=bundle, audit=False, **options)
    except CohortValidationError as error:
        assert error.problems and str(error)  # names something, and can be shown
        return error
    document = result.to_dict()
    for p in document["predictions"]:
        assert math.isfinite(p["probability"]) and 0.0 <= p["probability"] <= 1.0, p["probability"]
        total = p["base_value"] + sum(c["shap"] for c in p["contributions"])
        assert total == pytest.approx(p["raw_score"], abs=1e-4)
    json.loads(json_text(document), parse_constant=lambda name: pytest.fail(f"{name} in the JSON"))
    return document


@FUZZ
@given(record=records(), now=st.none() | st.floats(-100, 800) | junk)
def test_fuzz_predict_is_a_sound_prediction_or_a_named_refusal(small_bundle: Path, record: dict, now: Any) -> None:
    outcome(record, loaded(small_bundle), now_hours=now)


@FUZZ
@given(bundle_json=fhir_bundles)
def test_fuzz_predict_on_fhir_bundles_is_a_sound_prediction_or_a_named_refusal(
    small_bundle: Path, bundle_json: dict
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # unknown FHIR codes are warned about, by design
        outcome(bundle_json, loaded(small_bundle), now_hours=10)


@FUZZ
@given(record=records())
def test_fuzz_predict_from_json_text_answers_as_from_the_mapping(small_bundle: Path, record: dict) -> None:
    bundle = loaded(small_bundle)
    try:
        text = json.dumps(record)
    except (TypeError, ValueError):
        return  # not JSON-representable (bytes, complex, numpy, sets): only the mapping form exists
    from_text, from_mapping = outcome(text, bundle), outcome(record, bundle)
    assert type(from_text) is type(from_mapping)
    if isinstance(from_text, CohortValidationError):  # the same places (a numpy value's repr may differ)
        assert [(p.table, p.field, p.row) for p in from_text.problems] == [
            (p.table, p.field, p.row) for p in from_mapping.problems
        ]


def refusal(record: Any, bundle: Bundle, **options: Any) -> CohortValidationError:
    """The validation error ``predict`` gives for the record (it must give one)."""
    answer = outcome(record, bundle, **options)
    assert isinstance(answer, CohortValidationError), "accepted silently"
    return answer


def changed(path: tuple, value: Any) -> dict:
    record = copy.deepcopy(EXAMPLE)
    place = record
    for key in path[:-1]:
        place = place[key]
    place[path[-1]] = value
    return record


def names(error: CohortValidationError, field: str, shown: str | None = None) -> bool:
    return any(p.field == field and (shown is None or shown in str(p)) for p in error.problems)


@pytest.mark.parametrize(
    "path",
    [
        ("patient", "patient_id"),
        ("measurements", 0, "analyte"),
        ("measurements", 0, "unit"),
        ("measurements", 0, "patient_id"),
        ("events", 0, "event"),
        ("patient", "sex"),
    ],
)
@pytest.mark.parametrize("value", [["il6"], {"a": 1}])
def test_regression_list_or_object_as_text_is_named(bundle: Bundle, path: tuple, value: Any) -> None:
    """Was: ValueError (length mismatch) for a list patient_id, TypeError (unhashable) for a list analyte."""
    assert names(refusal(changed(path, value), bundle), path[-1])


@pytest.mark.parametrize(
    "path",
    [
        ("patient", "age_years"),
        ("patient", "weight_kg"),
        ("measurements", 0, "value"),
        ("measurements", 0, "hours_since_infusion"),
        ("events", 0, "value"),
        ("events", 0, "hours_since_infusion"),
    ],
)
def test_regression_integer_too_large_for_a_float_is_named(bundle: Bundle, path: tuple) -> None:
    """Was: OverflowError (int too large to convert to float)."""
    assert names(refusal(changed(path, 10**400), bundle), path[-1], "finite")


@pytest.mark.parametrize(
    "path",
    [
        ("patient", "patient_id"),
        ("patient", "sex"),
        ("patient", "center"),
        ("measurements", 0, "analyte"),
        ("measurements", 0, "unit"),
    ],
)
def test_regression_lone_surrogate_is_named(bundle: Bundle, path: tuple) -> None:
    """Was: UnicodeEncodeError from pyarrow, or a patient id the audit log could not write."""
    assert names(refusal(changed(path, "a\ud800"), bundle), path[-1], "\\ud800")


@pytest.mark.parametrize("value", [True, 1j, b"7", "\u0661\u0662", "\uff17", "1_000", "nan", [7], "0x10"])
@pytest.mark.parametrize("path", [("patient", "age_years"), ("measurements", 0, "value")])
def test_regression_numbers_are_never_coerced(bundle: Bundle, path: tuple, value: Any) -> None:
    """Was: silently accepted (True as 1, 1j as 0, b'7' and Arabic-Indic digits as numbers)."""
    assert names(refusal(changed(path, value), bundle), path[-1])
    with pytest.raises(CohortValidationError):
        validate_record(changed(path, value))


@pytest.mark.parametrize("value", ["abc", [40], {}, 10**400, math.nan, math.inf, True, 1j, "1e999", 10**6, -1])
def test_regression_non_numeric_now_hours_is_named(bundle: Bundle, value: Any) -> None:
    """Was: ValueError/TypeError/OverflowError from float(now_hours); NaN scored silently."""
    assert names(refusal(EXAMPLE, bundle, now_hours=value), "now_hours")


def test_now_hours_as_decimal_text_is_a_number(bundle: Bundle) -> None:
    assert outcome(EXAMPLE, bundle, now_hours=" 40 ") == outcome(EXAMPLE, bundle, now_hours=40.0)


@pytest.mark.parametrize(
    "where, key",
    [
        ((), "measurement"),
        ((), "Events"),
        (("patient",), "agee"),
        (("measurements", 0), "units"),
        (("events", 0), "dose"),
    ],
)
def test_regression_unknown_key_is_refused_naming_it(bundle: Bundle, where: tuple, key: str) -> None:
    """Was: scored silently, e.g. without any labs when "measurements" was spelled "measurement"."""
    record = copy.deepcopy(EXAMPLE)
    place = record
    for step in where:
        place = place[step]
    place[key] = place.pop("measurements") if key == "measurement" else 1
    error = refusal(record, bundle)
    assert names(error, key, "expected one of")


def test_regression_rows_naming_the_patient_itself_are_accepted(bundle: Bundle) -> None:
    """Was: a refusal ("a value is required") when only some rows carried the patient's own id."""
    record = copy.deepcopy(EXAMPLE)
    record["measurements"][0]["patient_id"] = record["patient"]["patient_id"]
    record["events"][-1]["patient_id"] = None
    accepted = outcome(record, bundle, now_hours=10)
    assert accepted == outcome(EXAMPLE, bundle, now_hours=10) and accepted["predictions"]


def test_a_row_naming_another_patient_is_named(bundle: Bundle) -> None:
    error = refusal(changed(("measurements", 3, "patient_id"), "SOMEONE-ELSE"), bundle)
    assert names(error, "patient_id", "SOMEONE-ELSE") and error.problems[0].row == 4


def test_integer_patient_id_is_text(bundle: Bundle, tmp_path: Path) -> None:
    """An id written as a JSON number is read as its digits, also in the audit log."""
    result = predict(
        changed(("patient", "patient_id"), 1234), model=bundle, now_hours=10, audit_log=tmp_path / "log.jsonl"
    )
    assert result.predictions


def test_regression_deeply_nested_json_text_is_named(bundle: Bundle) -> None:
    """Was: RecursionError from the JSON parser."""
    assert names(refusal('{"patient": ' + "[" * 100_000, bundle), "<json>", "nested too deeply")


def test_deeply_nested_value_is_named_briefly(bundle: Bundle) -> None:
    value: Any = 1
    for _ in range(5000):
        value = [value]
    error = refusal(changed(("patient", "age_years"), value), bundle)
    assert names(error, "age_years") and len(str(error)) < 1000


@pytest.mark.parametrize("kind", ["folder", "fifo", "device", "too long", "too large", "missing", "nul"])
def test_regression_paths_that_are_not_json_files_are_named_without_blocking(
    bundle: Bundle, tmp_path: Path, kind: str
) -> None:
    """Was: a FIFO blocked the read forever, an over-long path raised OSError, any size was read."""
    import os

    path = {
        "folder": tmp_path,
        "device": Path("/dev/zero"),
        "too long": tmp_path / ("a" * 5000),
        "missing": tmp_path / "none.json",
        "nul": "pat\x00ient.json",
    }.get(kind, tmp_path / "p.json")
    if kind == "fifo":
        os.mkfifo(path)
    if kind == "too large":
        with open(path, "wb") as handle:
            handle.truncate(MAX_RECORD_BYTES + 1)  # sparse: nothing is written, and nothing may be read
    error = refusal(path, bundle)
    assert names(error, "<file>")


def test_regression_feature_beyond_float32_range_is_scored(bundle: Bundle) -> None:
    """Was: XGBoostError ("Input data contains inf") for an IL-6/sgp130 ratio over a near-zero sgp130."""
    record = {
        "patient": {"patient_id": "P1", "age_years": 5},
        "measurements": [
            {"hours_since_infusion": 1, "analyte": "il6", "value": 1, "unit": "pg/mL"},
            {"hours_since_infusion": 1, "analyte": "sgp130", "value": 4e-203, "unit": "pg/mL"},
        ],
    }
    document = outcome(record, bundle, now_hours=40)
    ratio = [c for p in document["predictions"] for c in p["contributions"] if c["feature"] == "il6_sgp130_ratio"]
    assert document["predictions"] and ratio and ratio[0]["value"] == float(np.finfo(np.float32).max)


@pytest.mark.parametrize("entry", [5, "x", {"resource": {}}, True])
def test_regression_fhir_bundle_entry_that_is_not_a_list_is_named(bundle: Bundle, entry: Any) -> None:
    """Was: TypeError ('int' object is not iterable) for a Bundle whose "entry" is not a list."""
    assert names(refusal({"resourceType": "Bundle", "entry": entry}, bundle), "entry")
