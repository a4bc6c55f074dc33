"""crsrisk serve: the REST contract (same numbers as crsrisk.predict, refusals naming field and value, audit log,
token, size limit), the bedside page, and a real server in its own process driven over HTTP and in Chromium."""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crsrisk.audit import verify_log
from crsrisk.cohort.validated import Cohort
from crsrisk.scoring import load_model, predict
from crsrisk.service.guard import required_token, token_matches
from crsrisk.service.local import free_port, local_server
from crsrisk.service.predictions import example_record_text, with_intervals
from fuzz_strategies import FUZZ, any_text, extreme_numbers, records
from tests_support import launch_chromium, needs_chromium, patient_record, serve_command, service_client as client

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "patient.json"


@pytest.fixture(scope="module")
def bundle(small_bundle: Path):
    return load_model(small_bundle)


JSON = {"content-type": "application/json"}  # without it FastAPI reads the body as bytes and never parses it


def probabilities(document: dict) -> dict[str, float]:
    return {p["task"]: p["probability"] for p in document["predictions"]}


def test_predict_returns_what_crsrisk_predict_returns_and_audits_each_call(
    bundle, small_cohort: Cohort, tmp_path: Path
) -> None:
    api = client(bundle, tmp_path)
    ids = small_cohort.patients["patient_id"].iloc[:6].tolist()
    for patient_id in ids:
        record = json.loads(json.dumps(patient_record(small_cohort, patient_id), default=float))
        answer = api.post("/predict", json={**record, "now_hours": 40})
        assert answer.status_code == 200
        expected = with_intervals(predict(record, model=bundle, now_hours=40, audit=False))
        assert answer.json()["predictions"] == json.loads(json.dumps(expected["predictions"]))
        assert answer.json()["missing_inputs"] == expected["missing_inputs"]
    log = verify_log(tmp_path / "audit.jsonl")
    assert log.ok and log.n_records == len(ids)
    assert "EXAMPLE" not in (tmp_path / "audit.jsonl").read_text()  # hashed ids only
    assert oct((tmp_path / "audit.jsonl").stat().st_mode & 0o777) == "0o600"


def test_bad_record_is_a_422_naming_field_and_value(bundle, tmp_path: Path) -> None:
    api = client(bundle, tmp_path)
    record = json.loads(EXAMPLE.read_text())
    record["patient"]["age_years"] = "-3"
    record["measurements"][1]["unit"] = "furlongs"
    answer = api.post("/predict", json={**record, "now_hours": 40})
    assert answer.status_code == 422
    problems = {(p["field"], p["value"]) for p in answer.json()["problems"]}
    assert problems == {("age_years", "-3"), ("unit", "furlongs")}
    typo = api.post("/predict", json={**json.loads(EXAMPLE.read_text()), "now_hour": 40})
    assert typo.status_code == 422 and typo.json()["problems"][0]["field"] == "now_hour"
    assert not (tmp_path / "audit.jsonl").exists()  # nothing scored, nothing logged


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.recursive(
        st.none() | st.booleans() | st.floats() | st.text(max_size=8),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
        max_leaves=12,
    ),
    patient=st.dictionaries(
        st.sampled_from(["patient_id", "age_years", "product", "sex", "dose_1e6_cells_per_kg"]),
        st.none() | st.floats() | st.text(max_size=6) | st.integers(),
        max_size=5,
    ),
)
def test_any_malformed_body_is_refused_with_a_reason_never_a_500(bundle, tmp_path: Path, body, patient) -> None:
    api = client(bundle, tmp_path)
    for payload in (body, {"patient": patient, "measurements": body if isinstance(body, list) else []}):
        answer = api.post("/predict", content=json.dumps(payload, allow_nan=True), headers=JSON)
        assert answer.status_code in (200, 422), answer.text
        if answer.status_code == 422:
            problems = answer.json()["problems"]  # a field may be the empty key the body itself used
            assert problems and all(isinstance(p["field"], str) and p["message"] for p in problems)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    record=st.one_of(
        st.text(max_size=40),
        st.binary(max_size=40).map(lambda b: b.decode("latin-1")),
        st.recursive(
            st.none() | st.booleans() | st.floats() | st.text(max_size=6),
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(
                    st.sampled_from(["patient", "measurements", "events", "resourceType", "entry", "x"]),
                    inner,
                    max_size=3,
                )
            ),
            max_leaves=10,
        ).map(json.dumps),
    ),
    now=st.one_of(st.just(""), st.text(max_size=6), st.floats().map(str)),
)
def test_any_pasted_record_on_the_page_is_shown_back_with_a_reason_never_a_500(
    bundle, tmp_path: Path, record: str, now: str
) -> None:
    page = client(bundle, tmp_path).post("/", data={"action": "record", "record": record, "now_hours": now})
    assert page.status_code in (200, 422), page.text[-500:]
    if page.status_code == 422:
        assert 'id="problems"' in page.text and "SYNTHETIC model, not for clinical use:" in page.text


def test_token_body_limit_and_bind_policy(bundle, tmp_path: Path) -> None:
    api = client(bundle, tmp_path, token="s3cret")
    record = {**json.loads(EXAMPLE.read_text()), "now_hours": 40}
    assert api.post("/predict", json=record).status_code == 401
    assert api.post("/predict", json=record, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert api.post("/predict", json=record, headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert api.get("/model").status_code == 401 and api.get("/health").status_code == 200
    too_big = api.post("/predict", content=b" " * (5 * 1024 * 1024 + 1), headers={"Authorization": "Bearer s3cret"})
    assert too_big.status_code == 413
    assert token_matches(None, None) and not token_matches("a", None) and token_matches("a", "Bearer a")
    assert required_token("127.0.0.1", {}) is None and required_token("::1", {}) is None
    with pytest.raises(ValueError, match="CRSRISK_API_TOKEN"):
        required_token("0.0.0.0", {})
    assert required_token("0.0.0.0", {"CRSRISK_API_TOKEN": "t"}) == "t"


def test_model_endpoint_describes_the_bundle(bundle, tmp_path: Path) -> None:
    document = client(bundle, tmp_path).get("/model").json()
    assert document["bundle_sha256"] == bundle.digest and document["synthetic"] is True
    assert {m["key"] for m in document["models"]} == set(bundle.models)


def test_page_shows_each_probability_band_and_the_synthetic_banner(bundle, tmp_path: Path) -> None:
    api = client(bundle, tmp_path)
    assert "SYNTHETIC model, not for clinical use:" in api.get("/").text
    page = api.post("/", data={"action": "example", "now_hours": "40"})
    assert page.status_code == 200
    assert page.text.lower().count("not for clinical use") == 1  # one banner, saying it once
    assert "Bands for this question, as set in the model bundle: low below 10.0%, high from 30.0%." in page.text
    assert "How the bands are chosen: low is below 0.5 times" in page.text
    expected = predict(json.loads(example_record_text()), model=bundle, now_hours=40, audit=False)
    for p in expected.predictions:
        assert f'data-value="{p["probability"]!r}"' in page.text and f"{100 * p['probability']:.1f}%" in page.text
    assert "interval not available" in page.text or "95% interval" in page.text
    # missing inputs are listed under each question, in groups, not counted as feature columns for the page
    assert "Inputs missing for any model" not in page.text and "<summary>missing inputs</summary>" in page.text
    assert 'id="record-form"' in page.text  # the bedside page keeps its form for the next record
    refused = api.post("/", data={"action": "record", "record": '{"patient": {"age_years": 300}}'})
    assert refused.status_code == 422 and "age_years" in refused.text


def test_page_names_the_hour_when_no_task_is_scored(bundle, tmp_path: Path) -> None:
    # the shipped example (before infusion) is followed to day 28: at hour 700 its follow-up has ended
    page = client(bundle, tmp_path).post("/", data={"action": "example", "now_hours": "700"})
    assert page.status_code == 200 and 'class="task"' not in page.text
    assert "No task is scored at hour 700.0 after infusion (day 29; infusion = day 0):" in page.text


def test_shipped_example_is_the_repositorys_example() -> None:
    assert json.loads(example_record_text()) == json.loads(EXAMPLE.read_text())


def _served_audit(folder: Path) -> dict[str, str]:
    """Where the served log's key and witness live, for the server and for the tests that verify its log."""
    return {"CRSRISK_AUDIT_KEY_FILE": str(folder / "audit.key"), "CRSRISK_AUDIT_WITNESS": str(folder / "witness")}


@pytest.fixture(scope="module")
def server(small_bundle: Path, tmp_path_factory: pytest.TempPathFactory):
    """``crsrisk serve`` with two worker processes, on a free loopback port, with the venv's bin NOT on PATH."""
    folder = tmp_path_factory.mktemp("served")
    audit = folder / "audit.jsonl"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "CRSRISK_API_TOKEN"}
    env["PATH"] = "/usr/bin:/bin"
    env |= _served_audit(folder)  # the server outlives a test: its key and witness must not follow per-test homes
    with local_server(
        serve_command(small_bundle, port, audit),
        f"http://127.0.0.1:{port}/health",
        env=env,
        timeout=120,
        log=folder / "server.log",
    ):
        yield f"http://127.0.0.1:{port}", audit


@pytest.mark.slow
def test_real_server_round_trip(server, bundle, small_cohort: Cohort, monkeypatch: pytest.MonkeyPatch) -> None:
    url, audit = server
    for name, value in _served_audit(audit.parent).items():
        monkeypatch.setenv(name, value)
    before = verify_log(audit).n_records if audit.exists() else 0
    for patient_id in small_cohort.patients["patient_id"].iloc[10:14]:
        record = json.loads(json.dumps(patient_record(small_cohort, patient_id), default=float))
        answer = httpx.post(f"{url}/predict", json={**record, "now_hours": 60}, timeout=30)
        assert answer.status_code == 200
        assert probabilities(answer.json()) == probabilities(
            predict(record, model=bundle, now_hours=60, audit=False).to_dict()
        )
    bad = httpx.post(f"{url}/predict", json={"patient": {"patient_id": "X", "age_years": 500}}, timeout=30)
    assert bad.status_code == 422 and bad.json()["problems"][0]["field"] == "age_years"
    assert httpx.get(f"{url}/openapi.json", timeout=30).json()["paths"].keys() >= {"/predict", "/health", "/model"}
    assert verify_log(audit).ok and verify_log(audit).n_records == before + 4
    marked = json.loads(EXAMPLE.read_text())
    marked["patient"]["patient_id"] = "MRN-0042-SECRET"
    assert httpx.post(f"{url}/predict", json={**marked, "now_hours": 40}, timeout=30).status_code == 200
    marked["patient"]["age_years"] = 500
    assert httpx.post(f"{url}/predict", json=marked, timeout=30).status_code == 422
    server_log = (audit.parent / "server.log").read_text()
    assert "crsrisk serving on http://127.0.0.1" in server_log  # the log is captured ...
    assert "MRN-0042-SECRET" not in server_log and "MRN-0042-SECRET" not in audit.read_text()  # ... and holds no id


@pytest.mark.slow
def test_concurrent_requests_on_two_workers_each_answered_and_audited_once(
    server, bundle, small_cohort: Cohort, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, audit = server
    for name, value in _served_audit(audit.parent).items():
        monkeypatch.setenv(name, value)
    before = verify_log(audit).n_records if audit.exists() else 0
    ids = small_cohort.patients["patient_id"].iloc[20:36].tolist()
    records = [json.loads(json.dumps(patient_record(small_cohort, i), default=float)) for i in ids]

    def post(record: dict) -> httpx.Response:
        return httpx.post(f"{url}/predict", json={**record, "now_hours": 50}, timeout=60)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(post, records))
    assert [a.status_code for a in answers] == [200] * len(ids)
    for record, answer in zip(records, answers):
        assert probabilities(answer.json()) == probabilities(
            predict(record, model=bundle, now_hours=50, audit=False).to_dict()
        )
    check = verify_log(audit)
    assert check.ok and check.n_records == before + len(ids)


@pytest.mark.slow
@needs_chromium
def test_api_docs_render_from_the_server_alone(server) -> None:
    from playwright.sync_api import sync_playwright

    url, _ = server
    asked: list[str] = []
    with sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page()
        page.on("request", lambda request: asked.append(request.url))
        page.goto(url + "/docs")
        title = page.wait_for_selector(".swagger-ui .info .title", timeout=30_000).inner_text()
        page.wait_for_selector("#operations-default-predict_predict_post", timeout=30_000)
        browser.close()
    assert title.startswith("crsrisk")
    assert asked and all(u.startswith(url) for u in asked), [u for u in asked if not u.startswith(url)]


@pytest.mark.slow
@needs_chromium
def test_page_in_chromium_shows_the_numbers_predict_gives(server, bundle, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    url, _ = server
    with sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(url + "/")
        banner = page.inner_text("#banner")
        page.fill("#now_hours", "40")
        page.click("#score-example")
        page.wait_for_selector("#results")
        identity = {
            field.get_attribute("data-field"): field.inner_text() for field in page.query_selector_all("#patient dd")
        }
        above = page.evaluate(
            "document.querySelector('#patient').getBoundingClientRect().bottom"
            " <= document.querySelector('section.task').getBoundingClientRect().top"
        )
        shown = {
            section.get_attribute("data-task"): (
                section.query_selector(".probability").inner_text(),
                section.query_selector(".probability").get_attribute("data-value"),
                section.query_selector(".band").inner_text(),
            )
            for section in page.query_selector_all("section.task")
        }
        screenshot = tmp_path / "bedside-page.png"
        page.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    print(f"screenshot of the bedside page: {screenshot}")
    assert banner.startswith("SYNTHETIC model, not for clinical use:") and banner.lower().count("clinical use") == 1
    assert identity == {
        "patient": "EXAMPLE-001",
        "age": "3.1 years",
        "sex": "F",
        "diagnosis": "B-ALL",
        "product": "other (CD28 costimulation)",
        "dose": "1.48 x 10^6 CAR T cells/kg",
        "centre": "C1",
    }
    assert above  # the patient is named above the risks
    expected = predict(json.loads(EXAMPLE.read_text()), model=bundle, now_hours=40, audit=False)
    assert set(shown) == {p["task"] for p in expected.predictions}
    for p in expected.predictions:
        text, value, band = shown[p["task"]]
        assert float(value) == p["probability"] and text == f"{100 * p['probability']:.1f}%"
        cutoffs = bundle.models[p["model_key"]].bands  # the test bundle's: low 0.1, high 0.3
        assert (
            band
            == (
                "low"
                if p["probability"] < cutoffs["low"]
                else "high"
                if p["probability"] >= cutoffs["high"]
                else "intermediate"
            )
            + " risk"
        )
    assert screenshot.stat().st_size > 20_000


@pytest.mark.slow
def test_trained_bundle_states_an_interval_around_each_probability(trained, tmp_path: Path) -> None:
    _, _, result = trained
    api = client(load_model(result.bundle_dir), tmp_path)
    answer = api.post("/predict", json={**json.loads(EXAMPLE.read_text()), "now_hours": 40}).json()
    for p in answer["predictions"]:
        low, high = p["probability_interval"]
        assert low <= p["probability"] <= high and high - low > 0
    page = api.post("/", data={"action": "example", "now_hours": "40"}).text
    assert "95% interval" in page and "interval not available" not in page


def test_the_risk_trajectory_reaches_the_page_and_the_api(bundle, tmp_path: Path) -> None:
    from crsrisk import risk_trajectory

    api = client(bundle, tmp_path)
    page = api.post("/", data={"action": "example", "now_hours": "60"}).text
    assert 'id="trajectory"' in page and "data:image/png;base64," in page
    record = json.loads(EXAMPLE.read_text())
    answer = api.post("/predict", json={**record, "now_hours": 60, "trajectory": True}).json()
    expected = risk_trajectory(record, model=bundle, until_hours=60, audit=False).to_dict()
    assert answer["trajectory"] == json.loads(json.dumps(expected)) and answer["trajectory"]["points"]
    assert "trajectory" not in api.post("/predict", json={**record, "now_hours": 60}).json()


def test_a_fhir_bundle_is_scored_like_crsrisk_predict_scores_it(bundle, small_cohort: Cohort, tmp_path: Path) -> None:
    from fhir_export import patient_bundle

    patient_id = small_cohort.patients["patient_id"].iloc[3]
    fhir = patient_bundle(
        0,
        small_cohort.patients.iloc[3].to_dict(),
        small_cohort.measurements[small_cohort.measurements.patient_id == patient_id],
        small_cohort.events[small_cohort.events.patient_id == patient_id],
    )
    fhir = json.loads(json.dumps(fhir, default=float))
    api = client(bundle, tmp_path)
    answer = api.post("/predict", json={"fhir_bundle": fhir, "now_hours": 40})
    assert answer.status_code == 200, answer.text
    assert probabilities(answer.json()) == probabilities(
        predict(fhir, model=bundle, now_hours=40, audit=False).to_dict()
    )
    both = api.post("/predict", json={"fhir_bundle": fhir, "patient": {"patient_id": "x"}})
    assert both.status_code == 422 and "either patient" in both.json()["detail"]
    page = api.post("/", data={"action": "record", "record": json.dumps(fhir), "now_hours": "40"})
    assert page.status_code == 200 and 'class="probability' in page.text


def assert_refused(answer) -> list[dict]:
    """A 422 whose body is valid UTF-8 JSON naming each problem's field."""
    assert answer.status_code == 422, answer.text
    problems = json.loads(answer.content.decode("utf-8"))["problems"]
    assert problems and all(isinstance(p["field"], str) and p["message"] for p in problems)  # "" if the key was ""
    return problems


def example() -> dict:
    return json.loads(EXAMPLE.read_text())


def test_regression_lone_surrogate_in_a_value_is_a_422_shown_escaped(bundle, tmp_path: Path) -> None:
    """Was: HTTP 500, JSONResponse raised UnicodeEncodeError echoing the value."""
    body = json.dumps({**example(), "x": "\ud800"})
    problems = assert_refused(client(bundle, tmp_path).post("/predict", content=body, headers=JSON))
    assert problems[0]["field"] == "x" and problems[0]["value"] == "\ud800"


def test_regression_lone_surrogate_in_a_key_is_a_422(bundle, tmp_path: Path) -> None:
    """Was: HTTP 500 (the key echoed in the refusal)."""
    record = example()
    record["patient"]["\ud800"] = 1
    assert_refused(client(bundle, tmp_path).post("/predict", content=json.dumps({**record, "\udfff": 1}), headers=JSON))


def test_regression_raw_invalid_utf8_bytes_are_a_422(bundle, tmp_path: Path) -> None:
    """Was: HTTP 500 for the bytes ED A0 80 (a UTF-8-encoded surrogate), which json reads as "\\ud800"."""
    text = json.dumps({**example(), "now_hours": 40}, ensure_ascii=False).replace("EXAMPLE-001", "\ud800")
    for raw in (text.encode("utf-8", "surrogatepass"), b"\xed\xa0\x80", b'{"patient": "\xed\xa0\x80"}'):
        assert_refused(client(bundle, tmp_path).post("/predict", content=raw, headers=JSON))


def test_regression_body_that_is_just_a_lone_surrogate_is_a_422(bundle, tmp_path: Path) -> None:
    """Was: HTTP 500 for the body "\\ud800"."""
    problems = assert_refused(client(bundle, tmp_path).post("/predict", content=b'"\\ud800"', headers=JSON))
    assert problems[0]["value"] == "\ud800"


def test_regression_lone_surrogate_pasted_on_the_page_is_shown_back(bundle, tmp_path: Path) -> None:
    page = client(bundle, tmp_path).post(
        "/", data={"action": "record", "record": json.dumps({**example(), "x": "\ud800"})}
    )
    assert page.status_code == 422 and "\\ud800" in page.content.decode("utf-8")


def damage_last_line(log: Path, keep: int, newline: bool = True) -> None:
    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(b"".join(lines[:-1]) + lines[-1][:keep] + (b"\n" if newline else b""))


def test_regression_damaged_audit_log_is_a_503_with_the_reason_and_health_says_so(bundle, tmp_path: Path) -> None:
    """Was: a bare "Internal Server Error" for every /predict while the CLI, in the same state, said why."""
    api = client(bundle, tmp_path)
    assert api.post("/predict", json=example()).status_code == 200
    assert api.get("/health").json()["audit_log"] == {"enabled": True, "ok": True, "problem": None}
    damage_last_line(tmp_path / "audit.jsonl", keep=40)
    answer = api.post("/predict", json=example())
    assert answer.status_code == 503
    assert "the last complete line is not an audit record" in answer.json()["detail"]
    health = api.get("/health").json()
    assert health["status"] == "degraded" and "not an audit record" in health["audit_log"]["problem"]
    page = api.post("/", data={"action": "example", "record": "", "now_hours": ""})
    assert page.status_code == 503 and "audit log cannot be appended to" in page.text


def test_a_torn_last_line_is_moved_aside_and_scoring_goes_on(bundle, tmp_path: Path) -> None:
    api = client(bundle, tmp_path)
    assert api.post("/predict", json=example()).status_code == 200
    damage_last_line(tmp_path / "audit.jsonl", keep=40, newline=False)
    assert api.post("/predict", json=example()).status_code == 200
    assert api.get("/health").json()["status"] == "ok"


@pytest.mark.parametrize(
    "field, value", [("now_hours", True), ("now_hours", False), ("top", True), ("trajectory", "yes"), ("trajectory", 1)]
)
def test_regression_booleans_are_not_numbers_and_trajectory_is_a_boolean(
    bundle, tmp_path: Path, field: str, value: object
) -> None:
    """Was: now_hours true scored at hour 1.0, top true gave 1, trajectory "yes" accepted."""
    problems = assert_refused(client(bundle, tmp_path).post("/predict", json={**example(), field: value}))
    assert problems[0]["field"] == field


def test_regression_huge_numbers_are_refused_or_scored_never_a_500(bundle, tmp_path: Path) -> None:
    api = client(bundle, tmp_path)
    for field in ("now_hours", "top"):
        for value in ("1" + "0" * 400, "1e999", "-1e999", "18446744073709551616"):
            text = json.dumps(example())[:-1] + f', "{field}": {value}}}'
            assert api.post("/predict", content=text, headers=JSON).status_code in (200, 422)


def _raw(text: str) -> bytes:
    """JSON text as a client might send it: UTF-8, a lone surrogate as its raw bytes (ED A0 80) when it has one."""
    return text.encode("utf-8", "surrogatepass")


def _with_surrogate(document: object, text: str) -> object:
    """The document with ``text`` (which may hold a lone surrogate) put in as a key and as a value, at every level."""
    if isinstance(document, dict):
        return {**{k: _with_surrogate(v, text) for k, v in document.items()}, text: text}
    if isinstance(document, list):
        return [_with_surrogate(v, text) for v in document] + [text]
    return document


@FUZZ
@given(
    record=records(),
    text=any_text,
    number=extreme_numbers,
    where=st.sampled_from(["now_hours", "top", "trajectory"]),
    flag=st.booleans(),
    everywhere=st.booleans(),
    raw=st.booleans(),
)
def test_fuzz_rest_surrogates_raw_bytes_booleans_and_huge_numbers_are_never_a_500(
    bundle, tmp_path: Path, record: dict, text: str, number: object, where: str, flag: bool, everywhere: bool, raw: bool
) -> None:
    """Lone surrogates in every position (keys and values, at each level), as JSON escapes or raw bytes; booleans
    and huge numbers in the request's own fields: a 200 or a 422 naming the problem, never a 500."""
    api = client(bundle, tmp_path)
    body = _with_surrogate(record, text) if everywhere else record
    try:
        text_body = json.dumps({**body, where: flag if flag else number}, ensure_ascii=not raw, default=str)
    except (TypeError, ValueError):
        return  # not JSON-representable: no client can send it
    answer = api.post("/predict", content=_raw(text_body), headers=JSON)
    assert answer.status_code in (200, 422), answer.text
    if answer.status_code == 422:
        assert_refused(answer)
    page = api.post("/", data={"action": "record", "record": text_body, "now_hours": ""})
    assert page.status_code in (200, 422), page.text[-500:]


@FUZZ
@given(keep=st.integers(0, 400), newline=st.booleans(), junk=st.binary(max_size=20))
def test_fuzz_rest_damaged_audit_log_is_a_503_or_recovered_never_a_500(
    bundle, tmp_path_factory, keep: int, newline: bool, junk: bytes
) -> None:
    folder = tmp_path_factory.mktemp("audit")
    api = client(bundle, folder)
    assert api.post("/predict", json=example()).status_code == 200
    log = folder / "audit.jsonl"
    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(b"".join(lines[:-1]) + lines[-1][:keep] + junk + (b"\n" if newline else b""))
    answer = api.post("/predict", json=example())
    assert answer.status_code in (200, 503), answer.text
    health = api.get("/health").json()
    assert (health["status"] == "ok") == (answer.status_code == 200), health
    if answer.status_code == 503:
        assert answer.json()["audit_log"] == health["audit_log"]["problem"]
