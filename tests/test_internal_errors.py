"""A bug is told apart from bad input at every entry point: an internal error injected into the CLI (exit 3, the
traceback in a private file), the service (HTTP 500 with an error id, the traceback logged under it without the
request's values) and the MLflow pyfunc (500 with an error id), while bad input stays exit 2 / HTTP 422. This is
what lets the fuzzing suites fail on a programming error."""

from __future__ import annotations

import json
import logging
import re
import stat
from pathlib import Path

import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INTERNAL_ERROR, INVALID_PARAMETER_VALUE, ErrorCode
from typer.testing import CliRunner

import crsrisk.cohort.summary
import crsrisk.evaluation.external
import crsrisk.scoring
import crsrisk.service.app
import crsrisk.service.pyfunc
import crsrisk.training.run
from crsrisk.cli import app
from crsrisk.errors import CohortValidationError, CrsriskError, InputError, NotFoundError
from crsrisk.scoring import load_model
from crsrisk.service import create_app
from crsrisk.service.pyfunc import CrsriskPyfunc

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "patient.json"
SECRET = "EXAMPLE-001 il6=240"  # what a bug's message might quote: must not reach the service's log


def boom(*args: object, **kwargs: object) -> None:
    raise RuntimeError(f"injected bug while scoring {SECRET}")


def internal_error_file(stderr: str, error: str = "RuntimeError: injected bug") -> Path:
    """The file named by the one-line message; it must hold the traceback, owner-only."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    match = re.fullmatch(
        r"internal error; details in (\S+) \(a bug, not your input: please report it with that "
        r"file\)",
        lines[0],
    )
    assert match, stderr
    path = Path(match.group(1))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert "Traceback (most recent call last)" in text and error in text
    return path


@pytest.mark.parametrize(
    "command, target, name",
    [
        ("predict", crsrisk.scoring, "predict"),
        ("evaluate", crsrisk.evaluation.external, "evaluate_bundle"),
        ("train", crsrisk.training.run, "train"),
        ("validate", crsrisk.cohort.summary, "cohort_summary"),
    ],
)
def test_internal_error_in_each_cli_command_exits_3_with_the_traceback_in_a_private_file(
    command: str,
    target: object,
    name: str,
    monkeypatch: pytest.MonkeyPatch,
    small_bundle: Path,
    small_cohort_dir: Path,
    tmp_path: Path,
) -> None:
    monkeypatch.setattr(target, name, boom)
    args = {
        "predict": ["predict", str(EXAMPLE), "--model", str(small_bundle), "--no-audit"],
        "evaluate": ["evaluate", str(small_cohort_dir), "--model", str(small_bundle)],
        "train": [
            "train",
            str(small_cohort_dir),
            "--out",
            str(tmp_path / "run"),
            "--tracking-uri",
            f"sqlite:///{tmp_path / 'mlflow.db'}",
        ],
        "validate": ["validate", str(small_cohort_dir)],
    }[command]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 3, result.output
    assert "Traceback" not in result.output
    internal_error_file(result.stderr).unlink()


@pytest.mark.parametrize(
    "error",
    [
        InputError("now_hours: expected hours"),
        NotFoundError("unknown feature 'x'"),
        FileNotFoundError(2, "No such file or directory", "/nowhere/patient.json"),
    ],
)
def test_bad_input_in_the_cli_stays_exit_2_naming_it(
    error: Exception, monkeypatch: pytest.MonkeyPatch, small_bundle: Path
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(crsrisk.scoring, "predict", refuse)
    result = CliRunner().invoke(app, ["predict", str(EXAMPLE), "--model", str(small_bundle), "--no-audit"])
    assert result.exit_code == 2, result.output
    shown = error.filename if isinstance(error, OSError) else str(error)
    assert shown in result.stderr and "internal error" not in result.stderr


def test_a_plain_value_error_is_a_bug_not_bad_input(monkeypatch: pytest.MonkeyPatch, small_bundle: Path) -> None:
    """Was: every ValueError and KeyError became exit 2, so the fuzzing could not fail on a programming error."""

    def bug(*args: object, **kwargs: object) -> None:
        raise ValueError("operands could not be broadcast together")

    monkeypatch.setattr(crsrisk.scoring, "predict", bug)
    result = CliRunner().invoke(app, ["predict", str(EXAMPLE), "--model", str(small_bundle), "--no-audit"])
    assert result.exit_code == 3
    internal_error_file(result.stderr, "ValueError: operands could not be broadcast together").unlink()


def test_the_package_errors_share_one_base_and_keep_their_builtin_types() -> None:
    for error in (InputError("x"), NotFoundError("x"), CohortValidationError([])):
        assert isinstance(error, CrsriskError) and isinstance(error, ValueError)
    assert (
        isinstance(NotFoundError("x"), KeyError) and str(NotFoundError("unknown feature 'x'")) == "unknown feature 'x'"
    )


def test_library_errors_name_settings_never_cli_flags() -> None:
    """Library messages name the argument or setting; the CLI adds its flag (``flag`` in cli/common.py)."""
    source = Path(crsrisk.__file__).parent
    offenders = []
    for path in source.rglob("*.py"):
        if "cli" in path.relative_to(source).parts:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"(raise \w+\(|Problem\().*[\"'`(\s]--[a-z]", line):
                offenders.append(f"{path.relative_to(source)}:{number}: {line.strip()}")
    assert offenders == []


def test_the_cli_adds_the_flag_to_a_library_refusal(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    log.write_text("")
    result = CliRunner().invoke(app, ["audit-log", "verify", str(log), "--expect-head", "nonsense"])
    assert result.exit_code == 2
    assert "--expect-head: head 'nonsense': expected SEQ:HASH" in result.stderr


def client(bundle: object, tmp_path: Path):
    from fastapi.testclient import TestClient

    return TestClient(create_app(model=bundle, audit_log=tmp_path / "audit.jsonl"))


@pytest.fixture(scope="module")
def bundle(small_bundle: Path):
    return load_model(small_bundle)


def assert_internal_500(answer, caplog: pytest.LogCaptureFixture) -> None:
    assert answer.status_code == 500, answer.text
    error_id = answer.json()["error_id"]
    assert re.fullmatch(r"[0-9a-f]{16}", error_id) and error_id in answer.json()["detail"]
    logged = [r.getMessage() for r in caplog.records if r.name == "crsrisk.service"]
    assert any(error_id in m and "RuntimeError" in m and "Traceback" not in m and "line" in m for m in logged), logged
    assert not any(SECRET in m for m in logged)  # the bug's message may quote patient data: never logged
    assert SECRET not in answer.text


def test_internal_error_in_rest_predict_is_a_500_with_an_error_id(
    bundle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(crsrisk.scoring, "predict", boom)
    with caplog.at_level(logging.ERROR, logger="crsrisk.service"):
        answer = client(bundle, tmp_path).post("/predict", json={**json.loads(EXAMPLE.read_text()), "now_hours": 40})
    assert_internal_500(answer, caplog)


def test_internal_error_on_the_page_is_a_500_with_an_error_id(
    bundle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(crsrisk.scoring, "predict", boom)
    with caplog.at_level(logging.ERROR, logger="crsrisk.service"):
        scored = client(bundle, tmp_path).post("/", data={"action": "example", "record": "", "now_hours": "40"})
    assert_internal_500(scored, caplog)
    caplog.clear()
    monkeypatch.setattr(crsrisk.service.app, "render_page", boom)
    with caplog.at_level(logging.ERROR, logger="crsrisk.service"):
        shown = client(bundle, tmp_path).get("/")
    assert_internal_500(shown, caplog)


def test_bad_input_to_rest_predict_stays_a_422(bundle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise InputError("step_hours: expected a positive number of hours, got -1")

    monkeypatch.setattr(crsrisk.scoring, "predict", refuse)
    answer = client(bundle, tmp_path).post("/predict", json=json.loads(EXAMPLE.read_text()))
    assert answer.status_code == 422
    assert (
        answer.json()["problems"][0]["message"] == "InputError: step_hours: expected a positive number of hours, got -1"
    )


def pyfunc_scorer(bundle) -> CrsriskPyfunc:
    scorer = CrsriskPyfunc()
    scorer.bundle = bundle
    scorer.key, scorer.model = next(iter(bundle.models.items()))
    return scorer


def test_internal_error_in_the_pyfunc_is_a_500_with_an_error_id(
    bundle, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(crsrisk.service.pyfunc, "predict", boom)
    records = pd.DataFrame({"record": [EXAMPLE.read_text()], "now_hours": [40.0]})
    with caplog.at_level(logging.ERROR, logger="crsrisk.service"), pytest.raises(MlflowException) as raised:
        pyfunc_scorer(bundle).predict(None, records, params={"audit": False})
    assert raised.value.error_code == ErrorCode.Name(INTERNAL_ERROR) and raised.value.get_http_status_code() == 500
    error_id = re.search(r"error id ([0-9a-f]{16})", raised.value.message).group(1)
    assert any(error_id in r.getMessage() for r in caplog.records) and SECRET not in raised.value.message


def test_bad_input_to_the_pyfunc_is_a_400(bundle) -> None:
    records = pd.DataFrame({"record": [EXAMPLE.read_text()], "now_hours": ["soon"]})
    with pytest.raises(MlflowException) as raised:
        pyfunc_scorer(bundle).predict(None, records, params={"audit": False})
    assert raised.value.error_code == ErrorCode.Name(INVALID_PARAMETER_VALUE)
    assert raised.value.get_http_status_code() == 400 and "now_hours" in raised.value.message
