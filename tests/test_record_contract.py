"""One record contract: ``now_hours`` is an argument beside the record, never inside it; the arguments beside a
record are read by one set of strict parsers in the library and the REST request model; refusals are encodable."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

import crsrisk
from crsrisk.cohort.record import validate_record
from crsrisk.errors import CohortValidationError, Problem, shown
from crsrisk.schema.arguments import parse_count, parse_flag, parse_hours
from crsrisk.service.predictions import PredictRequest

EXAMPLE = json.loads((Path(__file__).resolve().parents[1] / "examples" / "patient.json").read_text())


def _with_now(where: str) -> dict[str, Any]:
    record = copy.deepcopy(EXAMPLE)
    (record if where == "record" else record["patient"])["now_hours"] = 40
    return record


@pytest.mark.parametrize("where", ["record", "patient"])
def test_regression_now_hours_in_record_refused_by_the_validator_pointing_to_the_argument(where: str) -> None:
    with pytest.raises(CohortValidationError) as caught:
        validate_record(_with_now(where))
    (problem,) = caught.value.problems
    assert problem.field == "now_hours"
    assert "now_hours argument" in problem.message and "expected one of" in problem.message
    assert ("'measurements'" if where == "record" else "'age_years'") in problem.message  # the keys allowed there


def test_regression_now_hours_in_record_refused_by_predict(small_bundle: Path) -> None:
    with pytest.raises(CohortValidationError, match="now_hours argument"):
        crsrisk.predict(_with_now("record"), model=small_bundle, audit=False)
    assert crsrisk.predict(EXAMPLE, model=small_bundle, now_hours=40, audit=False).now_hours == 40.0


def test_regression_now_hours_in_record_refused_by_the_rest_request_model() -> None:
    with pytest.raises(CohortValidationError, match="now_hours argument"):
        PredictRequest.for_record(_with_now("record"), now_hours=None, trajectory=True)
    request = PredictRequest.for_record(EXAMPLE, now_hours="40", trajectory=True)
    assert request.now_hours == 40.0 and request.trajectory is True


@pytest.mark.parametrize(
    "field, value",
    [
        ("now_hours", True),
        ("now_hours", False),
        ("top", True),
        ("trajectory", "yes"),
        ("trajectory", 1),
        ("now_hours", 1e400),
        ("now_hours", 10**400),
        ("top", 10**40),
        ("top", 2.5),
        ("top", 0),
    ],
)
def test_regression_rest_body_refuses_booleans_for_numbers_and_non_booleans_for_flags(field: str, value: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        PredictRequest(patient=EXAMPLE["patient"], **{field: value})
    (error,) = caught.value.errors()
    assert error["loc"] == (field,) and error["type"] == "strict_argument"


@pytest.mark.parametrize(
    "call",
    [
        lambda: parse_hours(True),
        lambda: parse_hours(float("nan")),
        lambda: parse_count(True, "top"),
        lambda: parse_count("3.5", "top"),
        lambda: parse_flag("yes", "trajectory"),
        lambda: parse_flag(0, "trajectory"),
    ],
)
def test_regression_strict_arguments_refuse_booleans_and_text_by_name(call: Any) -> None:
    with pytest.raises(CohortValidationError) as caught:
        call()
    assert caught.value.problems[0].table == "arguments"


def test_strict_arguments_read_what_they_should() -> None:
    assert parse_hours(" 12.5 ") == 12.5 and parse_hours(None) is None
    assert parse_count(3, "top") == 3 and parse_count("4", "top") == 4 and parse_count(5.0, "top") == 5
    assert parse_flag(True, "trajectory") is True and parse_flag(None, "trajectory") is False


def test_regression_predict_refuses_boolean_top(small_bundle: Path) -> None:
    with pytest.raises(CohortValidationError, match="'top'"):
        crsrisk.predict(EXAMPLE, model=small_bundle, top=True, audit=False)


def test_regression_lone_surrogate_in_problem_text_is_escaped() -> None:
    problem = Problem("patients", "\ud800key", "bad \udfff", patient_id="P\ud800", value="\ud800")
    text = str(problem)
    text.encode("utf-8")  # raises UnicodeEncodeError if a lone surrogate is left
    assert "\\ud800key" in problem.field and "\\udfff" in problem.message and "\\ud800" in text
    assert shown("\ud800").encode("utf-8")


def test_regression_lone_surrogate_key_in_record_gives_an_encodable_refusal() -> None:
    record = copy.deepcopy(EXAMPLE)
    record["patient"]["\ud800"] = 1
    with pytest.raises(CohortValidationError) as caught:
        validate_record(record)
    str(caught.value).encode("utf-8")
    assert all(p.field.encode("utf-8") and p.message.encode("utf-8") for p in caught.value.problems)
