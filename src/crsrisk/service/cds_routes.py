"""The CDS Hooks routes of ``crsrisk serve`` (``/cds-services``, the call, feedback, the page a card links to),
added to the app by ``create_app``; what they do is in ``cds_hooks``."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse

from crsrisk.bundle.store import Bundle
from crsrisk.errors import (
    CohortValidationError,
    FhirServerError,
    PrefetchMissingError,
    Problem,
)
from crsrisk.service import cds_hooks
from crsrisk.service.page import render_page


def _known(service_id: str) -> None:
    if service_id != cds_hooks.SERVICE_ID:
        raise HTTPException(404, f"no CDS service {service_id!r}; GET /cds-services lists them")


def _refusal(error: Exception) -> CohortValidationError:
    text = error.args[0] if isinstance(error, KeyError) and error.args else error
    return CohortValidationError([Problem("request", "<hook>", f"{type(error).__name__}: {text}")])


def add_cds_routes(
    app: FastAPI,
    bundle: Bundle,
    one_at_a_time: threading.Lock,
    authorised: Callable[..., None],
    audit: bool,
    log_path: str | os.PathLike | None,
) -> None:
    """Discovery (open: it says nothing about patients), the call and feedback (behind ``authorised``, as
    ``/predict``; scored one at a time under the app's lock) and the card's bedside page."""
    pages = cds_hooks.Pages(log_path)

    @app.get("/cds-services")
    async def cds_discovery() -> dict[str, Any]:
        """CDS Hooks discovery: the ``patient-view`` service and its prefetch templates."""
        return cds_hooks.discovery(bundle.identity.to_dict())

    @app.post(
        "/cds-services/{service_id}",
        dependencies=[Depends(authorised)],
        responses={412: {"description": "neither prefetch nor fhirServer gives what the service reads"}},
    )
    def cds_call(service_id: str, body: cds_hooks.HookRequest, request: Request) -> dict[str, Any]:
        """CDS Hooks call: one card per task for the patient in view, audited like ``/predict``."""
        _known(service_id)
        try:
            patient = cds_hooks.hook_bundle(body)  # reading the EHR's server is not scoring: outside the lock
            with one_at_a_time:
                return cds_hooks.call(bundle, patient, audit, log_path, pages, str(request.base_url))
        except PrefetchMissingError as error:
            raise HTTPException(412, str(error)) from None
        except FhirServerError as error:
            raise HTTPException(502, str(error)) from None
        except CohortValidationError:
            raise
        except (ValueError, KeyError) as error:
            raise _refusal(error) from None

    @app.post("/cds-services/{service_id}/feedback", dependencies=[Depends(authorised)])
    def cds_feedback(service_id: str, body: cds_hooks.FeedbackRequest) -> dict[str, Any]:
        """CDS Hooks feedback: each card's outcome appended to the audit log, linked to that card's record."""
        _known(service_id)
        try:
            return {"stored": [{"card": r["card"], "seq": r["seq"]} for r in cds_hooks.feedback(body, log_path)]}
        except KeyError as error:
            raise HTTPException(404, error.args[0]) from None

    @app.get(f"/cds-services/{cds_hooks.SERVICE_ID}/page/{{page_id}}", response_class=HTMLResponse)
    def cds_page(page_id: str) -> str:
        """The bedside page a card links to, showing that card's prediction (for an hour after the call)."""
        document = pages.get(page_id)
        if document is None:
            raise HTTPException(404, "no such page, or it has expired: open the patient in the EHR again")
        return render_page(bundle, document=document, form=False)  # the EHR chose the patient
