"""CDS Hooks 2.0 in ``crsrisk serve``: discovery, the ``patient-view`` call answered with one card per task, and
feedback on the cards.

What the model reads comes from the call's ``prefetch`` (templates listed at discovery); a template the client did
not fill is read from the call's ``fhirServer`` with fhirpy (its ``fhirAuthorization`` access token as the bearer),
and a call with neither is refused (``PrefetchMissingError``, HTTP 412, as the specification says). The resources
become one patient's FHIR Bundle, scored by ``crsrisk.predict`` (audited as every prediction): each card's ``uuid``
is derived from that audit record's hash and the task, so feedback on a card is linked to the record it came from.
The card's link opens the bedside page on that prediction: a private file kept ``PAGE_TTL_SECONDS`` beside the
audit log, named by a random id (the link is the capability; whoever holds a card may open it).
"""

from __future__ import annotations

import json
import os
import secrets
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl

from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import BaseFHIRError
from pydantic import BaseModel, ConfigDict, Field
from requests import RequestException

from crsrisk import scoring
from crsrisk.audit import AuditLog
from crsrisk.bundle.store import Bundle
from crsrisk.cohort.population import flags_text
from crsrisk.errors import FhirServerError, PrefetchMissingError
from crsrisk.notice import banner, is_synthetic, label
from crsrisk.schema.codes import CODES, PROJECT_SYSTEM
from crsrisk.scoring.patient import PredictionResult
from crsrisk.service.page import page_document, percent, task_view
from crsrisk.service.predictions import document_json, with_intervals
from crsrisk.service.status import warning
from crsrisk.sources.fhir import record_from_fhir

SERVICE_ID = "crsrisk-patient-view"
PAGE_TTL_SECONDS = 3600
FETCH_TIMEOUT_SECONDS = 10
CARD_NAMESPACE = uuid.UUID("5b0c3f6e-5a8e-4d53-9a57-6b3f1d2c9e41")  # card uuid = uuid5(this, audit hash + task)
INDICATOR = {"low": "info", "intermediate": "warning", "high": "critical"}
LOINC = "http://loinc.org"
OVERRIDE_SYSTEM = f"{PROJECT_SYSTEM}-override-reason"
OVERRIDE_REASONS = (
    ("already-managed", "Already being managed"),
    ("not-relevant", "Not relevant for this patient"),
    ("data-incomplete", "The record in the EHR is incomplete"),
)


def _codes(system: str, kinds: tuple[str, ...]) -> list[str]:
    """Every code of ``system`` the importer reads as one of ``kinds`` (from the one registry, schema/codes.py)."""
    return sorted(
        {code for (key, code), found in CODES.items() if key == system and any(m.kind in kinds for m in found)}
    )


def prefetch_templates() -> dict[str, str]:
    """What the service reads: the Patient, its labs by LOINC, its crsrisk-coded Observations (CRS/ICANS grades,
    patient fields without a LOINC code), its medication administrations, the infusion Procedure, its diagnosis."""
    patient = "{{context.patientId}}"
    labs = ",".join(f"{LOINC}|{code}" for code in _codes("loinc", ("measurement", "patient")))
    graded = ",".join(f"{PROJECT_SYSTEM}|{code}" for code in _codes("crsrisk", ("measurement", "event", "patient")))
    return {
        "patient": f"Patient/{patient}",
        "labs": f"Observation?patient={patient}&code={labs}",
        "crsrisk_observations": f"Observation?patient={patient}&code={graded}",
        "medications": f"MedicationAdministration?patient={patient}",
        "infusion": f"Procedure?patient={patient}",
        "conditions": f"Condition?patient={patient}",
    }


def discovery(model: Mapping[str, Any]) -> dict[str, Any]:
    """``GET /cds-services``: the one ``patient-view`` service, described with the status of the served ``model``
    (its identity)."""
    return {
        "services": [
            {
                "hook": "patient-view",
                "id": SERVICE_ID,
                "title": "crsrisk: CRS and ICANS risk after CAR T-cell therapy",
                "description": "Calibrated risk of severe CRS, ICANS and tocilizumab-refractory CRS for a patient after a "
                "CAR T-cell infusion, with the reasons. " + banner(is_synthetic(model)),
                "prefetch": prefetch_templates(),
                "usageRequirements": "The patient's CAR-T infusion must be in the record (a Procedure or a "
                "MedicationAdministration of the product).",
            }
        ]
    }


class HookRequest(BaseModel):
    """A CDS Hooks call, as the specification names its fields (others, such as extensions, are kept)."""

    model_config = ConfigDict(extra="allow")

    hook: str
    hookInstance: str
    context: dict[str, Any]
    prefetch: dict[str, Any] | None = None
    fhirServer: str | None = None
    fhirAuthorization: dict[str, Any] | None = None

    def patient_id(self) -> str:
        """``context.patientId``, which every template is filled with."""
        value = self.context.get("patientId")
        if not isinstance(value, str) or not value:
            raise ValueError("context.patientId: expected the id of the patient in view")
        return value


class Feedback(BaseModel):
    """One card's outcome, as CDS Hooks 2.0 feedback gives it."""

    model_config = ConfigDict(extra="allow")

    card: str
    outcome: Literal["accepted", "overridden"]
    overrideReason: dict[str, Any] | None = None
    outcomeTimestamp: str | None = None


class FeedbackRequest(BaseModel):
    """``POST /cds-services/{id}/feedback``: one or more card outcomes."""

    feedback: list[Feedback] = Field(min_length=1)


def _fetch(server: str, authorization: Mapping[str, Any] | None, query: str) -> Any:
    """One prefetch template, filled, read from the FHIR server with fhirpy: a read (``Patient/ID``) or a search."""
    token = (authorization or {}).get("access_token")
    client = SyncFHIRClient(
        server, authorization=f"Bearer {token}" if token else None, requests_config={"timeout": FETCH_TIMEOUT_SECONDS}
    )
    path, _, search = query.partition("?")
    try:
        if not search:
            kind, _, resource_id = path.partition("/")
            return client.reference(kind, resource_id).to_resource().serialize()
        return [found.serialize() for found in client.resources(path).search(**dict(parse_qsl(search))).fetch_all()]
    except (BaseFHIRError, RequestException) as error:
        raise FhirServerError(
            f"fhirServer {server}: {path} could not be read ({type(error).__name__}: {str(error)[:200]})"
        ) from None


def _resources(value: Any) -> list[dict[str, Any]]:
    """The resources of one prefetch value: a resource, a (searchset) Bundle, or a list of resources."""
    if isinstance(value, list):
        return [r for r in value if isinstance(r, dict)]
    if isinstance(value, dict) and value.get("resourceType") == "Bundle":
        return [
            e["resource"]
            for e in value.get("entry") or []
            if isinstance(e, dict) and isinstance(e.get("resource"), dict)
        ]
    return [value] if isinstance(value, dict) and value.get("resourceType") else []


def hook_bundle(request: HookRequest) -> dict[str, Any]:
    """The patient's FHIR Bundle from the call: its prefetch, and from its FHIR server what the prefetch lacks."""
    patient_id = request.patient_id()
    given = request.prefetch or {}
    missing = {
        key: template.replace("{{context.patientId}}", patient_id)
        for key, template in prefetch_templates().items()
        if given.get(key) is None
    }
    if missing and not request.fhirServer:
        raise PrefetchMissingError(
            f"prefetch lacks {', '.join(missing)} and the call names no fhirServer to read them from"
        )
    values = [given[key] for key in prefetch_templates() if key not in missing]
    values += [_fetch(request.fhirServer, request.fhirAuthorization, query) for query in missing.values()]  # type: ignore[arg-type]  # set: checked above
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for value in values:
        for resource in _resources(value):
            seen.setdefault((resource["resourceType"], str(resource.get("id") or len(seen))), resource)
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"fullUrl": f"{kind}/{rid}", "resource": resource} for (kind, rid), resource in seen.items()],
    }


def card_uuid(audit_hash: str, task: str) -> str:
    """A card's uuid: fixed by its prediction's audit record (its hash) and its task."""
    return str(uuid.uuid5(CARD_NAMESPACE, f"{audit_hash}:{task}"))


def _detail(view: Mapping[str, Any], prediction: Any, result: PredictionResult) -> str:
    bounds = prediction.interval()
    lines = [
        f"**{view['probability_text']}** ({view['band']} risk); "
        + (
            "95 % interval not available"
            if bounds is None
            else f"95 % interval {percent(bounds[0])} to {percent(bounds[1])}"
        )
        + f"; as of hour {result.now_hours:.1f} after the infusion.",
        "",
        "Largest reasons:",
    ]
    lines += [f"- {r['phrase']}" for r in view["reasons"]] or ["- none: no input moved the risk from the base rate"]
    if view["missing"]:
        lines += ["", "Missing inputs:", *(f"- {line}" for line in view["missing"])]
    if result.population_flags:
        found = flags_text(result.population_flags, [p.model.key for p in result.predictions])
        lines.append(f"\nOutside the training population: {found}")
    return "\n".join([*lines, "", f"_{warning(result.model)}_"])


def _source(base_url: str, model: Mapping[str, Any]) -> dict[str, str]:
    """A card's source: the software and its status, linking to the served model's description."""
    return {"label": label(is_synthetic(model)), "url": f"{base_url}model"}


def cards(result: PredictionResult, base_url: str, page_url: str | None) -> list[dict[str, Any]]:
    """One card per task answered (and one saying which tasks were not, and why)."""
    audit_hash = (result.audit_record or {}).get("hash", "")
    out = []
    for prediction in result.predictions:
        view = task_view(prediction, {})
        summary = f"{view['question']}: {view['probability_text']} ({prediction['band']} risk)"
        bounds = prediction.interval()
        card = {
            "uuid": card_uuid(audit_hash, prediction["task"]),
            "summary": summary if len(summary) < 140 else summary[:138] + "…",
            "indicator": INDICATOR.get(prediction["band"], "info"),
            "detail": _detail(view, prediction, result),
            "source": _source(base_url, result.model),
            "overrideReasons": [{"system": OVERRIDE_SYSTEM, "code": c, "display": d} for c, d in OVERRIDE_REASONS],
            "extension": {
                "crsrisk": {
                    "task": prediction["task"],
                    "probability": float(prediction["probability"]),
                    "interval": bounds,
                    "horizon_hours": float(prediction["horizon_hours"]),
                    "landmark_hours": float(prediction["landmark_hours"]),
                    "as_of_hours": float(result.now_hours),
                    "band": prediction["band"],
                }
            },
        }
        if page_url is not None:
            card["links"] = [
                {"label": "Open the crsrisk bedside page for this patient", "url": page_url, "type": "absolute"}
            ]
        out.append(card)
    unanswered = [f"{o['task']}: {o['text']}" for o in result.already_occurred]
    unanswered += [f"{s['task']}: not applicable ({s['reason']})" for s in result.not_applicable]
    if unanswered:
        out.append(
            {
                "uuid": card_uuid(audit_hash, "not-scored"),
                "summary": f"crsrisk: {len(unanswered)} question(s) not scored for this patient"[:139],
                "indicator": "info",
                "detail": "\n".join([*(f"- {u}" for u in unanswered), "", f"_{warning(result.model)}_"]),
                "source": _source(base_url, result.model),
            }
        )
    return out


class Pages:
    """The bedside pages cards link to: one private JSON file per call beside the audit log, read until it is
    ``PAGE_TTL_SECONDS`` old (shared by every worker process, gone once expired)."""

    def __init__(self, audit_log: str | os.PathLike | None) -> None:
        self.folder = AuditLog(audit_log).path.parent / "cds-pages"

    def put(self, document: Mapping[str, Any]) -> str:
        """Keep a prediction document; returns the random id its link names."""
        self._expire()
        page_id = secrets.token_urlsafe(24)
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        # a new file under a fresh random name: nothing earlier to lose, and no reader before the link is sent,
        # so no staging and no fsync (a page lost in a crash is opened again from the EHR)
        with os.fdopen(
            os.open(self.folder / f"{page_id}.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb"
        ) as handle:
            handle.write(document_json(document))
        return page_id

    def get(self, page_id: str) -> dict[str, Any] | None:
        """The document behind a link, or None when unknown or expired."""
        path = self.folder / f"{page_id}.json"
        if not page_id.replace("-", "").replace("_", "").isalnum() or not path.is_file() or self._old(path):
            return None
        return json.loads(path.read_text(encoding="utf-8"))

    def _old(self, path: Path) -> bool:
        return time.time() - path.stat().st_mtime > PAGE_TTL_SECONDS

    def _expire(self) -> None:
        for path in self.folder.glob("*.json") if self.folder.is_dir() else ():
            try:
                if self._old(path):
                    path.unlink()
            except FileNotFoundError:  # another worker expired it first
                pass


def call(
    bundle: Bundle,
    patient: Mapping[str, Any],
    audit: bool,
    audit_log: str | os.PathLike | None,
    pages: Pages,
    base_url: str,
) -> dict[str, Any]:
    """``POST /cds-services/{id}``: the cards for the patient in view (``hook_bundle`` of the call), the
    prediction audited; ``base_url`` is the service's own address, which the cards' links start with."""
    result = scoring.predict(record_from_fhir(patient), model=bundle, audit=audit, audit_log=audit_log)
    document = with_intervals(result)
    page_id = pages.put(page_document(document, result.inputs))  # type: ignore[arg-type]  # predict sets inputs
    return {"cards": cards(result, base_url, f"{base_url}cds-services/{SERVICE_ID}/page/{page_id}")}


def _card_record(log: AuditLog, card: str) -> dict[str, Any] | None:
    """The seq and hash of the prediction record a card came from (by its uuid), or None."""
    for record in log.records():
        if record.get("kind") == "prediction":
            tasks = [o["task"] for o in record.get("outputs", []) if "probability" in o] + ["not-scored"]
            if any(card_uuid(record["hash"], task) == card for task in tasks):
                return {"seq": record["seq"], "hash": record["hash"]}
    return None


def feedback(request: FeedbackRequest, audit_log: str | os.PathLike | None) -> list[dict[str, Any]]:
    """Append each card's outcome to the audit log, linked to its card's prediction record; returns what was
    stored (KeyError naming a card no record of this log made)."""
    log = AuditLog(audit_log)
    stored = []
    for item in request.feedback:
        linked = _card_record(log, item.card)
        if linked is None:
            raise KeyError(f"feedback.card: no card {item.card!r} in this service's audit log")
        reason = item.overrideReason or {}
        stored.append(
            log.append(
                {
                    "kind": "cds_feedback",
                    "card": item.card,
                    "outcome": item.outcome,
                    "override_reason": reason.get("reason"),
                    "user_comment": reason.get("userComment"),
                    "outcome_timestamp": item.outcomeTimestamp,
                    "card_record": linked,
                }
            )
        )
    return stored
