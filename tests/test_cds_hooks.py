"""crsrisk in the EHR: CDS Hooks calls built from FHIR exports of synthetic patients (prefetch, and a FHIR server
read with fhirpy), their feedback, and the FHIR RiskAssessment Bundle, each checked against ``crsrisk.predict``.

The FHIR server here is a stand-in: a small read-only FHIR REST endpoint (read by id, search by patient and code)
over the exported Bundles, its answers validated with fhir.resources and read by fhirpy itself."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from ehr_stand_in import StandInFhirServer, hook_request, prefetched, search
from fhir.resources.R4B.bundle import Bundle as FhirBundle
from fhir_export import patient_bundle
from fhirpy import SyncFHIRClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from crsrisk.cli import app
from crsrisk.audit import AuditLog, verify_log
from crsrisk.cohort.record import canonical_record, validate_record
from crsrisk.cohort.validated import Cohort
from crsrisk.scoring import load_model, predict
from crsrisk.service.cds_hooks import SERVICE_ID
from crsrisk.service.local import free_port, local_server
from crsrisk.service.riskassessment import FHIR_JSON, INTERVAL_EXTENSION
from crsrisk.sources.fhir import record_from_fhir
from tests_support import launch_chromium, needs_chromium, serve_command, service_client as client

pytestmark = [
    pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`"),
    pytest.mark.filterwarnings("ignore:FHIR codes crsrisk does not read"),
]
CALL = f"/cds-services/{SERVICE_ID}"


@pytest.fixture(scope="module")
def bundle(small_bundle: Path):
    return load_model(small_bundle)


@pytest.fixture(scope="module")
def exports(small_cohort: Cohort, bundle) -> list[dict]:
    """FHIR exports (one Bundle each) of synthetic patients that have at least one task scored at their last
    record, as crsrisk.predict scores them."""
    found = []
    for index, row in enumerate(small_cohort.patients.to_dict("records")):
        pid = row["patient_id"]
        export = json.loads(
            json.dumps(
                patient_bundle(
                    index,
                    row,
                    small_cohort.measurements[small_cohort.measurements.patient_id == pid],
                    small_cohort.events[small_cohort.events.patient_id == pid],
                ),
                default=float,
            )
        )
        if predict(export, model=bundle, audit=False).predictions:
            found.append(export)
        if len(found) == 3:
            return found
    raise AssertionError("no synthetic patient with a task still open at its last record")


def card_probabilities(answer: dict) -> dict[str, float]:
    return {
        c["extension"]["crsrisk"]["task"]: c["extension"]["crsrisk"]["probability"]
        for c in answer["cards"]
        if "extension" in c
    }


def probabilities(result) -> dict[str, float]:
    return {p["task"]: p["probability"] for p in result.predictions}


def test_discovery_lists_a_patient_view_service_with_its_prefetch_templates(bundle, tmp_path: Path) -> None:
    services = client(bundle, tmp_path).get("/cds-services").json()["services"]
    assert [(s["hook"], s["id"]) for s in services] == [("patient-view", SERVICE_ID)]
    assert services[0]["title"] and services[0]["description"]
    prefetch = services[0]["prefetch"]
    assert prefetch["patient"] == "Patient/{{context.patientId}}"
    assert "http://loinc.org|26881-3" in prefetch["labs"]  # IL-6 by its LOINC code
    assert prefetch["medications"].startswith("MedicationAdministration?patient=")
    assert prefetch["infusion"].startswith("Procedure?patient=")


def test_prefetch_call_gives_cards_with_the_probabilities_predict_gives(
    bundle, exports: list[dict], tmp_path: Path
) -> None:
    api = client(bundle, tmp_path)
    for export in exports:
        answer = api.post(CALL, json=hook_request(export, prefetch=prefetched(export)))
        assert answer.status_code == 200, answer.text
        expected = predict(export, model=bundle, audit=False)
        assert card_probabilities(answer.json()) == probabilities(expected) != {}
        for card in answer.json()["cards"]:
            assert len(card["summary"]) < 140 and card["indicator"] in ("info", "warning", "critical")
            assert "SYNTHETIC model, not for clinical use" in card["detail"] and card["source"]["label"]
        scored = [c for c in answer.json()["cards"] if "extension" in c]
        for card, p in zip(scored, expected.predictions):
            numbers = card["extension"]["crsrisk"]
            assert numbers["horizon_hours"] == p["horizon_hours"] and numbers["band"] == p["band"]
            assert card["indicator"] == {"low": "info", "intermediate": "warning", "high": "critical"}[p["band"]]
            assert f"{100 * p['probability']:.1f}%" in card["summary"] and p["question"][1:20] in card["summary"]
    log = verify_log(tmp_path / "audit.jsonl")
    assert log.ok and log.n_records == len(exports)  # every call audited like a prediction


def test_a_call_with_neither_prefetch_nor_fhir_server_is_a_412(bundle, exports: list[dict], tmp_path: Path) -> None:
    api = client(bundle, tmp_path)
    answer = api.post(CALL, json=hook_request(exports[0]))
    assert answer.status_code == 412 and "fhirServer" in answer.json()["detail"]
    partial = {k: v for k, v in prefetched(exports[0]).items() if k != "labs"}
    assert api.post(CALL, json=hook_request(exports[0], prefetch=partial)).status_code == 412
    assert api.post("/cds-services/no-such-service", json=hook_request(exports[0])).status_code == 404
    assert not (tmp_path / "audit.jsonl").exists()  # nothing scored, nothing logged


@pytest.fixture()
def fhir_server(exports: list[dict]) -> Iterator[str]:
    StandInFhirServer.resources = [e["resource"] for export in exports for e in export["entry"]]
    StandInFhirServer.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), StandInFhirServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_the_stand_in_fhir_server_answers_as_fhirpy_expects(fhir_server: str, exports: list[dict]) -> None:
    patient_id = hook_request(exports[0])["context"]["patientId"]
    fhir = SyncFHIRClient(fhir_server, authorization=f"Bearer {StandInFhirServer.token}")
    assert fhir.reference("Patient", patient_id).to_resource()["id"] == patient_id
    labs = fhir.resources("Observation").search(patient=patient_id, code="http://loinc.org|26881-3").fetch_all()
    expected = search(
        StandInFhirServer.resources, "Observation", {"patient": patient_id, "code": "http://loinc.org|26881-3"}
    )
    assert [r["id"] for r in labs] == [r["id"] for r in expected] != []


def test_fhir_server_call_reads_with_the_bearer_token_and_gives_predicts_probabilities(
    bundle, exports: list[dict], fhir_server: str, tmp_path: Path
) -> None:
    api = client(bundle, tmp_path)
    authorization = {
        "access_token": StandInFhirServer.token,
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "patient/*.read",
        "subject": "crsrisk",
    }
    for export in exports:
        answer = api.post(CALL, json=hook_request(export, fhirServer=fhir_server, fhirAuthorization=authorization))
        assert answer.status_code == 200, answer.text
        assert card_probabilities(answer.json()) == probabilities(predict(export, model=bundle, audit=False))
    assert StandInFhirServer.seen and set(StandInFhirServer.seen) == {f"Bearer {StandInFhirServer.token}"}
    some = {k: v for k, v in prefetched(exports[0]).items() if k in ("patient", "infusion")}  # the rest fetched
    mixed = api.post(
        CALL, json=hook_request(exports[0], prefetch=some, fhirServer=fhir_server, fhirAuthorization=authorization)
    )
    assert card_probabilities(mixed.json()) == probabilities(predict(exports[0], model=bundle, audit=False))
    refused = api.post(
        CALL,
        json=hook_request(
            exports[0], fhirServer=fhir_server, fhirAuthorization={**authorization, "access_token": "wrong"}
        ),
    )
    assert refused.status_code == 502 and "AuthorizationError" in refused.json()["detail"]


def test_feedback_is_stored_linked_to_the_audit_record_of_its_card(bundle, exports: list[dict], tmp_path: Path) -> None:
    api = client(bundle, tmp_path)
    cards = api.post(CALL, json=hook_request(exports[0], prefetch=prefetched(exports[0]))).json()["cards"]
    outcomes = [{"card": cards[0]["uuid"], "outcome": "accepted", "outcomeTimestamp": "2024-01-02T10:00:00Z"}]
    if len(cards) > 1:
        outcomes.append(
            {
                "card": cards[1]["uuid"],
                "outcome": "overridden",
                "overrideReason": {
                    "reason": cards[1].get("overrideReasons", [{}])[0],
                    "userComment": "managed already",
                },
            }
        )
    stored = api.post(f"{CALL}/feedback", json={"feedback": outcomes})
    assert stored.status_code == 200, stored.text
    records = list(AuditLog(tmp_path / "audit.jsonl").records())
    prediction = next(r for r in records if r["kind"] == "prediction")
    feedback = [r for r in records if r["kind"] == "cds_feedback"]
    assert [(r["card"], r["outcome"]) for r in feedback] == [(o["card"], o["outcome"]) for o in outcomes]
    assert all(r["card_record"] == {"seq": prediction["seq"], "hash": prediction["hash"]} for r in feedback)
    if len(cards) > 1:
        assert feedback[1]["user_comment"] == "managed already" and feedback[1]["override_reason"]["code"]
    assert verify_log(tmp_path / "audit.jsonl").ok
    unknown = api.post(f"{CALL}/feedback", json={"feedback": [{"card": "not-a-card", "outcome": "accepted"}]})
    assert unknown.status_code == 404


def test_card_link_opens_the_bedside_page_with_the_same_numbers(bundle, exports: list[dict], tmp_path: Path) -> None:
    api = client(bundle, tmp_path)
    cards = api.post(CALL, json=hook_request(exports[0], prefetch=prefetched(exports[0]))).json()["cards"]
    link = cards[0]["links"][0]
    assert link["type"] == "absolute"
    page = api.get(link["url"])
    assert page.status_code == 200 and "SYNTHETIC model, not for clinical use:" in page.text
    for p in predict(exports[0], model=bundle, audit=False).predictions:
        assert f'data-value="{p["probability"]!r}"' in page.text
    patient_id = exports[0]["entry"][0]["resource"]["id"]
    assert f'<dd data-field="patient">{patient_id}</dd>' in page.text  # the page names whom the card was for
    assert 'id="record-form"' not in page.text  # the EHR chose the patient: no form to paste another
    assert api.get(f"{CALL}/page/unknown-page").status_code == 404


def test_cds_calls_need_the_token_when_one_is_set(bundle, exports: list[dict], tmp_path: Path) -> None:
    api = client(bundle, tmp_path, token="s3cret")
    call = hook_request(exports[0], prefetch=prefetched(exports[0]))
    assert api.get("/cds-services").status_code == 200  # discovery says nothing about patients
    assert api.post(CALL, json=call).status_code == 401
    assert api.post(f"{CALL}/feedback", json={"feedback": [{"card": "x", "outcome": "accepted"}]}).status_code == 401
    assert api.post(CALL, json=call, headers={"Authorization": "Bearer s3cret"}).status_code == 200


def _assessments(document: dict) -> dict[str, dict]:
    return {
        e["resource"]["prediction"][0]["outcome"]["coding"][0]["code"]: e["resource"]
        for e in document["entry"]
        if e["resource"]["resourceType"] == "RiskAssessment"
    }


def test_risk_assessment_bundle_validates_and_carries_predicts_probabilities(
    bundle, exports: list[dict], tmp_path: Path
) -> None:
    api = client(bundle, tmp_path)
    for export in exports:
        answer = api.post("/predict", json={"fhir_bundle": export}, headers={"Accept": FHIR_JSON})
        assert answer.status_code == 200 and answer.headers["content-type"].startswith(FHIR_JSON)
        document = answer.json()
        FhirBundle.model_validate(document)
        expected = predict(export, model=bundle, audit=False)
        assessments = _assessments(document)
        assert {t: a["prediction"][0]["probabilityDecimal"] for t, a in assessments.items()} == probabilities(expected)
        patient_id = hook_request(export)["context"]["patientId"]
        device = next(e for e in document["entry"] if e["resource"]["resourceType"] == "Device")
        for p in expected.predictions:
            assessment = assessments[p["task"]]
            assert assessment["subject"] == {"reference": f"Patient/{patient_id}"}
            assert assessment["performer"]["reference"] == device["fullUrl"]
            assert bundle.digest in assessment["method"]["text"]
            assert assessment["basis"] and all(
                b["reference"].split("/")[0] in ("Observation", "MedicationAdministration") for b in assessment["basis"]
            )
            prediction = assessment["prediction"][0]
            assert prediction["qualitativeRisk"]["coding"][0]["code"] == p["band"]
            assert prediction["whenPeriod"]["start"] == assessment["occurrenceDateTime"]
            assert "not for clinical use" in assessment["note"][0]["text"]
            bounds = p.model.calibrator.interval(p["raw_score"])
            if bounds is not None:
                assert [prediction["extension"][0]["valueRange"][k]["value"] for k in ("low", "high")] == bounds
                assert prediction["extension"][0]["url"] == INTERVAL_EXTENSION
        stated = {
            i["details"]["coding"][0]["code"]
            for e in document["entry"]
            if e["resource"]["resourceType"] == "OperationOutcome"
            for i in e["resource"]["issue"]
            if i["details"].get("coding")
        }
        every = {m.task for m in bundle.models.values()}
        assert stated | set(assessments) == every and not stated & set(assessments)  # none silently absent


def test_day_28_questions_end_their_window_at_day_28(bundle, tmp_path: Path) -> None:
    from crsrisk.service.riskassessment import risk_assessment_bundle

    record = json.loads((Path(__file__).resolve().parents[1] / "examples" / "patient.json").read_text())
    result = predict(record, model=bundle, now_hours=40, audit=False)
    document = risk_assessment_bundle(result, record)
    FhirBundle.model_validate(document)
    for task, assessment in _assessments(document).items():
        window = assessment["prediction"][0]["whenRange"]
        p = next(p for p in result.predictions if p["task"] == task)
        assert window["low"]["value"] == 40.0
        assert window["high"]["value"] == p["landmark_hours"] + p["horizon_hours"]
        if "by day 28" in p["question"]:
            assert window["high"]["value"] == 28 * 24
        assert assessment["subject"]["identifier"]["value"] == record["patient"]["patient_id"]


def test_predict_format_fhir_prints_the_bundle(small_bundle: Path, bundle, exports: list[dict], tmp_path: Path) -> None:
    path = tmp_path / "patient.fhir.json"
    path.write_text(json.dumps(exports[1]))
    printed = CliRunner().invoke(
        app, ["predict", str(path), "--format", "fhir", "--model", str(small_bundle), "--no-audit"]
    )
    assert printed.exit_code == 0, printed.output
    document = json.loads(printed.stdout)
    FhirBundle.model_validate(document)
    expected = probabilities(predict(exports[1], model=bundle, audit=False))
    assert {t: a["prediction"][0]["probabilityDecimal"] for t, a in _assessments(document).items()} == expected


@pytest.mark.slow
@needs_chromium
def test_chromium_follows_the_cards_link_to_the_bedside_page_and_reads_the_same_numbers(
    small_bundle: Path, bundle, exports: list[dict], tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "CRSRISK_API_TOKEN"}
    command = serve_command(small_bundle, port, tmp_path / "audit.jsonl")
    url = f"http://127.0.0.1:{port}"
    with local_server(command, f"{url}/health", env=env, timeout=120, log=tmp_path / "server.log"):
        answer = httpx.post(f"{url}{CALL}", json=hook_request(exports[0], prefetch=prefetched(exports[0])), timeout=60)
        assert answer.status_code == 200, answer.text
        cards = [c for c in answer.json()["cards"] if "extension" in c]
        with sync_playwright() as p:
            browser = launch_chromium(p)
            page = browser.new_page()
            page.goto(cards[0]["links"][0]["url"])  # another worker process may answer: the page is shared
            page.wait_for_selector("#results")
            shown = {
                s.get_attribute("data-task"): float(s.query_selector(".probability").get_attribute("data-value"))
                for s in page.query_selector_all("section.task")
            }
            banner = page.inner_text("#banner")
            identity = {f.get_attribute("data-field"): f.inner_text() for f in page.query_selector_all("#patient dd")}
            bands = {
                s.get_attribute("data-task"): s.query_selector(".band").inner_text()
                for s in page.query_selector_all("section.task")
            }
            browser.close()
    assert banner.startswith("SYNTHETIC model, not for clinical use:")
    record = canonical_record(validate_record(record_from_fhir(exports[0])))["patient"]
    assert identity["patient"] == exports[0]["entry"][0]["resource"]["id"]  # whom the card was for, by the risks
    assert identity["age"] == f"{record['age_years']:g} years" and identity["diagnosis"] == record["diagnosis"]
    assert identity["product"].startswith(record["product"])
    expected = predict(exports[0], model=bundle, audit=False)
    assert bands == {p["task"]: f"{p['band']} risk" for p in expected.predictions}
    assert shown == {c["extension"]["crsrisk"]["task"]: c["extension"]["crsrisk"]["probability"] for c in cards}
    assert shown == probabilities(predict(exports[0], model=bundle, audit=False))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.recursive(
        st.none() | st.booleans() | st.floats() | st.text(max_size=8),
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(
                st.sampled_from(
                    [
                        "hook",
                        "hookInstance",
                        "context",
                        "prefetch",
                        "patientId",
                        "fhirServer",
                        "resourceType",
                        "entry",
                        "feedback",
                        "card",
                        "outcome",
                    ]
                ),
                inner,
                max_size=4,
            )
        ),
        max_leaves=12,
    )
)
def test_any_malformed_hook_or_feedback_is_refused_with_a_reason_never_a_500(bundle, tmp_path: Path, body) -> None:
    api = client(bundle, tmp_path)
    for path in (CALL, f"{CALL}/feedback"):
        answer = api.post(path, content=json.dumps(body, allow_nan=True))
        assert answer.status_code in (404, 412, 422), answer.text
    call = {"hook": "patient-view", "hookInstance": "x", "context": {"patientId": "p"}, "prefetch": body}
    answer = api.post(CALL, content=json.dumps(call, allow_nan=True))
    assert answer.status_code in (200, 412, 422), answer.text
