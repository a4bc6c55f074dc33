"""``crsrisk monitor``: audited predictions joined with later outcomes, judged per period against a plan.

The scenario: a bundle calibrated on one synthetic cohort; predictions through the real audit log for an
unshifted cohort and then for a shifted one (the adult-centre shift: case mix and a centre effect on outcomes).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from crsrisk.audit import AuditLog, prediction_record
from crsrisk.bundle.store import Bundle, load_bundle
from crsrisk.cli import app
from crsrisk.cohort.io import write_cohort
from crsrisk.cohort.validated import Cohort
from crsrisk.errors import InputError
from crsrisk.monitoring.join import (
    EVENT,
    NO_EVENT,
    PENDING,
    PRIOR,
    Models,
    Outcomes,
    PeriodRule,
    join,
    outcome_status,
)
from crsrisk.monitoring.plan import DEFAULT_PLAN, load_plan, plan_from_mapping
from crsrisk.monitoring.report import write_report
from crsrisk.monitoring.run import monitor
from crsrisk.monitoring.stream import Prediction
from crsrisk.scoring import predict_cohort
from crsrisk.tasks import DEFAULT_TASKS
from monitor_support import SHIFT, calibrated_bundle, joined, rekeyed, simulated

CHAIN_KEY, PSEUDONYM_KEY = "c" * 64, "p" * 64
PER_HALF = 400  # infusions per half of the stream; each is scored by two models at hour 0
EVERY = 400  # predictions per period: 200 infusions, so each half is two periods


def _keys(mp: pytest.MonkeyPatch, witness: Path) -> None:
    mp.setenv("CRSRISK_AUDIT_KEY", CHAIN_KEY)
    mp.setenv("CRSRISK_AUDIT_SALT", PSEUDONYM_KEY)
    mp.setenv("CRSRISK_AUDIT_WITNESS", str(witness))


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch, scenario: dict) -> None:
    """The keys the scenario's logs were written with (the conftest clears them for every test)."""
    _keys(monkeypatch, scenario["witness"])


@pytest.fixture(scope="module")
def scenario(small_cohort: Cohort, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The bundle, the outcome cohort and two logs: an unshifted stream, and one that drifts half-way."""
    work = tmp_path_factory.mktemp("monitor")
    bundle = load_bundle(calibrated_bundle(small_cohort, work / "bundle"))
    first = rekeyed(simulated(work / "first", PER_HALF, 202), "U")
    second = rekeyed(simulated(work / "second", PER_HALF, 303, SHIFT), "S")
    outcomes = joined(first, second)
    with pytest.MonkeyPatch.context() as mp:
        _keys(mp, work / "witness")
        logs = {"drifting": work / "drifting.jsonl", "unshifted": work / "unshifted.jsonl"}
        for name, halves in (("drifting", (first, second)), ("unshifted", (first,))):
            for cohort in halves:
                ids = cohort.patients["patient_id"].tolist()
                for start in range(0, len(ids), 100):  # a batch record per 100 infusions, as a ward would score
                    predict_cohort(cohort.subset(ids[start : start + 100]), bundle, at_hours=0, audit_log=logs[name])
    write_cohort(outcomes, work / "outcomes")
    return {"bundle": bundle, "outcomes": outcomes, "folder": work / "outcomes", "witness": work / "witness", **logs}


def _flagged(document: dict) -> dict[str, set[str]]:
    return {p["period"]: {f["rule"] for f in p["flags"]} for p in document["periods"]}


@pytest.mark.slow
def test_a_drift_half_way_is_flagged_in_the_second_half_and_never_in_the_first(scenario: dict, keys: None) -> None:
    result = monitor(scenario["drifting"], scenario["outcomes"], [scenario["bundle"]], every=EVERY)
    document = result.document
    assert document["audit_log"]["verified"] is True and document["volume"] == 4 * EVERY
    periods = document["periods"]
    assert [p["period"] for p in periods] == ["1-400", "401-800", "801-1200", "1201-1600"]
    assert all(p["flags"] == [] for p in periods[:2])  # the unshifted half
    for period in periods[2:]:  # input drift and patients outside the training population from the first shifted one
        assert {"input drift", "patients outside the training population"} <= _flagged(document)[period["period"]]
        for group in period["groups"]:
            assert group["drift"]["psi_max"] > 0.25 and "age_years" in group["drift"]["drifted"]
    # the centre effect: more severe CRS than predicted, flagged once it held in two consecutive periods
    assert "under-prediction" in _flagged(document)["1201-1600"]
    by_oe = {(p["period"], g["task"]): g["metrics"]["oe"] for p in periods for g in p["groups"]}
    assert by_oe[("1201-1600", "severe_crs")]["ci_low"] > 1.25
    assert by_oe[("1-400", "severe_crs")]["ci_low"] < 1 < by_oe[("1-400", "severe_crs")]["ci_high"]
    # every group names its model version, task and landmark; the super-model is judged at its grid point
    assert {(g["task"], g["landmark"]) for g in periods[0]["groups"]} == {
        ("severe_crs", "0h"),
        ("severe_crs_dynamic", "0h"),
    }
    assert all(g["model_sha256"] == scenario["bundle"].digest for p in periods for g in p["groups"])


@pytest.mark.slow
def test_an_unshifted_stream_raises_no_flag(scenario: dict, keys: None) -> None:
    document = monitor(scenario["unshifted"], scenario["folder"], [scenario["bundle"]], every=EVERY).document
    assert document["flags"] == [] and all(p["flags"] == [] for p in document["periods"])
    assert len(document["periods"]) == 2
    for group in (g for p in document["periods"] for g in p["groups"]):
        assert group["labelled"] + group["pending"] + group["prior_outcome"] + group["unmatched"] == group["volume"]
        assert group["drift"]["psi_max"] < 0.25 and group["drift"]["outside_population_share"] == 0


@pytest.mark.slow
def test_cli_writes_monitor_json_html_and_plots_and_prints_the_flags(
    scenario: dict, keys: None, tmp_path: Path
) -> None:
    out = tmp_path / "report"
    args = ["monitor", "--audit-log", str(scenario["drifting"]), "--outcomes", str(scenario["folder"])]
    result = CliRunner().invoke(
        app, [*args, "--model", str(scenario["bundle"].path), "--every", str(EVERY), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "FLAG 1201-1600" in result.output and "FLAG 1-400" not in result.output
    document = json.loads((out / "monitor.json").read_text())
    assert [len(p["flags"]) > 0 for p in document["periods"]] == [False, False, True, True]
    assert all(isinstance(p["flags"], list) for p in document["periods"])
    assert {p.name for p in (out / "plots").iterdir()} == {
        "calibration_over_time.png",
        "oe_over_time.png",
        "drift_heat_map.png",
    }
    assert (out / "report.html").read_text().count("data:image/png;base64,") == 3


def _tiny(cohort: Cohort) -> Cohort:
    """Four infusions with known outcomes for severe CRS by day 28: an event at 100 h (E), none with complete
    follow-up (N), none with follow-up ending at 200 h (P: pending), and grade 3 at 10 h (B: before 36 h)."""
    ids = cohort.patients["patient_id"].iloc[:4].tolist()
    tiny = cohort.subset(ids)
    names = dict(zip(ids, ["E", "N", "P", "B"]))
    patients = tiny.patients.assign(patient_id=tiny.patients["patient_id"].map(names))
    patients["followup_hours"] = [672.0, 672.0, 200.0, 672.0]
    measurements = tiny.measurements.assign(patient_id=tiny.measurements["patient_id"].map(names))
    events = tiny.events.iloc[:0].copy()
    rows = [("E", 100.0, "crs_grade", 3.0), ("B", 10.0, "crs_grade", 3.0)]
    events = events.reindex(range(len(rows)))
    events[["patient_id", "hours_since_infusion", "event", "value"]] = rows
    return Cohort(patients, measurements, events.astype(tiny.events.dtypes.to_dict()), dict(tiny.metadata))


def test_pending_is_never_a_negative_and_the_join_equals_a_hand_computation(
    small_cohort: Cohort, tmp_path: Path
) -> None:
    cohort = _tiny(small_cohort)
    log = AuditLog(tmp_path / "log.jsonl")
    model = {"bundle_sha256": "f" * 64}
    cases = [("E", 36.0, 0.2), ("N", 36.0, 0.2), ("P", 36.0, 0.2), ("B", 36.0, 0.2), ("E", 0.0, 0.4), ("X", 0.0, 0.5)]
    for pid, hours, p in cases:  # X: no such patient in the outcome cohort
        outputs = [
            {
                "task": "severe_crs",
                "landmark_hours": hours,
                "horizon_hours": 672 - hours,
                "probability": p,
                "band": "intermediate",
            }
        ]
        log.append(prediction_record(log, model, pid, "0" * 64, outputs, None, hours))
    plan = plan_from_mapping({"min_labelled": 1, "min_events": 0, "n_boot": 50, "rules": []})
    document = monitor(log.path, cohort, [], plan, every=100).document
    groups = {g["landmark"]: g for g in document["periods"][0]["groups"]}
    at36, at0 = groups["36h"], groups["0h"]
    # by hand: at 36 h, E is an event, N a non-event, P pending (follow-up 200 h < 672 h), B had it before 36 h
    assert (at36["volume"], at36["labelled"], at36["events"], at36["pending"], at36["prior_outcome"]) == (4, 2, 1, 1, 1)
    assert at36["observed_rate"] == 0.5  # 1 of 2 labelled: the pending one is not a 0
    assert at36["metrics"]["oe"]["value"] == pytest.approx(1 / 0.4)
    assert (at0["volume"], at0["unmatched"], at0["labelled"], at0["events"]) == (2, 1, 1, 1)
    assert at0["metrics"]["oe"]["value"] == pytest.approx(1 / 0.4)
    assert "none of" not in " ".join(document["notes"])
    # the status rule on its own, against the same hand computation
    outcomes = Outcomes.of(cohort, b"k" * 32)
    task = DEFAULT_TASKS["severe_crs"]
    codes = outcomes.arrays.codes(["E", "N", "P", "B"])
    status = outcome_status(task, outcomes.arrays, codes, np.full(4, 36.0), task.occurrence(outcomes.arrays))
    assert status.tolist() == [EVENT, NO_EVENT, PENDING, PRIOR]


def test_periods_are_calendar_months_of_the_record_time(small_cohort: Cohort) -> None:
    def at(seq: int, when: str, pid: str) -> Prediction:
        return Prediction(seq, when, "a" * 64, "severe_crs", 36.0, 0.3, "intermediate", pid, 40.0)

    stream = [
        at(0, "2026-01-31T23:59:59.999999+00:00", "x"),
        at(1, "2026-02-01T00:00:00.000000+00:00", "y"),
        at(2, "2026-02-03T00:00:00.000000+00:00", "y"),
    ]
    outcomes = Outcomes.of(small_cohort.subset(small_cohort.patients["patient_id"].iloc[:3]), b"k" * 32)
    periods = list(join(stream, outcomes, Models(), PeriodRule()))
    assert [(p.key, p.first_seq, p.last_seq) for p in periods] == [("2026-01", 0, 0), ("2026-02", 1, 2)]
    assert [sum(s.counts["volume"] for s in p.groups.values()) for p in periods] == [1, 2]
    # these pseudonyms match no patient of the cohort: every prediction is unmatched, none is a negative
    assert all(s.counts["unmatched"] == s.counts["volume"] and not s.y for p in periods for s in p.groups.values())


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["monitor", *args])
    return result.exit_code, result.output


def test_bad_inputs_exit_2_naming_the_field(small_cohort_dir: Path, tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "log.jsonl")
    output = {"task": "severe_crs", "landmark_hours": 0.0, "horizon_hours": 672.0, "probability": 0.2, "band": "low"}
    log.append(prediction_record(log, {"bundle_sha256": "f" * 64}, "SIM00001", "0" * 64, [output], None, 0.0))
    good = ["--audit-log", str(log.path), "--outcomes", str(small_cohort_dir), "--out", str(tmp_path / "r")]
    assert _cli(*good)[0] == 0
    code, text = _cli("--audit-log", str(tmp_path / "missing.jsonl"), *good[2:])
    assert code == 2 and "--audit-log" in text
    code, text = _cli(*good, "--period", "fortnight")
    assert code == 2 and "--period" in text and "fortnight" in text
    code, text = _cli(*good, "--every", "0")
    assert code == 2 and "--every" in text
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump({"rules": [{"name": "x", "metric": "oe", "below": "low", "action": "update"}]}))
    code, text = _cli(*good, "--plan", str(plan))
    assert code == 2 and "rules.0.below" in text
    plan.write_text("rules: [unclosed")
    code, text = _cli(*good, "--plan", str(plan))
    assert code == 2 and "not valid YAML" in text
    code, text = _cli(
        "--audit-log", str(log.path), "--outcomes", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r")
    )
    assert code == 2 and "--outcomes" in text


def test_the_default_plan_is_valid_and_documented() -> None:
    plan = load_plan()
    text = DEFAULT_PLAN.read_text()
    assert {r.metric for r in plan.rules} >= {"calibration_slope", "oe", "auroc", "drifted_features"}
    slope = next(r for r in plan.rules if r.metric == "calibration_slope")
    assert (slope.below, slope.consecutive, slope.action) == (0.8, 2, "update")
    assert all(f"{field}:" in text for field in ("min_labelled", "min_events", "min_inputs", "consecutive", "action"))


_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
_rule = st.fixed_dictionaries(
    {},
    optional={
        "name": _values,
        "metric": st.sampled_from(["oe", "auroc", "psi_max", "nonsense"]) | _values,
        "below": _values,
        "above": _values,
        "ci_excludes": _values,
        "consecutive": _values,
        "action": st.sampled_from(["update", "review", "panic"]) | _values,
    },
)
_plan = st.fixed_dictionaries(
    {},
    optional={
        "version": _values,
        "min_labelled": _values,
        "min_events": _values,
        "drift": _values,
        "n_boot": _values,
        "rules": st.lists(_rule, max_size=3) | _values,
    },
)


@given(_plan | _values)
def test_fuzzed_plans_are_valid_or_an_input_error(data: object) -> None:
    try:
        plan_from_mapping(data)
    except InputError:
        pass


@given(st.text(max_size=200))
def test_fuzzed_plan_text_is_valid_or_an_input_error(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    path = tmp_path_factory.mktemp("plan") / "plan.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass") if text.isprintable() else path.write_bytes(
        text.encode("utf-8", "surrogatepass")
    )
    try:
        load_plan(path)
    except InputError:
        pass


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium not installed (scripts/test.sh installs it)")
def test_the_report_renders_in_headless_chromium_with_its_plots(scenario: dict, keys: None, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    document = monitor(scenario["drifting"], scenario["outcomes"], [scenario["bundle"]], every=EVERY).document
    paths = write_report(document, tmp_path / "report")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(paths["html"].as_uri())
        images = page.evaluate(
            "Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight])"
        )
        rows = page.evaluate("document.querySelectorAll('tr.flagged').length")
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        browser.close()
    assert [alt for alt, *_ in images] == ["calibration_over_time", "oe_over_time", "drift_heat_map"]
    assert all(done and width > 500 and height > 300 for _, done, width, height in images)
    assert rows == 4  # two shifted periods x two models
    assert (tmp_path / "report.png").stat().st_size > 50_000


@pytest.mark.slow
def test_the_mlflow_run_is_linked_to_the_registered_model_version(scenario: dict, keys: None, tmp_path: Path) -> None:
    import dataclasses

    import mlflow

    from crsrisk.monitoring.tracking import log_monitoring

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("crsrisk")
    parent = client.create_run(experiment, run_name="train").info.run_id
    child = client.create_run(experiment, tags={"mlflow.parentRunId": parent}).info.run_id
    client.create_registered_model("crsrisk-severe_crs-0h")
    client.create_model_version("crsrisk-severe_crs-0h", f"runs:/{child}/model_severe_crs", run_id=child)
    bundle: Bundle = scenario["bundle"]
    trained = dataclasses.replace(bundle, metadata=dataclasses.replace(bundle.metadata, mlflow_run_id=parent))
    document = monitor(scenario["drifting"], scenario["outcomes"], [trained], every=EVERY).document
    paths = write_report(document, tmp_path / "report")
    run_id, linked = log_monitoring(uri, document, paths, [trained])
    assert linked == [("crsrisk-severe_crs-0h", "1")]
    run = client.get_run(run_id)
    assert run.data.tags["registered_model_versions"] == "crsrisk-severe_crs-0h/1"
    assert run.data.tags["model_sha256"] == bundle.digest and run.data.tags["flags"] == str(len(document["flags"]))
    history = client.get_metric_history(run_id, f"{bundle.digest[:8]}/severe_crs/0h/oe")
    assert [m.step for m in history] == [0, 1, 2, 3] and history[-1].value > 1.25
    assert client.get_model_version("crsrisk-severe_crs-0h", "1").tags["monitoring_run_id"] == run_id
    artifacts = {a.path for a in client.list_artifacts(run_id, "monitoring")}
    assert {"monitoring/monitor.json", "monitoring/report.html"} <= artifacts


def test_drift_figures_by_hand() -> None:
    from crsrisk.cohort.population import bin_index, feature_bins
    from crsrisk.monitoring.drift import homogeneity_p, population_stability, reference_for

    values = np.arange(1.0, 101.0)[:, None]
    bins = feature_bins(values)
    assert bins["rows"] == 100 and len(bins["edges"][0]) == 9 and bins["counts"][0] == [10] * 10
    assert bin_index(bins["edges"][0], np.array([1.0, 10.9, 11.0, 100.0])).tolist() == [0, 0, 1, 9]
    same = np.array(bins["counts"][0], dtype=float)
    assert population_stability(same, same) == 0.0 and homogeneity_p(same, same) == pytest.approx(1.0)
    shifted = np.array([0, 0, 0, 0, 0, 10, 10, 20, 30, 30], dtype=float)
    a, e = (shifted + 0.5) / (100 + 5), (same + 0.5) / (100 + 5)
    assert population_stability(shifted, same) == pytest.approx(float(np.sum((a - e) * np.log(a / e))))
    assert homogeneity_p(shifted, same) < 1e-6
    # a bundle made before monitoring recorded bins: missingness and range only, said in a note
    old = {"models": {"m": {"features": ["x"], "low": [1.0], "high": [9.0], "missing": [0.1], "row_missing_mean": 0.1}}}
    reference, note = reference_for(old, "m", None)
    assert reference is not None and reference.edges is None and "PSI" in (note or "")
    assert reference_for(old, "m", 12.0)[0] is None  # a super-model without per-hour bins: not compared pooled


def test_the_outcome_cohort_can_be_a_fhir_source_read_directly(small_cohort: Cohort, tmp_path: Path) -> None:
    from fhir_export import cohort_bundles

    ids = small_cohort.patients["patient_id"].iloc[:5].tolist()
    part = small_cohort.subset(ids)
    folder = tmp_path / "fhir"
    folder.mkdir()
    for i, bundle in enumerate(cohort_bundles(part.patients, part.measurements, part.events)):
        (folder / f"patient-{i}.json").write_text(json.dumps(bundle))
    log = AuditLog(tmp_path / "log.jsonl")
    for pid in ids:
        output = {
            "task": "severe_crs",
            "landmark_hours": 0.0,
            "horizon_hours": 672.0,
            "probability": 0.2,
            "band": "low",
        }
        log.append(prediction_record(log, {"bundle_sha256": "f" * 64}, pid, "0" * 64, [output], None, 0.0))
    plan = plan_from_mapping({"n_boot": 50, "rules": []})
    document = monitor(log.path, folder, [], plan, every=100).document
    (group,) = document["periods"][0]["groups"]
    assert group["volume"] == 5 and group["unmatched"] == 0 and group["matched"] == 5
    assert document["outcomes"]["infusions"] == 5
