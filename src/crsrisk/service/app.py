"""The FastAPI app: ``POST /predict`` (the patient record in, ``crsrisk.predict(...).to_dict()`` out, audited),
``GET /health``, ``GET /model``, the bedside page at ``/`` and OpenAPI docs at ``/docs`` and ``/redoc`` (their
scripts served from the package, not a CDN: a hospital network may reach nothing outside)."""

from __future__ import annotations

import json
import os
import threading
from typing import Any
from urllib.parse import parse_qs

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi_offline import FastAPIOffline
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from pydantic import ValidationError

import crsrisk
from crsrisk.bundle.store import Bundle
from crsrisk.errors import CohortValidationError, Problem
from crsrisk.scoring.load import load_model
from crsrisk.service.guard import MAX_BODY_BYTES, BodyLimit, token_matches
from crsrisk.service.page import render_page
from crsrisk.service.predictions import (
    PredictRequest,
    document_json,
    example_record_text,
    predict_document,
    refusal,
    request_problems,
    trajectory_png,
)
from crsrisk.util.outputs import json_ready

_REFUSED = (CohortValidationError, ValueError, KeyError)


def model_document(bundle: Bundle) -> dict[str, Any]:
    """What ``GET /model`` says: the bundle's identity and status, its training population and every model."""
    meta = bundle.metadata
    return json_ready({
        "path": str(bundle.path), "bundle_sha256": bundle.digest, "crsrisk_version": meta.get("crsrisk_version"),
        "created": meta.get("created"), "synthetic": bool(meta.get("synthetic", True)),
        "not_for_clinical_use": bool(meta.get("not_for_clinical_use", True)), "disclaimer": meta.get("disclaimer"),
        "training_population": meta.get("training_population"),
        "training_cohort": {"fingerprint": meta.get("training_cohort_fingerprint"),
                            "size": meta.get("training_cohort_size")},
        "models": [{"key": m.key, "task": m.task, "landmark": m.landmark.label,
                    "description": m.definition.description, "label_rule_version": m.label_rule_version,
                    "n_features": len(m.feature_names), "bands": m.bands} for m in bundle.models.values()],
    })


def _problem_texts(error: Exception) -> list[str]:
    if isinstance(error, CohortValidationError):
        return [str(p) for p in error.problems]
    return [f"{type(error).__name__}: {error.args[0] if isinstance(error, KeyError) and error.args else error}"]


def create_app(model: str | os.PathLike | Bundle | None = None, audit_log: str | os.PathLike | None = None,
               audit: bool = True, token: str | None = None, max_body_bytes: int = MAX_BODY_BYTES) -> FastAPI:
    """The service around one verified bundle (loaded once). ``token`` set: ``/predict``, ``/model`` and scoring
    on the page need it (``Authorization: Bearer``, or the page's token field); ``audit_log`` as for ``predict``."""
    bundle = load_model(model)
    log_path = None if audit_log is None else str(audit_log)
    # Scoring is CPU-bound Python: requests interleaved on threads of one process only take turns at the GIL, and
    # one preempted while holding the audit log's lock stalls the other processes too. One at a time per process
    # (a process per core: ``crsrisk serve --workers``); the others wait here, off the event loop.
    one_at_a_time = threading.Lock()

    def scored(body: PredictRequest) -> tuple[dict[str, Any], Any]:
        with one_at_a_time:
            return predict_document(bundle, body, audit, log_path)

    app = FastAPIOffline(title="crsrisk", version=crsrisk.__version__,
                         description="Risk of severe CRS, ICANS and tocilizumab-refractory CRS after CAR T-cell "
                                     "therapy. Research software, synthetic model: not for clinical use.",
                         swagger_ui_parameters={"validatorUrl": None})  # no badge fetched from validator.swagger.io
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)

    def authorised(request: Request) -> None:
        if not token_matches(token, request.headers.get("authorization")):
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(CohortValidationError)
    async def _invalid_record(request: Request, error: CohortValidationError) -> JSONResponse:
        return JSONResponse(refusal(error), status_code=422)

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse(refusal(CohortValidationError(request_problems(error.errors()))), status_code=422)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Liveness: the service is up and which bundle it serves (answered on the event loop, never queued
        behind scoring)."""
        return {"status": "ok", "bundle_sha256": bundle.digest,
                "synthetic": bool(bundle.metadata.get("synthetic", True))}

    @app.get("/model", dependencies=[Depends(authorised)])
    def model_info() -> dict[str, Any]:
        """The served bundle: metadata, synthetic flag, training population, models."""
        return model_document(bundle)

    @app.post("/predict", dependencies=[Depends(authorised)],
              responses={422: {"description": "the record breaks the contract: every problem with field and value"}})
    def predict(body: PredictRequest) -> Response:
        """Calibrated risk per task with every reason (``crsrisk.predict(...).to_dict()``); written to the audit log."""
        try:
            document, _ = scored(body)
        except CohortValidationError:
            raise
        except (ValueError, KeyError) as error:
            raise CohortValidationError([Problem("request", "<record>", _problem_texts(error)[0])]) from None
        return Response(document_json(document), media_type="application/json")

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        """The bedside page: paste, upload or pick the example record."""
        return render_page(bundle, needs_token=token is not None)

    @app.post("/", response_class=HTMLResponse)
    async def page_result(request: Request) -> HTMLResponse:
        """The page with the result (or the refusal) for the submitted form."""
        form = {k: v[-1] for k, v in parse_qs((await request.body()).decode("utf-8", "replace")).items()}
        text = example_record_text() if form.get("action") == "example" else form.get("record", "")
        now = form.get("now_hours", "").strip()
        shown = {"record_text": text, "now_hours": now, "needs_token": token is not None}
        if not token_matches(token, form.get("token")):
            return HTMLResponse(render_page(bundle, problems=["missing or wrong API token"], **shown), status_code=401)
        try:
            record = json.loads(text)
            if not isinstance(record, dict):
                raise ValueError("expected a JSON object with patient, measurements and events")
            body = PredictRequest.for_record(record, now_hours=now or None, trajectory=True)
            document, points = await run_in_threadpool(scored, body)
        except ValidationError as error:
            problems = [str(p) for p in request_problems(error.errors())]
            return HTMLResponse(render_page(bundle, problems=problems, **shown), status_code=422)
        except _REFUSED as error:
            return HTMLResponse(render_page(bundle, problems=_problem_texts(error), **shown), status_code=422)
        image = await run_in_threadpool(trajectory_png, points) if points is not None and points.points else None
        return HTMLResponse(render_page(bundle, document=json_ready(document), trajectory_png=image, **shown))

    return app
