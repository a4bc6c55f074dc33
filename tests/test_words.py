"""What a clinician reads: the shipped examples show risks, reasons and intervals at their default hour; times,
absences and missing inputs said as words; tables within 80 columns; refusals that say where to change what."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crsrisk.cli import app
from crsrisk.scoring import predict

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
DECISION_POINTS = {"patient.json": 0, "patient-day1.json": 20, "patient-tocilizumab.json": 26}
BOX = "│┃"


def _run(*args: str):
    return CliRunner().invoke(app, list(args))


def _table_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line[:1] in "┏┃┡│└"]


@pytest.mark.parametrize(("name", "hour"), DECISION_POINTS.items())
def test_each_example_shows_risks_reasons_and_intervals_at_its_default_hour(name: str, hour: int) -> None:
    done = _run("predict", str(EXAMPLES / name), "--no-audit")
    assert done.exit_code == 0, done.output
    chosen = (
        "infusion, since nothing is recorded after it" if hour == 0 else "the first whole hour after the latest record"
    )
    said = " ".join(done.output.split())
    assert said.startswith(f"as of hour {hour} (by default: {chosen}): everything recorded strictly before it")
    assert max(len(line) for line in done.output.splitlines()) <= 80  # text wrapped, not only the tables
    assert "already occurred" not in done.output
    assert re.search(r"severe_crs: \d+\.\d% \(\w+ risk; 95% interval \d+\.\d% to \d+\.\d%\)", done.output)
    assert "(raised the risk)" in done.output
    table = _table_lines(done.output)
    assert table and max(len(line) for line in table) <= 80
    assert "costim_cd28" not in done.output and "1 = yes" not in done.output  # inputs said as words


def test_the_header_counts_only_records_strictly_before_the_hour_it_names() -> None:
    record = json.loads((EXAMPLES / "patient-tocilizumab.json").read_text())
    latest = max(r["hours_since_infusion"] for r in record["measurements"] + record["events"])
    result = predict(record, audit=False)
    assert latest < result.now_hours == 26 and result.now_hours == float(int(result.now_hours))


def test_after_tocilizumab_times_are_said_from_now_and_from_the_dose() -> None:
    result = predict(EXAMPLES / "patient-tocilizumab.json", audit=False, now_hours=40)
    toci = next(p for p in result.predictions if p["task"] == "toci_refractory")
    onset = next(c["phrase"] for c in toci["contributions"] if c["feature"] == "hours_since_crs_onset")
    # CRS grade 1 at 11.7 h, first tocilizumab at 20.7 h, asked at hour 40
    assert onset == "CRS began 28 h ago, 9 h before the first tocilizumab dose (raised the risk)"


def test_missing_inputs_are_per_task_and_never_contradict_a_value_shown() -> None:
    result = predict(EXAMPLES / "patient-tocilizumab.json", audit=False)
    for p in result.predictions:
        present = {c["feature"] for c in p["contributions"] if c["value"] is not None}
        assert not present & set(p["missing_inputs"]), p["task"]
    static = next(p for p in result.predictions if p["task"] == "severe_crs")  # read at hour 0: nothing after it
    assert static["landmark_hours"] == 0 and static["missing_inputs"] == [
        "baseline_sil6r",
        "baseline_il8",
        "baseline_il15",
        "baseline_tnfa",
        "baseline_temperature",
    ]
    dynamic = next(p for p in result.predictions if p["task"] == "severe_crs_dynamic")
    assert "ifng_last" in dynamic["missing_inputs"] and "il6_last" not in dynamic["missing_inputs"]
    assert "hours_since_crs_onset" not in dynamic["missing_inputs"]
    assert set(result.missing_inputs) == {n for p in result.predictions for n in p["missing_inputs"]}


def test_missing_inputs_are_listed_in_short_groups_within_80_columns() -> None:
    done = _run("predict", str(EXAMPLES / "patient-day1.json"), "--no-audit")
    assert done.exit_code == 0, done.output
    assert (
        "missing for severe_crs:\n  not measured before infusion: sIL-6R, IL-8, IL-15, TNF-alpha, temperature\n"
        in done.output
    )
    block = done.output.split("missing for severe_crs_dynamic:\n")[1].split("\n\n")[0]
    assert block.splitlines() == [
        "  not measured before infusion: sIL-6R, IL-8, IL-15, TNF-alpha, temperature",
        "  not measured since infusion: IFN-gamma, sIL-6R, IL-8, IL-15, TNF-alpha,",
        "      platelets",  # wrapped at a word, under a hanging indent
        "  only one value so far (no trend): ferritin, CRP, LDH, fibrinogen, creatinine",
        "  not computable: m-EASIX (needs platelets)",
    ]
    assert "trend yet" not in block and "not recorded" not in block


def test_explain_with_nothing_to_explain_says_why_and_fails(tmp_path: Path) -> None:
    done = _run("explain", str(EXAMPLES / "patient-course.json"), "--no-audit", "--out", str(tmp_path / "x"))
    assert done.exit_code == 2
    assert "nothing to explain: no task is scored at hour 48: severe_crs already occurred at hour 46.7" in done.output
    assert "--now-hours" in done.output and not (tmp_path / "x").exists()


def test_explain_lists_the_pictures_it_wrote_a_line_each(tmp_path: Path) -> None:
    out = tmp_path / "pictures"
    done = _run("explain", str(EXAMPLES / "patient-day1.json"), "--no-audit", "--out", str(out))
    assert done.exit_code == 0, done.output
    assert max(len(line) for line in done.output.splitlines() if str(out) not in line) <= 80  # a path stays whole
    listed = done.output.split("reasons charts and SHAP waterfalls:\n")[1].splitlines()
    written = sorted(str(p) for p in out.glob("*.png"))
    assert sorted(line.strip() for line in listed[: len(written)]) == written and len(written) == 8


def test_a_misspelled_request_key_is_refused_with_the_keys_allowed(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from crsrisk.service import create_app

    body = json.loads((EXAMPLES / "patient.json").read_text()) | {"now_hour": 24}
    answer = TestClient(create_app(audit_log=tmp_path / "audit.jsonl")).post("/predict", json=body)
    assert answer.status_code == 422
    (problem,) = answer.json()["problems"]
    assert problem["field"] == "now_hour" and "did you mean 'now_hours'? expected one of [" in problem["message"]
    assert "'now_hours'" in problem["message"] and "'measurements'" in problem["message"]


def test_tables_fit_80_columns_and_never_split_a_word(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from crsrisk.cli import common, modelling

    wide = common.Console(width=200, force_terminal=False)  # as into a pipe: tables still keep to 80 columns
    monkeypatch.setattr(common, "console", wide)
    monkeypatch.setattr(modelling, "console", wide)
    metrics = {
        m: {"value": 0.81, "ci_low": 0.78, "ci_high": 0.84} for m in ("auroc", "auprc", "brier", "calibration_slope")
    }
    results = [
        {"task": task, "landmark": landmark, "model": model, "kind": "model", "n": 800, "events": 120}
        | {"metrics": metrics, "beats_best_published": False, "best_published": "m_easix_baseline"}
        for task, landmark, model in (
            ("severe_crs_dynamic", "every12h_0-168h", "generator_ceiling"),
            ("severe_crs", "36h", "xgboost"),
            ("toci_refractory", "first_tocilizumab", "hay_2017_tree"),
        )
    ]
    modelling._print_comparison(results)
    out = capsys.readouterr().out
    table = _table_lines(out)
    assert table and max(len(line) for line in table) <= 80
    cells = {word for line in table for cell in re.split(f"[{BOX}]", line) for word in cell.split()}
    assert {"severe_crs_dynamic", "every12h_0-168h", "generator_ceiling", "first_tocilizumab"} <= cells
    assert {"m_easix_baseline", "(0.780-0.840)"} <= cells  # the verdict and the AUROC kept, whole
    said = " ".join(out.split())
    assert "(not shown at 80 columns: n/events, AUPRC (95% CI), " in said and "; all in comparison.md)" in said
    assert max(len(line) for line in out.splitlines()) <= 80  # the note below the table wrapped too


def _progress_into_a_file(body: str, tmp_path: Path) -> str:
    """What a ``Progress`` (``p``) driven by ``body`` writes when its output goes to a file, not a terminal."""
    script = "from crsrisk.training.progress import Progress\n" + body
    log = tmp_path / "log.txt"
    with log.open("w") as out:
        subprocess.run([sys.executable, "-c", script], stdout=out, check=True, timeout=60)
    return log.read_text()


def test_progress_goes_to_a_file_as_plain_lines(tmp_path: Path) -> None:
    text = _progress_into_a_file(
        "with Progress(total=3, every=0) as p:\n"
        "    for fold in range(3):\n"
        "        p.step(f'severe_crs 36h xgboost fold {fold}')\n"
        "    p.note('severe_crs: metrics, plots, MLflow')\n",
        tmp_path,
    )
    lines = text.splitlines()
    assert lines[0] == "[0:00] training: 3 fits to run"
    assert lines[1] == "[0:00] training: 1/3 fits done (latest: severe_crs 36h xgboost fold 0)"
    assert lines[3].endswith("3/3 fits done (latest: severe_crs 36h xgboost fold 2)")
    assert lines[4].endswith("severe_crs: metrics, plots, MLflow") and "\x1b" not in text


def test_a_long_progress_line_is_wrapped_at_80_columns_between_words(tmp_path: Path) -> None:
    text = _progress_into_a_file(
        "with Progress(total=1, every=0) as p:\n"
        "    p.step('severe_crs_dynamic at every12h_0-168h: repeat 1 fold 1, with a longer note than fits')\n",
        tmp_path,
    )
    lines = text.splitlines()
    assert len(lines) == 3 and max(len(line) for line in lines) <= 80 and lines[2].startswith("    ")
    assert " ".join(" ".join(lines[1:]).split()).endswith("repeat 1 fold 1, with a longer note than fits)")


def test_too_few_events_is_a_headline_and_bullets_saying_where_to_change_what(small_cohort, tmp_path: Path) -> None:
    from conftest import TINY

    from crsrisk.training.config import TuningConfig
    from crsrisk.training.crossval import TooFewEvents
    from crsrisk.training.run import train

    config = TINY.model_copy(update={"tuning": TuningConfig(n_iter=2, inner_splits=5)})
    few = small_cohort.subset(small_cohort.patients["patient_id"].iloc[:6])
    with pytest.raises(TooFewEvents) as refused:
        train(few, config=config, tracking_uri=f"sqlite:///{tmp_path / 'm.db'}", out=tmp_path / "r", register=False)
    headline, *rest = str(refused.value).splitlines()
    assert headline == "no task and landmark could be trained: too few events or non-events for the folds"
    assert rest[0].startswith("- severe_crs at 0h: events in ") and "what to change:" in rest
    assert rest[rest.index("what to change:") + 1 :] == [
        "- collect more data, or lower cv.n_splits in the experiment file",
        "- collect more data, or lower tuning.inner_splits (or cv.n_splits) in the experiment file",
    ]
    assert len(headline) < 100 and all(line.startswith("- ") for line in rest if line != "what to change:")


def test_an_unknown_record_key_far_from_any_allowed_one_gets_no_guess() -> None:
    from crsrisk.cohort.record import validate_record
    from crsrisk.errors import CohortValidationError

    record = json.loads((EXAMPLES / "patient.json").read_text())
    record["patient"] |= {"age_yrs": 3.1, "favourite_colour": "blue"}
    with pytest.raises(CohortValidationError) as refused:
        validate_record(record)
    messages = {p.field: p.message for p in refused.value.problems}
    assert messages["age_yrs"].startswith("unknown key; did you mean 'age_years'? expected one of ['age_years', ")
    assert messages["favourite_colour"].startswith("unknown key; expected one of ['age_years', ")


def test_a_misspelled_experiment_setting_lists_the_settings_allowed_there(tmp_path: Path) -> None:
    from crsrisk.errors import InputError
    from crsrisk.training.config import load_config

    path = tmp_path / "x.yaml"
    path.write_text("cv: {n_split: 3}\ntask: [icans]\n")
    with pytest.raises(InputError) as refused:
        load_config(path)
    assert str(refused.value).splitlines() == [
        f"config {path}: 2 problem(s)",
        "- cv.n_split: unknown key; did you mean 'n_splits'? expected one of ['n_repeats', 'n_splits', 'scheme'] "
        "(got 3)",
        "- task: unknown key; did you mean 'tasks'? expected one of ['bootstrap', 'calibration', 'cv', 'dask', 'decision_thresholds', "
        "'models', 'seed', 'task_overrides', 'tasks', 'threshold', 'tuning', 'workers', 'xgboost_threads'] "
        "(got ['icans'])",
    ]


def test_the_pre_infusion_example_is_not_flagged_for_inputs_it_cannot_have_yet() -> None:
    # at hour 0 nothing after infusion can have been measured: those inputs are not counted as missing
    done = _run("predict", str(EXAMPLES / "patient.json"), "--no-audit")
    assert done.exit_code == 0, done.output
    assert "outside the training population" not in done.output


def test_a_patient_with_almost_nothing_recorded_is_flagged_in_words(tmp_path: Path) -> None:
    record = {"patient": {"patient_id": "NEW", "age_years": 9, "product": "tisagenlecleucel"}}
    (flag,) = [f for f in predict(record, now_hours=40, audit=False).population_flags if f["kind"] == "mostly_missing"]
    assert flag["training_hours"] is None  # the shipped bundle records no bins per landmark hour
    path = tmp_path / "p.json"
    path.write_text(json.dumps(record))
    done = _run("predict", str(path), "--no-audit", "--now-hours", "40")
    assert done.exit_code == 0, done.output
    said = " ".join(done.output.split()).split("outside the training population: ")[1]
    assert said.startswith(
        f"found {flag['value']:.0%} of the inputs that can have a value by hour 36 missing, trained with about "
        f"{flag['training']:.0%} of the same inputs missing over all its training rows"
    )
    # a finding about some of the models names their questions in words, not their keys
    assert (
        "(for severe CRS (ASTCT CRS grade >= 3) by day 28, as of hour 36; ICANS (any grade) by day 28, as of hour 36)"
        in said
    )
    assert "__" not in said
