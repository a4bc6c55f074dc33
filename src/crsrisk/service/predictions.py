"""One prediction request served: the request body's shape, the call to ``crsrisk.predict``, and how refusals
read (every problem with its field and value), shared by the REST endpoint and the bedside page."""

from __future__ import annotations

import inspect
import io
from importlib import resources
from typing import Any, Mapping

from pydantic import BaseModel, ConfigDict, Field

from crsrisk import scoring
from crsrisk.bundle.store import Bundle
from crsrisk.errors import CohortValidationError, Problem
from crsrisk.training.artifacts import json_ready


class PredictRequest(BaseModel):
    """Exactly what ``crsrisk.predict`` takes: the patient record (the cohort contract for one infusion) and
    ``now_hours``; ``trajectory`` asks for the risk over time too, ``top`` keeps only the largest reasons."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "patient": {"patient_id": "EXAMPLE-001", "age_years": 3.1, "product": "tisagenlecleucel",
                    "dose_1e6_cells_per_kg": 1.5},
        "measurements": [{"hours_since_infusion": 12, "analyte": "il6", "value": 240, "unit": "pg/mL"}],
        "events": [{"hours_since_infusion": 20, "event": "crs_grade", "value": 1}], "now_hours": 40}]})

    patient: dict[str, Any]
    measurements: list[dict[str, Any]] = Field(default_factory=list)
    events: list[dict[str, Any]] = Field(default_factory=list)
    now_hours: float | None = Field(None, allow_inf_nan=False, description="hours since infusion (default: the "
                                    "latest measurement or event)")
    trajectory: bool = Field(False, description="also return the risk trajectory, where the model offers one")
    top: int | None = Field(None, ge=1, description="keep only the largest contributions per task (default: all)")

    def record(self) -> dict[str, Any]:
        """The patient record alone, as ``crsrisk.predict`` reads it."""
        return {"patient": self.patient, "measurements": self.measurements, "events": self.events}


def example_record_text() -> str:
    """The example patient shipped with the package (a copy of the repository's ``examples/patient.json``)."""
    return resources.files("crsrisk.service").joinpath("example_patient.json").read_text(encoding="utf-8")


def _plain(value: Any) -> Any:
    value = json_ready(value)
    return value if isinstance(value, (str, int, float, bool, type(None))) else str(value)[:200]


def problem_dicts(problems: list[Problem]) -> list[dict[str, Any]]:
    """Each problem as JSON: table, field, row, patient_id, value, message."""
    return [{"table": p.table, "field": p.field, "row": p.row, "patient_id": p.patient_id, "value": _plain(p.value),
             "message": p.message} for p in problems]


def request_problems(errors: list[Mapping[str, Any]]) -> list[Problem]:
    """pydantic's errors on the request body, as the package's own problems (field path and value)."""
    return [Problem("request", ".".join(str(part) for part in error["loc"] if part != "body") or "<body>",
                    error["msg"], value=_plain(error.get("input"))) for error in errors]


def refusal(error: CohortValidationError) -> dict[str, Any]:
    """The 422 body: the whole message and every problem."""
    return {"detail": str(error), "problems": problem_dicts(error.problems), "truncated": error.truncated}


def trajectory_available() -> bool:
    """Whether this version of crsrisk computes risk trajectories (``crsrisk.scoring.risk_trajectory``)."""
    return hasattr(scoring, "risk_trajectory")


def trajectory(record: Mapping[str, Any], bundle: Bundle, now_hours: float | None) -> Any | None:
    """The patient's risk over time from ``crsrisk.scoring.risk_trajectory`` when it exists, else None."""
    if not trajectory_available():
        return None
    function = scoring.risk_trajectory
    options = {"now_hours": now_hours} if "now_hours" in inspect.signature(function).parameters else {}
    return function(record, model=bundle, **options)


def trajectory_png(points: Any) -> bytes | None:
    """The trajectory's own plot as PNG bytes (``to_png()``, or ``plot()`` giving bytes or a Figure), if any."""
    for name in ("to_png", "png", "plot"):
        method = getattr(points, name, None)
        if callable(method):
            made = method()
            if isinstance(made, bytes):
                return made
            if hasattr(made, "savefig"):
                buffer = io.BytesIO()
                made.savefig(buffer, format="png", bbox_inches="tight")
                return buffer.getvalue()
    return None


def with_intervals(document: dict[str, Any], bundle: Bundle) -> dict[str, Any]:
    """Each prediction's ``probability_interval`` (95 %, over the calibrator's bootstrap refits; None when the
    bundle has none), unless ``predict`` already states it."""
    for p in document["predictions"]:
        if "probability_interval" not in p:
            model = bundle.models.get(p.get("model_key") or f"{p['task']}__{p['landmark']}")
            p["probability_interval"] = None if model is None else model.calibrator.interval(p["raw_score"])
    return document


def predict_document(bundle: Bundle, request: PredictRequest, audit: bool,
                     audit_log: str | None) -> tuple[dict[str, Any], Any | None]:
    """``crsrisk.predict(...).to_dict()`` for the request (audited), plus the trajectory object when asked for;
    the trajectory's ``to_dict()`` goes into the document under ``trajectory``."""
    record = request.record()
    result = scoring.predict(record, model=bundle, now_hours=request.now_hours, audit=audit, audit_log=audit_log,
                             top=request.top)
    document = with_intervals(result.to_dict(), bundle)
    points = None
    if request.trajectory:
        points = trajectory(record, bundle, request.now_hours)
        document["trajectory"] = None if points is None else points.to_dict()
    return json_ready(document), points
