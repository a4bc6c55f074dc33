"""One prediction request served: the request body's shape, the call to ``crsrisk.predict``, and how refusals
read (every problem with its field and value), shared by the REST endpoint and the bedside page."""

from __future__ import annotations

import tempfile
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from crsrisk import scoring
from crsrisk.bundle.store import Bundle
from crsrisk.cohort.record import refuse_unknown_keys
from crsrisk.errors import CohortValidationError, Problem, unknown_key_message
from crsrisk.service.riskassessment import risk_assessment_bundle
from crsrisk.schema.arguments import parse_count, parse_flag, parse_hours
from crsrisk.sources.fhir import record_from_fhir
from crsrisk.util.outputs import json_ready
from crsrisk.scoring.audited import audit_patient
from crsrisk.scoring.patient import PredictionResult
from crsrisk.scoring.trajectory import Trajectory, risk_trajectory


class PredictRequest(BaseModel):
    """Exactly what ``crsrisk.predict`` takes: the patient record (the cohort contract for one infusion, or one
    patient's FHIR R4 Bundle in ``fhir_bundle``) and ``now_hours``; ``trajectory`` asks for the risk over time too,
    ``top`` keeps only the largest reasons."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "patient": {
                        "patient_id": "EXAMPLE-001",
                        "age_years": 3.1,
                        "product": "tisagenlecleucel",
                        "dose_1e6_cells_per_kg": 1.5,
                    },
                    "measurements": [{"hours_since_infusion": 12, "analyte": "il6", "value": 240, "unit": "pg/mL"}],
                    "events": [{"hours_since_infusion": 20, "event": "crs_grade", "value": 1}],
                    "now_hours": 40,
                }
            ]
        },
    )

    patient: dict[str, Any] | None = Field(None, description="the patients row of the contract (or give fhir_bundle)")
    fhir_bundle: dict[str, Any] | None = Field(
        None,
        description="instead of patient/measurements/events: one "
        "patient's FHIR R4 Bundle, read as crsrisk.predict reads it",
    )
    measurements: list[dict[str, Any]] = Field(default_factory=list)
    events: list[dict[str, Any]] = Field(default_factory=list)
    now_hours: float | None = Field(
        None,
        description="hours since infusion (default: the first whole hour after the latest "
        "measurement or event); given here beside the record, never inside it",
    )
    trajectory: bool = Field(
        False,
        description="also return the risk every 12 h and after each new measurement, "
        "up to now_hours (crsrisk.risk_trajectory)",
    )
    top: int | None = Field(None, description="keep only the largest contributions per task (default: all)")

    @field_validator("now_hours", "trajectory", "top", mode="before")
    @classmethod
    def _strict(cls, value: Any, info: Any) -> Any:
        """The arguments read by the same strict parsers as ``crsrisk.predict`` (schema/arguments.py): a boolean
        is not a number, only a boolean is a yes/no, a number out of range is refused by name."""
        parse: dict[str, Callable[[Any, str], Any]] = {
            "now_hours": parse_hours,
            "top": parse_count,
            "trajectory": parse_flag,
        }
        try:
            return parse[info.field_name](value, info.field_name)
        except CohortValidationError as error:
            raise PydanticCustomError("strict_argument", error.problems[0].message) from None

    @classmethod
    def for_record(cls, record: Mapping[str, Any], **arguments: Any) -> "PredictRequest":
        """A request for a record given whole (the page's pasted text): a FHIR Bundle, or the contract's record,
        whose keys are checked by the record contract first (``now_hours`` inside it is refused there)."""
        if record.get("resourceType") == "Bundle":
            return cls(fhir_bundle=dict(record), **arguments)
        refuse_unknown_keys(record)
        return cls(**record, **arguments)

    @model_validator(mode="after")
    def _one_source(self) -> "PredictRequest":
        if (self.patient is None) == (self.fhir_bundle is None):
            raise ValueError("give either patient (with measurements and events) or fhir_bundle")
        if self.fhir_bundle is not None and (self.measurements or self.events):
            raise ValueError("fhir_bundle carries its own measurements and events: give them there only")
        return self

    def record(self) -> dict[str, Any]:
        """The patient record alone, as ``crsrisk.predict`` reads it (a FHIR Bundle converted to it first)."""
        if self.fhir_bundle is not None:
            return record_from_fhir(self.fhir_bundle)
        return {"patient": self.patient, "measurements": self.measurements, "events": self.events}


def example_record_text() -> str:
    """The example patient shipped with the package (a copy of the repository's ``examples/patient.json``)."""
    return resources.files("crsrisk.service").joinpath("example_patient.json").read_text(encoding="utf-8")


def _plain(value: Any) -> Any:
    value = json_ready(value)
    return value if isinstance(value, (str, int, float, bool, type(None))) else str(value)[:200]


def problem_dicts(problems: list[Problem]) -> list[dict[str, Any]]:
    """Each problem as JSON: table, field, row, patient_id, value, message."""
    return [
        {
            "table": p.table,
            "field": p.field,
            "row": p.row,
            "patient_id": p.patient_id,
            "value": _plain(p.value),
            "message": p.message,
        }
        for p in problems
    ]


def request_problems(errors: Sequence[Mapping[str, Any]]) -> list[Problem]:
    """pydantic's errors on the request body, as the package's own problems (field path and value); an unknown
    key (only the prediction request forbids them) is named with the keys allowed."""
    return [
        Problem(
            "request",
            ".".join(str(part) for part in error["loc"] if part != "body") or "<body>",
            unknown_key_message(PredictRequest.model_fields, error["loc"][-1])
            if error["type"] == "extra_forbidden"
            else error["msg"],
            value=_plain(error.get("input")),
        )
        for error in errors
    ]


def refusal(error: CohortValidationError) -> dict[str, Any]:
    """The 422 body: the whole message and every problem."""
    return {"detail": str(error), "problems": problem_dicts(error.problems), "truncated": error.truncated}


def trajectory_png(points: Trajectory) -> bytes:
    """The trajectory's own plot (doses and grade changes marked) as PNG bytes."""
    with tempfile.TemporaryDirectory(prefix="crsrisk-trajectory-") as scratch:
        return points.plot(Path(scratch) / "trajectory.png").read_bytes()


def with_intervals(result: PredictionResult) -> dict[str, Any]:
    """``result.to_dict()`` with each prediction's ``probability_interval`` (``TaskPrediction.interval``: 95 %,
    over the calibrator's bootstrap refits; None when the bundle has none), as every service answer gives it."""
    document = result.to_dict()
    for p, prediction in zip(document["predictions"], result.predictions):
        p["probability_interval"] = prediction.interval()
    return document


def predict_document(
    bundle: Bundle, request: PredictRequest, audit: bool, audit_log: str | None
) -> tuple[dict[str, Any], Trajectory | None]:
    """``crsrisk.predict(...).to_dict()`` for the request (audited), plus, when asked for, the risk trajectory up
    to ``now_hours`` (``crsrisk.risk_trajectory``; its ``to_dict()`` goes into the document under ``trajectory``).
    Numbers are left as computed (NaN included): ``document_json`` and ``json_ready`` make them JSON."""
    record = request.record()
    result = scoring.predict(record, model=bundle, now_hours=request.now_hours, audit=False, top=request.top)
    document = with_intervals(result)
    points = None
    outputs = result.audit_outputs()
    if request.trajectory:
        points = risk_trajectory(record, model=bundle, until_hours=request.now_hours, audit=False)
        document["trajectory"] = points.to_dict()
        outputs += points.audit_outputs()
    if audit:  # one record per request, the trajectory's points included
        audit_patient(result.inputs, result.model, outputs, audit_log, result.now_hours)  # type: ignore[arg-type]  # predict sets inputs
    return document, points


def predict_fhir(bundle: Bundle, request: PredictRequest, audit: bool, audit_log: str | None) -> dict[str, Any]:
    """The request's prediction (audited as ``predict_document``) as a FHIR R4 Bundle of RiskAssessments."""
    patient = request.fhir_bundle if request.fhir_bundle is not None else request.record()
    result = scoring.predict(
        patient, model=bundle, now_hours=request.now_hours, audit=audit, audit_log=audit_log, top=request.top
    )
    return risk_assessment_bundle(result, patient)


def document_json(document: Any) -> bytes:
    """Strict JSON bytes of a document, as ``json_text(json_ready(...))`` reads them (NaN and infinity as null,
    numpy numbers plain, anything else as its text), without the pure-Python walk over ~700 reasons per answer."""
    options = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_SUBCLASS
    return orjson.dumps(document, option=options, default=_builtin)


def _builtin(value: Any) -> Any:
    """What orjson is given for what it does not write itself: a subclass of a builtin as that builtin (orjson
    would read a ``Reasons`` list's storage, missing the reasons not rendered yet), anything else as its text."""
    if isinstance(value, list):
        return list(value)
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, int):
        return int(value)
    return str.__str__(value) if isinstance(value, str) else str(value)
