"""The FastAPI app: ``POST /predict`` (the patient record in, ``crsrisk.predict(...).to_dict()`` out, audited;
a FHIR RiskAssessment Bundle when asked for ``application/fhir+json``), CDS Hooks at ``/cds-services``,
``GET /health``, ``GET /model``, the bedside page at ``/`` and OpenAPI docs at ``/docs`` and ``/redoc`` (their
scripts served from the package, not a CDN: a hospital network may reach nothing outside)."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qs

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi_offline import FastAPIOffline
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from pydantic import ValidationError

import crsrisk
from crsrisk import notice
from crsrisk.audit import log_head, resolve_log_path
from crsrisk.bundle.store import Bundle
from crsrisk.cohort.record import validate_record
from crsrisk.errors import AuditLogError, CohortValidationError, CrsriskError, InputError, Problem
from crsrisk.scoring.load import load_model
from crsrisk.service.anchor import VersionTag
from crsrisk.service.failures import AuditHealth, EncodableHTML, EncodableJSON, InternalErrors
from crsrisk.service.cds_routes import add_cds_routes
from crsrisk.service.guard import MAX_BODY_BYTES, BodyLimit, token_matches
from crsrisk.service.page import page_document, render_page
from crsrisk.service.riskassessment import FHIR_JSON
from crsrisk.service.predictions import (
    PredictRequest,
    document_json,
    example_record_text,
    predict_document,
    predict_fhir,
    refusal,
    request_problems,
    trajectory_png,
)
from crsrisk.util.outputs import json_ready


def model_document(bundle: Bundle) -> dict[str, Any]:
    """What ``GET /model`` says: the bundle's identity and status, its training population and every model."""
    meta = bundle.metadata
    return json_ready(
        {
            **bundle.identity.to_dict(),
            "disclaimer": meta.disclaimer,
            "training_population": meta.training_population,
            "training_cohort": {"fingerprint": meta.training_cohort_fingerprint, "size": meta.training_cohort_size},
            "models": [
                {
                    "key": m.key,
                    "task": m.task,
                    "landmark": m.landmark.label,
                    "description": m.definition.description,
                    "label_rule_version": m.label_rule_version,
                    "n_features": len(m.feature_names),
                    "bands": m.bands,
                }
                for m in bundle.models.values()
            ],
        }
    )


def _problem_texts(error: CrsriskError) -> list[str]:
    if isinstance(error, CohortValidationError):
        return [str(p) for p in error.problems]
    return [f"{type(error).__name__}: {error}"]


def _audit_refusal(error: AuditLogError) -> dict[str, Any]:
    """The 503 body: scoring is refused because its audit record cannot be written, and why."""
    return {"detail": f"the audit log cannot be appended to, so nothing is scored: {error}", "audit_log": str(error)}


def _audit_problem(path: str | None) -> str | None:
    """Why the audit log could not take a record now (its last line is damaged, it cannot be read), or None."""
    log = resolve_log_path(path)
    try:
        if not log.is_file() or log.stat().st_size == 0:
            return None
        log_head(log)
    except (AuditLogError, OSError) as error:
        return str(error)
    return None


def _page_request(text: str, now: str) -> PredictRequest:
    """The page's pasted record and hour as a request (with the trajectory); InputError when the text is not a
    JSON object or the hour not a number."""
    try:
        record = json.loads(text)
    except (ValueError, RecursionError) as error:  # not JSON, or nested too deeply to read
        raise InputError(f"the record is not JSON: {str(error)[:200]}") from None
    if not isinstance(record, dict):
        raise InputError("expected a JSON object with patient, measurements and events")
    try:
        hours = float(now) if now else None
    except ValueError:
        raise InputError(f"now_hours: expected a number of hours, got {now[:50]!r}") from None
    return PredictRequest.for_record(record, now_hours=hours, trajectory=True)


def create_app(
    model: str | os.PathLike | Bundle | None = None,
    audit_log: str | os.PathLike | None = None,
    audit: bool = True,
    token: str | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    allow_unverified: bool = False,
) -> FastAPI:
    """The service around one verified bundle (loaded once). ``token`` set: ``/predict``, ``/model`` and scoring
    on the page need it (``Authorization: Bearer``, or the page's token field); ``audit_log`` as for ``predict``.
    A bundle not signed by a trusted key is refused at start unless ``allow_unverified`` (or
    ``$CRSRISK_ALLOW_UNVERIFIED=1``): research use, and every answer then says UNVERIFIED."""
    bundle = load_model(model, allow_unverified=allow_unverified)
    log_path = None if audit_log is None else str(audit_log)
    # Scoring is CPU-bound Python: requests interleaved on threads of one process only take turns at the GIL, and
    # one preempted while holding the audit log's lock stalls the other processes too. One at a time per process
    # (a process per core: ``crsrisk serve --workers``); the others wait here, off the event loop.
    one_at_a_time = threading.Lock()
    audit_health = AuditHealth()
    health_probe = ThreadPoolExecutor(max_workers=1, thread_name_prefix="crsrisk-health")  # never behind scoring

    def scored(body: PredictRequest) -> tuple[dict[str, Any], Any]:
        with one_at_a_time:
            try:
                answer = predict_document(bundle, body, audit, log_path)
            except AuditLogError as error:
                audit_health.failed(str(error))
                raise
            if audit:
                audit_health.appended()
            return answer

    app = FastAPIOffline(
        title="crsrisk",
        version=crsrisk.__version__,
        description="Risk of severe CRS, ICANS and tocilizumab-refractory CRS after CAR T-cell therapy. "
        + notice.banner(bundle.metadata.synthetic),
        swagger_ui_parameters={"validatorUrl": None},
    )  # no badge fetched from validator.swagger.io
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    anchor = VersionTag.for_model(model) if audit and not isinstance(model, Bundle) else None
    if anchor is not None:

        @app.middleware("http")
        async def _anchor_head(request: Request, call_next: Any) -> Response:
            """After an answered POST (an audited answer), tag the served model version with the log's head."""
            response = await call_next(request)
            if request.method == "POST" and response.status_code == 200:
                await run_in_threadpool(anchor.tag, resolve_log_path(log_path))
            return response

    app.add_middleware(InternalErrors)  # outermost of the two: a bug anywhere is a 500 with an error id

    def authorised(request: Request) -> None:
        if not token_matches(token, request.headers.get("authorization")):
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(CrsriskError)
    async def _bad_input(request: Request, error: CrsriskError) -> JSONResponse:
        if not isinstance(error, CohortValidationError):
            error = CohortValidationError([Problem("request", "<record>", _problem_texts(error)[0])])
        return EncodableJSON(refusal(error), status_code=422)

    @app.exception_handler(AuditLogError)
    async def _audit_unavailable(request: Request, error: AuditLogError) -> JSONResponse:
        return EncodableJSON(_audit_refusal(error), status_code=503)

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        return EncodableJSON(refusal(CohortValidationError(request_problems(error.errors()))), status_code=422)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Liveness: the service is up, which bundle it serves, and whether the audit log takes records (status
        ``degraded`` and the reason when not: ``/predict`` then answers 503). Never queued behind scoring."""
        problem = audit_health.problem
        if problem is None and audit:
            problem = await asyncio.get_running_loop().run_in_executor(health_probe, _audit_problem, log_path)
        return {
            "status": "ok" if problem is None else "degraded",
            "bundle_sha256": bundle.digest,
            "synthetic": bundle.metadata.synthetic,
            "audit_log": {"enabled": audit, "ok": problem is None, "problem": problem},
        }

    @app.get("/model", dependencies=[Depends(authorised)])
    def model_info() -> dict[str, Any]:
        """The served bundle: metadata, synthetic flag, training population, models."""
        return model_document(bundle)

    @app.post(
        "/predict",
        dependencies=[Depends(authorised)],
        responses={
            422: {"description": "the record breaks the contract: every problem with field and value"},
            503: {"description": "the audit log cannot be appended to (the reason is given)"},
            500: {"description": "a bug: the answer gives an error id, the traceback is logged under it"},
        },
    )
    def predict(body: PredictRequest, request: Request) -> Response:
        """Calibrated risk per task with every reason (``crsrisk.predict(...).to_dict()``; with ``Accept:
        application/fhir+json``, a FHIR R4 Bundle of RiskAssessments); written to the audit log."""
        if FHIR_JSON in request.headers.get("accept", ""):
            with one_at_a_time:
                return Response(document_json(predict_fhir(bundle, body, audit, log_path)), media_type=FHIR_JSON)
        document, _ = scored(body)
        return Response(document_json(document), media_type="application/json")

    add_cds_routes(app, bundle, one_at_a_time, authorised, audit, log_path)

    @app.get("/", response_class=HTMLResponse)
    def page() -> HTMLResponse:
        """The bedside page: paste, upload or pick the example record."""
        return EncodableHTML(render_page(bundle, needs_token=token is not None))

    @app.post("/", response_class=HTMLResponse)
    async def page_result(request: Request) -> HTMLResponse:
        """The page with the result (or the refusal) for the submitted form."""
        form = {k: v[-1] for k, v in parse_qs((await request.body()).decode("utf-8", "replace")).items()}
        text = example_record_text() if form.get("action") == "example" else form.get("record", "")
        now = form.get("now_hours", "").strip()
        shown: dict[str, Any] = {"record_text": text, "now_hours": now, "needs_token": token is not None}
        if not token_matches(token, form.get("token")):
            return EncodableHTML(render_page(bundle, problems=["missing or wrong API token"], **shown), status_code=401)
        try:
            body = _page_request(text, now)
            document, points = await run_in_threadpool(scored, body)
        except ValidationError as error:
            problems = [str(p) for p in request_problems(error.errors())]
            return EncodableHTML(render_page(bundle, problems=problems, **shown), status_code=422)
        except AuditLogError as error:
            return EncodableHTML(
                render_page(bundle, problems=[_audit_refusal(error)["detail"]], **shown), status_code=503
            )
        except CrsriskError as error:
            return EncodableHTML(render_page(bundle, problems=_problem_texts(error), **shown), status_code=422)
        image = await run_in_threadpool(trajectory_png, points) if points is not None and points.points else None
        patient = await run_in_threadpool(validate_record, body.record())  # scored already: it validates
        page = render_page(bundle, document=page_document(json_ready(document), patient), trajectory_png=image, **shown)
        return EncodableHTML(page)

    return app
