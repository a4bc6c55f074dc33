"""Fuzzing the command line: files of arbitrary bytes and JSON shapes, cohort tables of junk, paths that are not
files. Every run exits 0 (a result) or 2 (a message naming the problem), never with a traceback or a hang.
Below the fuzz tests, one named regression test per crash class found (issue 14)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from crsrisk.cli import app
from fuzz_strategies import FUZZ, junk, number_text, records

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "patient.json"
runner = CliRunner()


def run(*args: str) -> tuple[int, str, str]:
    """Run the CLI in process; it must exit 0 or 2 (with a message on stderr), never raise or print a traceback."""
    result = runner.invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code != 3, f"internal error (a bug):\n{internal_error_details(result.stderr)}"
    assert result.exit_code in (0, 2), (result.exit_code, result.output)
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        assert "error" in result.stderr.lower(), result.output
    return result.exit_code, result.stdout, result.stderr


def internal_error_details(stderr: str) -> str:
    """The traceback file named by an exit-3 message ("internal error; details in FILE"), read back."""
    match = re.search(r"details in (\S+)", stderr)
    return Path(match.group(1)).read_text() if match else stderr


def strict_json(text: str) -> object:
    return json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} printed in --json output"))


def _json_or_none(value: object) -> str | None:
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return None


file_contents = (
    st.binary(max_size=400)
    | records().map(_json_or_none).filter(bool).map(str.encode)
    | junk.map(_json_or_none).filter(bool).map(str.encode)
)


@FUZZ
@given(content=file_contents, now=st.none() | number_text)
def test_fuzz_cli_predict_on_any_file_exits_0_or_2(small_bundle: Path, content: bytes, now: str | None) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "patient.json"
        path.write_bytes(content)
        code, out, _ = run(
            "predict", path, "--model", small_bundle, "--no-audit", "--json", *(["--now-hours", now] if now else [])
        )
    if code == 0:
        assert "predictions" in strict_json(out)


TABLE_HEADERS = {
    "patients": "patient_id,age_years,product\n",
    "measurements": "patient_id,hours_since_infusion,analyte,value,unit\n",
    "events": "patient_id,hours_since_infusion,event,value\n",
}
csv_cells = st.text(st.characters(codec="utf-8"), max_size=6) | number_text


@st.composite
def table_bytes(draw: st.DrawFn, name: str) -> bytes:
    """A table file: arbitrary bytes, or the right header over rows of random cells (ragged, quoted, unicode)."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=200))
    rows = draw(st.lists(st.lists(csv_cells, max_size=6), max_size=5))
    body = "".join(",".join(json.dumps(c) if draw(st.booleans()) else c for c in row) + "\n" for row in rows)
    return (TABLE_HEADERS[name] + body).encode("utf-8", "surrogatepass")


@FUZZ
@given(
    tables=st.fixed_dictionaries({name: table_bytes(name) for name in TABLE_HEADERS}),
    metadata=st.none() | st.binary(max_size=50),
)
def test_fuzz_cli_validate_on_any_cohort_folder_exits_0_or_2(tables: dict[str, bytes], metadata: bytes | None) -> None:
    with tempfile.TemporaryDirectory() as folder:
        for name, content in tables.items():
            (Path(folder) / f"{name}.csv").write_bytes(content)
        if metadata is not None:
            (Path(folder) / "cohort.json").write_bytes(metadata)
        run("validate", folder)


LONG = "a" * 5000


@pytest.mark.parametrize(
    "args",
    [
        ("predict", LONG, "--no-audit"),
        ("predict", f"/tmp/{'b' * 300}.json", "--no-audit"),
        ("validate", LONG),
        ("features", LONG, "--task", "severe_crs", "--out", "x.csv"),
        ("explain", LONG),
        ("predict", "pat\x00ient.json", "--no-audit"),
    ],
)
def test_regression_over_long_path_exits_2_naming_it(args: tuple[str, ...]) -> None:
    """Was: OSError (File name too long) from Path.is_dir, a traceback."""
    code, _, err = run(*args)
    assert code == 2 and ("too long" in err or "null" in err or "NUL" in err or "no such file" in err)
    assert len(err) < 2000  # the path is shown cut short


@pytest.mark.parametrize("kind", ["fifo", "device", "folder"])
def test_regression_patient_path_that_is_not_a_file_exits_2_without_blocking(
    small_bundle: Path, tmp_path: Path, kind: str
) -> None:
    """Was: a FIFO blocked ``crsrisk predict`` forever; a device was read without limit. Run in a subprocess
    with a timeout, so a regression fails instead of hanging the suite."""
    path = {"fifo": tmp_path / "p.json", "device": Path("/dev/zero"), "folder": tmp_path / "empty"}[kind]
    if kind == "fifo":
        os.mkfifo(path)
    if kind == "folder":
        path.mkdir()
    command = [sys.executable, "-m", "crsrisk.cli", "predict", str(path), "--model", str(small_bundle), "--no-audit"]
    if kind == "folder":
        command += ["--out", str(tmp_path / "s.csv")]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert {"fifo": "FIFO", "device": "device", "folder": "missing table"}[kind] in done.stderr


def test_regression_cohort_table_that_is_a_fifo_exits_2_without_blocking(
    small_cohort_dir: Path, tmp_path: Path
) -> None:
    """Was: pandas opened a FIFO named patients.csv and waited forever."""
    folder = tmp_path / "cohort"
    folder.mkdir()
    for name in ("measurements.csv", "events.csv"):
        (folder / name).write_bytes((small_cohort_dir / name).read_bytes())
    os.mkfifo(folder / "patients.csv")
    done = subprocess.run(
        [sys.executable, "-m", "crsrisk.cli", "validate", str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert done.returncode == 2 and "FIFO" in done.stderr and "Traceback" not in done.stderr


def test_regression_out_that_is_a_folder_exits_2(small_cohort_dir: Path, small_bundle: Path, tmp_path: Path) -> None:
    code, _, err = run("predict", small_cohort_dir, "--model", small_bundle, "--no-audit", "--out", tmp_path)
    assert code == 2 and "is a folder" in err


@pytest.mark.parametrize("landmark", ["nan", "inf", "-1e308"])
def test_regression_features_landmark_must_be_a_time(small_cohort_dir: Path, tmp_path: Path, landmark: str) -> None:
    """Was: ``--landmark nan`` wrote a feature matrix at landmark NaN, silently."""
    code, _, err = run(
        "features", small_cohort_dir, "--task", "severe_crs", "--landmark", landmark, "--out", tmp_path / "x.csv"
    )
    assert code == 2 and "landmark" in err and not (tmp_path / "x.csv").exists()


@pytest.mark.parametrize("now", ["nan", "inf", "1e9"])
def test_regression_cli_now_hours_must_be_a_time(small_bundle: Path, now: str) -> None:
    code, _, err = run("predict", EXAMPLE, "--model", small_bundle, "--no-audit", "--now-hours", now)
    assert code == 2 and "now_hours" in err


def test_unknown_key_in_patient_file_exits_2_naming_it(small_bundle: Path, tmp_path: Path) -> None:
    record = json.loads(EXAMPLE.read_text())
    record["measurement"] = record.pop("measurements")
    (tmp_path / "p.json").write_text(json.dumps(record))
    code, _, err = run("predict", tmp_path / "p.json", "--model", small_bundle, "--no-audit")
    assert code == 2 and "'measurement'" in err and "measurements" in err


def test_regression_train_config_that_is_not_yaml_is_named(tmp_path: Path) -> None:
    """Was: bytes that are not YAML gave a yaml traceback from ``crsrisk train --config``."""
    from crsrisk.training.config import load_config

    config = tmp_path / "experiment.yaml"
    config.write_bytes(b"\xff\x00: [")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_config(config)


def test_regression_train_config_that_is_a_fifo_is_named_without_blocking(tmp_path: Path) -> None:
    """Was: a FIFO as ``--config`` blocked ``crsrisk train`` forever (a subprocess, so a regression fails)."""
    os.mkfifo(tmp_path / "experiment.yaml")
    code = f"from crsrisk.training.config import load_config; load_config({str(tmp_path / 'experiment.yaml')!r})"
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert done.returncode == 1 and "CohortValidationError" in done.stderr and "FIFO" in done.stderr


@pytest.mark.parametrize("kind", ["ndjson fifo", "bundle fifo", "deep json"])
def test_regression_import_fhir_source_that_is_not_a_file_exits_2_without_blocking(tmp_path: Path, kind: str) -> None:
    """Was: a FIFO among the .ndjson files blocked ``crsrisk import fhir``; deep JSON was a RecursionError."""
    source = tmp_path / ("bulk" if kind == "ndjson fifo" else "bundle.json")
    if kind == "ndjson fifo":
        source.mkdir()
        os.mkfifo(source / "Patient.ndjson")
    elif kind == "bundle fifo":
        os.mkfifo(source)
    else:
        source.write_text("[" * 100_000)
    done = subprocess.run(
        [sys.executable, "-m", "crsrisk.cli", "import", "fhir", str(source), "--out", str(tmp_path / "cohort")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert ("nested too deeply" if kind == "deep json" else "FIFO") in done.stderr
