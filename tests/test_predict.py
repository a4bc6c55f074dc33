"""The clinician path: additivity, batch = one-by-one, task applicability, refusals, no mlflow/shap import."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from crsrisk.cli import app
from crsrisk.cohort.validated import Cohort
from crsrisk.errors import CohortValidationError
from crsrisk.scoring import predict, predict_cohort
from tests_support import BATCH_CSV_COLUMNS, patient_record, run_in_processes


def test_attributions_add_up_to_the_raw_score(small_cohort: Cohort, small_bundle: Path) -> None:
    some = small_cohort.patients["patient_id"].iloc[:15]
    for patient_id in some:
        result = predict(patient_record(small_cohort, patient_id), model=small_bundle, now_hours=40, audit=False)
        assert result.predictions
        for p in result.to_dict()["predictions"]:
            total = p["base_value"] + sum(c["shap"] for c in p["contributions"])
            assert total == pytest.approx(p["raw_score"], abs=1e-4)
            assert len(p["contributions"]) > 100  # every feature, not just the top ones
            shaps = [abs(c["shap"]) for c in p["contributions"]]
            assert shaps == sorted(shaps, reverse=True)
            assert 0 <= p["probability"] <= 1 and p["band"] in ("low", "intermediate", "high")
            assert set(p["contributions"][0]) >= {"feature", "value", "unit", "shap", "phrase"}


def test_batch_equals_one_by_one(small_cohort: Cohort, small_bundle: Path) -> None:
    batch = predict_cohort(small_cohort, small_bundle)
    assert set(batch["task"]) == {"severe_crs", "icans", "severe_crs_dynamic", "icans_dynamic", "toci_refractory"}
    assert set(batch.loc[batch["task"] == "icans_dynamic", "landmark_hours"]) == set(np.arange(0, 169, 12.0))
    for row in batch.sample(40, random_state=1).itertuples():
        # A landmark is known from just after its hour on (a first dose at hour t is known after t).
        now = float(np.nextafter(row.landmark_hours, np.inf)) if row.task == "toci_refractory" else row.landmark_hours
        single = predict(patient_record(small_cohort, row.patient_id), model=small_bundle, now_hours=now, audit=False)
        match = [p for p in single.predictions if p["task"] == row.task]
        occurred = [o for o in single.already_occurred if o["task"] == row.task]
        if occurred:  # the outcome happened at the very hour of the landmark: reported, not scored
            assert occurred[0]["hours"] == row.landmark_hours
            continue
        assert match and match[0]["probability"] == pytest.approx(row.probability, abs=1e-6)
        assert match[0]["horizon_hours"] == row.horizon_hours


def test_applicability_depends_on_time_and_course(small_cohort: Cohort, small_bundle: Path) -> None:
    events = small_cohort.events
    treated = events.loc[events["event"] == "tocilizumab", "patient_id"].iloc[0]
    first = events[(events["patient_id"] == treated) & (events["event"] == "tocilizumab")]["hours_since_infusion"].min()
    record = patient_record(small_cohort, treated)
    before = predict(record, model=small_bundle, now_hours=first - 0.5, audit=False)
    assert "toci_refractory" in {s["task"] for s in before.not_applicable}
    after = predict(record, model=small_bundle, now_hours=first + 1, audit=False)
    toci = [p for p in after.predictions if p["task"] == "toci_refractory"]
    assert toci and toci[0]["landmark_hours"] == first
    pre = predict(record, model=small_bundle, now_hours=0, audit=False)
    assert {p["landmark_hours"] for p in pre.predictions} == {0.0}


@pytest.mark.parametrize(
    "change, field, shown",
    [({"unit": "mg/L"}, "unit", "mg/L"), ({"value": -5}, "value", "-5"), ({"analyte": "il99"}, "analyte", "il99")],
)
def test_bad_input_is_refused_naming_field_and_value(
    small_cohort: Cohort, small_bundle: Path, change: dict, field: str, shown: str
) -> None:
    record = patient_record(small_cohort, small_cohort.patients["patient_id"].iloc[0])
    il6 = next(m for m in record["measurements"] if m["analyte"] == "il6")
    il6.update(change)
    with pytest.raises(CohortValidationError) as caught:
        predict(record, model=small_bundle, audit=False)
    assert any(p.field == field and shown in str(p) for p in caught.value.problems), str(caught.value)


def test_missing_inputs_are_allowed_and_listed(small_bundle: Path) -> None:
    record = {
        "patient": {"patient_id": "NEW", "age_years": 7, "product": "tisagenlecleucel"},
        "measurements": [{"hours_since_infusion": 10, "analyte": "il6", "value": 2400, "unit": "pg/mL"}],
    }
    result = predict(record, model=small_bundle, now_hours=36, audit=False)
    assert "baseline_ldh" in result.missing_inputs and "il6_max" not in result.missing_inputs
    il6 = next(
        c
        for p in result.predictions
        if p["task"] == "severe_crs"
        for c in p["contributions"]
        if c["feature"] == "il6_max"
    )
    assert "2,400 pg/mL" in il6["phrase"]


def il6_record(*measured: tuple[float, float]) -> dict:
    """A new patient with only the given (hours, IL-6 pg/mL) measurements, one before infusion among them."""
    return {
        "patient": {"patient_id": "NEW", "age_years": 7, "product": "tisagenlecleucel"},
        "measurements": [
            {"hours_since_infusion": h, "analyte": "il6", "value": v, "unit": "pg/mL"}
            for h, v in ((-10.0, 5.0), *measured)
        ],
    }


def trend_phrases(result) -> list[str]:
    """The IL-6 trend's phrase in every prediction that reads it."""
    return [c["phrase"] for p in result.predictions for c in p["contributions"] if c["feature"] == "il6_log_slope"]


@pytest.mark.parametrize(
    "measured, said",
    [
        (((4.0, 40.0), (16.0, 2400.0)), "IL-6 rose from 40 to 2,400 pg/mL over 12 h"),
        (((4.0, 2400.0), (10.0, 900.0), (16.0, 40.0)), "IL-6 fell from 2,400 to 40 pg/mL over 12 h"),
        (((3.5, 40.0), (9.0, 43.0), (18.5, 42.0)), "IL-6 about 42 pg/mL, steady over 15 h"),
        (((3.5, 40.0), (9.0, 600.0), (18.5, 42.0)), "IL-6 rose from 40 to a peak of 600, now 42 pg/mL, over 15 h"),
    ],
)
def test_a_trend_reads_as_what_the_values_did(small_bundle: Path, measured: tuple, said: str) -> None:
    phrases = trend_phrases(predict(il6_record(*measured), model=small_bundle, now_hours=20, audit=False))
    assert len(phrases) == 2  # both super-models, asked at hour 20 (the day-28 models read no trend at 0 h)
    assert all(text.startswith(said + " (") for text in phrases), phrases


def test_a_value_at_or_after_the_hour_asked_never_enters_the_trend(small_bundle: Path) -> None:
    known = ((4.0, 40.0), (16.0, 2400.0))
    before = predict(il6_record(*known), model=small_bundle, now_hours=20, audit=False)
    later = predict(il6_record(*known, (20.0, 90_000.0), (21.0, 7.0)), model=small_bundle, now_hours=20, audit=False)
    assert trend_phrases(later) == trend_phrases(before)
    assert trend_phrases(later)[0].startswith("IL-6 rose from 40 to 2,400 pg/mL over 12 h (")
    after = predict(il6_record(*known, (20.0, 90_000.0)), model=small_bundle, now_hours=20.5, audit=False)
    assert trend_phrases(after)[0].startswith("IL-6 rose from 40 to 90,000 pg/mL over 16 h (")  # known from then


def test_trend_ends_are_found_once_for_every_hour_and_only_when_reasons_are_read(
    small_cohort: Cohort, small_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import crsrisk.scoring.patient as scoring

    asked: list[list[float]] = []
    found = scoring.trend_ends
    monkeypatch.setattr(
        scoring, "trend_ends", lambda arrays, codes, hours: asked.append(hours.tolist()) or found(arrays, codes, hours)
    )
    result = predict(
        patient_record(small_cohort, small_cohort.patients["patient_id"].iloc[2]),
        model=small_bundle,
        now_hours=40,
        audit=False,
    )
    assert [p["probability"] for p in result.predictions] and asked == []
    result.to_dict()
    result.to_dict()
    assert asked == [sorted({p["landmark_hours"] for p in result.predictions})]


def test_predictions_are_audited_unless_opted_out(small_cohort: Cohort, small_bundle: Path, tmp_path: Path) -> None:
    from crsrisk.audit import AuditLog, verify_log

    log = tmp_path / "audit.jsonl"
    record = patient_record(small_cohort, small_cohort.patients["patient_id"].iloc[3])
    predict(record, model=small_bundle, now_hours=40, audit_log=log)
    predict(record, model=small_bundle, now_hours=40, audit=False, audit_log=log)
    stored = list(AuditLog(log).records())
    assert len(stored) == 1 and verify_log(log).ok
    assert stored[0]["model"]["bundle_sha256"] and record["patient"]["patient_id"] not in log.read_text()
    assert stored[0]["outputs"][0]["shap"]


def test_fresh_process_predicts_without_mlflow_or_shap(
    small_cohort: Cohort, small_bundle: Path, tmp_path: Path
) -> None:
    patient = tmp_path / "patient.json"
    patient.write_text(
        json.dumps(patient_record(small_cohort, small_cohort.patients["patient_id"].iloc[1]), default=float)
    )
    code = textwrap.dedent(f"""
        import sys, crsrisk
        result = crsrisk.predict({str(patient)!r}, model={str(small_bundle)!r}, now_hours=40, audit=False)
        assert result.predictions
        model = crsrisk.load_model({str(small_bundle)!r})  # later calls: the name stays the function
        assert crsrisk.predict({str(patient)!r}, model=model, audit=False).predictions
        print("mlflow" in sys.modules, "shap" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]


def test_cli_single_and_batch(small_cohort: Cohort, small_cohort_dir: Path, small_bundle: Path, tmp_path: Path) -> None:
    patient = tmp_path / "p.json"
    patient.write_text(
        json.dumps(patient_record(small_cohort, small_cohort.patients["patient_id"].iloc[2]), default=float)
    )
    runner = CliRunner()
    out = runner.invoke(
        app, ["predict", str(patient), "--model", str(small_bundle), "--json", "--no-audit", "--now-hours", "40"]
    )
    assert out.exit_code == 0, out.output
    assert {p["task"] for p in json.loads(out.stdout)["predictions"]} >= {"severe_crs", "icans"}
    scores = tmp_path / "scores.csv"
    out = runner.invoke(app, ["predict", str(small_cohort_dir), "--model", str(small_bundle), "--out", str(scores)])
    assert out.exit_code == 0, out.output
    table = pd.read_csv(scores)
    assert list(table.columns) == BATCH_CSV_COLUMNS
    assert set(table["status"]) == {"scored"}  # every model at its own landmarks: only rows it scores
    assert np.all((table["probability"] >= 0) & (table["probability"] <= 1))


def _predict_many(bundle: str, record: str, log: str, n: int) -> None:
    from crsrisk.scoring import predict as run

    for i in range(n):
        run(record, model=bundle, now_hours=float(i % 60), audit_log=log)


@pytest.mark.slow
def test_four_processes_of_200_predictions_lose_no_audit_record(
    small_cohort: Cohort, small_bundle: Path, tmp_path: Path
) -> None:
    from crsrisk.audit import AuditLog, verify_log

    log = tmp_path / "audit.jsonl"
    records = [
        json.dumps(patient_record(small_cohort, pid), default=float)
        for pid in small_cohort.patients["patient_id"].iloc[:4]
    ]
    run_in_processes(_predict_many, [(str(small_bundle), r, str(log), 200) for r in records], timeout=600)
    result = verify_log(log)
    assert result.ok and result.n_records == 800
    per_patient = {}
    for record in AuditLog(log).records():
        per_patient[record["patient_hash"]] = per_patient.get(record["patient_hash"], 0) + 1
    assert sorted(per_patient.values()) == [200, 200, 200, 200]


def test_predict_equals_features_and_trees_applied_by_hand(small_cohort: Cohort, small_bundle: Path) -> None:
    from crsrisk.bundle.store import load_bundle
    from crsrisk.features import build_features

    bundle = load_bundle(small_bundle)
    for patient_id in small_cohort.patients["patient_id"].iloc[20:30]:
        result = predict(patient_record(small_cohort, patient_id), model=bundle, now_hours=50, audit=False)
        for p in result.predictions:
            model = bundle.models[p["model_key"]]
            X = build_features(small_cohort, pd.Series({patient_id: p["landmark_hours"]}), window=model.landmark.window)
            by_hand = model.contributions(X[model.feature_names].to_numpy())[0]
            np.testing.assert_allclose(p.shap, by_hand[:-1], rtol=1e-6, atol=1e-6)
            assert p["raw_score"] == pytest.approx(float(by_hand.sum()), abs=1e-5)
            assert p["probability"] == pytest.approx(float(model.calibrator.transform(by_hand.sum())), abs=1e-6)


def test_a_prediction_reads_as_the_documented_dict(small_cohort: Cohort, small_bundle: Path) -> None:
    record = patient_record(small_cohort, small_cohort.patients["patient_id"].iloc[5])
    result = predict(record, model=small_bundle, now_hours=40, audit=False, top=3)
    p = result.predictions[0]
    assert list(p) == [
        "task",
        "landmark_hours",
        "landmark",
        "horizon_hours",
        "question",
        "probability",
        "band",
        "raw_score",
        "base_value",
        "label_rule_version",
        "model_key",
        "missing_inputs",
        "contributions",
    ]
    assert len(p["contributions"]) == 3 and p["contributions"] is p.contributions
    document = json.loads(json.dumps(result.to_dict()))
    assert document["predictions"][0] == json.loads(json.dumps(dict(p)))
    assert set(document) == {
        "now_hours",
        "predictions",
        "already_occurred",
        "not_applicable",
        "population_flags",
        "missing_inputs",
        "model",
    }


def test_cohort_attributions_add_up_to_the_batch_scores(small_cohort: Cohort, small_bundle: Path) -> None:
    from crsrisk.scoring import cohort_attributions

    scores = predict_cohort(small_cohort, small_bundle, at_hours=60)
    scores = scores[scores["status"] == "scored"]
    attributions = cohort_attributions(small_cohort, small_bundle, at_hours=60)
    assert set(attributions) == set(scores["model_key"])
    for key, a in attributions.items():
        rows = scores[scores["model_key"] == key]
        assert list(rows["patient_id"]) == [str(i) for i in a.X.index]
        np.testing.assert_allclose(a.shap.sum(axis=1) + a.base, rows["raw_score"].to_numpy(), atol=1e-4)


def test_the_audit_fingerprint_ignores_spelling_and_order(
    small_cohort: Cohort, small_bundle: Path, tmp_path: Path
) -> None:
    from crsrisk.audit import AuditLog

    log = tmp_path / "audit.jsonl"
    record = patient_record(small_cohort, small_cohort.patients["patient_id"].iloc[7])
    respelled = json.loads(json.dumps(record, default=float))
    respelled["measurements"] = respelled["measurements"][::-1]
    for row in respelled["measurements"]:
        if row["analyte"] == "il6":
            row["unit"] = "ng/L"  # the same quantity in another accepted unit
    respelled["patient"]["age_years"] = str(respelled["patient"]["age_years"])
    predict(record, model=small_bundle, now_hours=40, audit_log=log)
    predict(respelled, model=small_bundle, now_hours=40, audit_log=log)
    first, second = AuditLog(log).records()
    assert first["input_fingerprint"] == second["input_fingerprint"]


def test_the_largest_reasons_are_rendered_with_the_answer_and_the_rest_when_read(
    small_cohort: Cohort, small_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import crsrisk.scoring.patient as scoring
    from crsrisk.scoring.reasons import EAGER_REASONS
    from crsrisk.service.predictions import document_json

    said: list[str] = []
    phrase = scoring.phrase
    monkeypatch.setattr(scoring, "phrase", lambda name, *rest: said.append(name) or phrase(name, *rest))
    record = patient_record(small_cohort, small_cohort.patients["patient_id"].iloc[4])
    result = predict(record, model=small_bundle, now_hours=40, audit=False)
    document = result.to_dict()
    features = [len(p.model.feature_names) for p in result.predictions]
    assert len(said) == EAGER_REASONS * len(features)  # the top ten of each prediction, no more
    top = document["predictions"][0]["contributions"][:5]
    assert [c["feature"] for c in top] == said[:5] and len(said) == EAGER_REASONS * len(features)
    wire = json.loads(document_json(document))  # the service's encoder renders the rest, as json.dumps does
    assert [len(p["contributions"]) for p in wire["predictions"]] == features
    assert len(said) == sum(features)
    assert wire["predictions"] == json.loads(json.dumps(document))["predictions"]


def test_the_audit_record_keeps_the_reasons_given_and_the_sum_of_the_rest(
    small_cohort: Cohort, small_bundle: Path, tmp_path: Path
) -> None:
    from crsrisk.audit import AuditLog
    from crsrisk.scoring.reasons import EAGER_REASONS

    log = tmp_path / "audit.jsonl"
    result = predict(
        patient_record(small_cohort, small_cohort.patients["patient_id"].iloc[4]), small_bundle, 40, audit_log=log
    )
    (stored,) = AuditLog(log).records()
    for output, p in zip(stored["outputs"], result.predictions):
        assert output["shap"] == {c["feature"]: c["shap"] for c in p["contributions"][:EAGER_REASONS]}
        total = output["base_value"] + sum(output["shap"].values()) + output["shap_other"]
        assert total == pytest.approx(p["raw_score"], abs=1e-4)
        assert (output["task"], output["probability"], output["band"]) == (p["task"], p["probability"], p["band"])
