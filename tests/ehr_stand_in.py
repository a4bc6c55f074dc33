"""An EHR as the tests and benchmarks meet it: FHIR search over exported resources (the two parameters the
prefetch templates use), prefetch filled as a CDS client fills it, a patient-view call, and a stand-in read-only
FHIR REST server over the same resources (read by id, search; bearer token required)."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlparse

from fhir.resources.R4B.bundle import Bundle as FhirBundle

from crsrisk.service.cds_hooks import prefetch_templates
from crsrisk.service.riskassessment import FHIR_JSON


def _token_matches(wanted: str, coding: dict) -> bool:
    system, _, code = wanted.rpartition("|")
    return coding.get("code") == code and (not system or coding.get("system") == system)


def search(resources: list[dict], kind: str, params: dict[str, str]) -> list[dict]:
    """What a FHIR server answers to ``kind?patient=ID&code=SYSTEM|CODE,...`` (FHIR search semantics for the two
    parameters the templates use: a reference, and a token list read as OR)."""
    out = []
    for resource in resources:
        if resource["resourceType"] != kind:
            continue
        subject = (resource.get("subject") or {}).get("reference", "")
        if "patient" in params and subject.rsplit("/", 1)[-1] != params["patient"]:
            continue
        codings = (resource.get("code") or {}).get("coding", [])
        if "code" in params and not any(_token_matches(w, c) for w in params["code"].split(",") for c in codings):
            continue
        out.append(resource)
    return out


def searchset(resources: list[dict]) -> dict:
    """A searchset Bundle, as a FHIR server returns one (validated: an EHR's client expects valid FHIR)."""
    found = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [
            {"fullUrl": f"{r['resourceType']}/{r['id']}", "resource": r, "search": {"mode": "match"}} for r in resources
        ],
    }
    FhirBundle.model_validate(found)
    return found


def resolve(resources: list[dict], query: str) -> Any:
    """A filled prefetch template answered from ``resources``: a read by id, or a search."""
    path, _, params = query.partition("?")
    if not params:
        kind, _, rid = path.partition("/")
        return next(r for r in resources if r["resourceType"] == kind and r["id"] == rid)
    return searchset(search(resources, path, dict(parse_qsl(params))))


def hook_request(export: dict, **extra: Any) -> dict:
    """A patient-view call for the exported patient (no prefetch unless given)."""
    patient = next(e["resource"] for e in export["entry"] if e["resource"]["resourceType"] == "Patient")
    return {
        "hook": "patient-view",
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "context": {"userId": "Practitioner/example", "patientId": patient["id"]},
        **extra,
    }


def prefetched(export: dict) -> dict:
    """Every prefetch template filled from the export, as an EHR fills them before the call."""
    resources = [e["resource"] for e in export["entry"]]
    patient_id = hook_request(export)["context"]["patientId"]
    return {
        key: resolve(resources, template.replace("{{context.patientId}}", patient_id))
        for key, template in prefetch_templates().items()
    }


class StandInFhirServer(BaseHTTPRequestHandler):
    """Read-only FHIR REST over the exported resources: ``GET /Type/id`` and ``GET /Type?patient=&code=``;
    answers 401 without the expected bearer token, and records every Authorization header it was sent."""

    resources: ClassVar[list[dict]] = []
    token = "ehr-access-token"
    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.seen.append(self.headers.get("Authorization", ""))
        if self.headers.get("Authorization") != f"Bearer {self.token}":
            return self._send(
                401,
                {
                    "resourceType": "OperationOutcome",
                    "issue": [{"severity": "error", "code": "login", "diagnostics": "bearer token required"}],
                },
            )
        url = urlparse(self.path)
        try:
            body = resolve(self.resources, url.path.strip("/") + (f"?{url.query}" if url.query else ""))
        except StopIteration:
            return self._send(
                404,
                {
                    "resourceType": "OperationOutcome",
                    "issue": [{"severity": "error", "code": "not-found", "diagnostics": url.path}],
                },
            )
        self._send(200, body)

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", FHIR_JSON)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass
