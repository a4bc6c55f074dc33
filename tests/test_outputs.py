"""Outputs safe to open (issue 14, part 5): atomic writes, CSV cells that cannot run as formulas, JSON without
NaN, patient data readable by the owner only."""

from __future__ import annotations

import csv
import json
import math
import os
import stat
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from crsrisk.util.atomic import write_bytes
from crsrisk.cli import app, print_json
from crsrisk.cohort.io import write_tables
from crsrisk.cohort.validated import Cohort
from crsrisk.util.outputs import json_text, readable, write_table
from crsrisk.training.artifacts import write_json

runner = CliRunner()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


def test_write_bytes_replaces_atomically_and_sets_permissions(tmp_path: Path) -> None:
    target = tmp_path / "out" / "scores.csv"
    write_bytes(target, b"old", private=True)
    assert target.read_bytes() == b"old" and mode(target) == 0o600
    previous = os.umask(0o022)
    try:
        write_bytes(target, b"new")
    finally:
        os.umask(previous)
    assert target.read_bytes() == b"new" and mode(target) == 0o644
    assert leftovers(target.parent) == []


def test_a_failed_write_leaves_the_old_file_intact(tmp_path: Path) -> None:
    target = tmp_path / "matrix.parquet"
    write_table(pd.DataFrame({"a": [1.0]}), target)
    before = target.read_bytes()
    unwritable = pd.DataFrame({"a": [1.0, "text", [1, 2]]})  # pyarrow cannot store this column: the write fails
    with pytest.raises(ValueError):  # pyarrow.ArrowInvalid
        write_table(unwritable, target)
    with pytest.raises(TypeError):
        write_bytes(target, "not bytes")  # fails half-way, after the temporary file exists
    assert target.read_bytes() == before and leftovers(tmp_path) == []


def test_csv_cells_that_would_run_as_formulas_are_neutralised_but_numbers_stay_numbers(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "patient_id": ['=HYPERLINK("http://x")', "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx", "-3.5", "plain", None],
            "value": [-3.5, 1.0, -0.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0],
        }
    )
    write_table(frame, tmp_path / "t.csv")
    cells = list(csv.reader((tmp_path / "t.csv").open(newline="")))[1:]
    assert [c[0] for c in cells] == [
        '\'=HYPERLINK("http://x")',
        "'+1+1",
        "'-2+3",
        "'@SUM(A1)",
        "'\tx",
        "'\rx",
        "-3.5",
        "plain",
        "",
    ]
    assert [c[1] for c in cells][:3] == ["-3.5", "1.0", "-0.0"]  # numbers are never touched
    assert frame["patient_id"].iloc[0].startswith("=")  # the caller's frame is unchanged


def test_json_never_holds_nan(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    document = {"a": math.nan, "b": [math.inf, -math.inf, 1.5], "c": {"d": float("nan")}}
    expected = {"a": None, "b": [None, None, 1.5], "c": {"d": None}}
    assert json.loads(json_text(document)) == expected
    print_json(document)
    assert json.loads(capsys.readouterr().out, parse_constant=pytest.fail) == expected
    write_json(tmp_path / "metrics.json", document)
    assert json.loads((tmp_path / "metrics.json").read_text(), parse_constant=pytest.fail) == expected


@pytest.fixture(scope="module")
def hostile_cohort(small_cohort: Cohort, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A slice of the small cohort whose patient ids a spreadsheet would run as formulas."""
    keep = small_cohort.patients["patient_id"].iloc[:30].tolist()
    names = {
        pid: f"=cmd|'/c calc'!A{i}" if i % 3 == 0 else f"@P{i}" if i % 3 == 1 else f"-{i}" for i, pid in enumerate(keep)
    }
    part = small_cohort.subset(keep)
    tables = {
        f"{name}.csv": getattr(part, name).assign(patient_id=lambda t: t["patient_id"].map(names))
        for name in ("patients", "measurements", "events")
    }
    return write_tables(tables, tmp_path_factory.mktemp("hostile") / "cohort")


def test_batch_scores_csv_is_private_and_formula_free(hostile_cohort: Path, small_bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "scores.csv"
    out.write_text("an older file\n")
    result = runner.invoke(
        app, ["predict", str(hostile_cohort), "--model", str(small_bundle), "--no-audit", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert mode(out) == 0o600
    rows = list(csv.DictReader(out.open()))
    assert rows and all(not r["patient_id"].startswith(("=", "+", "@")) for r in rows)
    ids = {r["patient_id"] for r in rows}
    assert "'=cmd|'/c calc'!A0" in ids and "'@P1" in ids and "-2" in ids  # "-2" is a number: left as it is
    assert all(0 <= float(r["probability"]) <= 1 for r in rows)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_feature_matrix_is_private(hostile_cohort: Path, tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"X{suffix}"
    result = runner.invoke(app, ["features", str(hostile_cohort), "--task", "severe_crs", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert mode(out) == 0o600 and leftovers(tmp_path) == []
    table = pd.read_csv(out, dtype={"patient_id": str}) if suffix == ".csv" else pd.read_parquet(out)
    ids = set(table["patient_id"])
    if suffix == ".csv":
        assert "'@P1" in ids and not any(i.startswith(("=", "@")) for i in ids)
    else:  # Parquet is typed data, not a spreadsheet: kept exactly
        assert "@P1" in ids


@pytest.mark.slow
def test_patient_explanations_are_private(small_bundle: Path, tmp_path: Path) -> None:
    from crsrisk.reporting.explain import explain_patient

    _, files = explain_patient(
        Path(__file__).resolve().parents[1] / "examples" / "patient.json",
        model=small_bundle,
        now_hours=10,
        out_dir=tmp_path,
    )
    assert files and all(mode(f) == 0o600 for f in files)
    assert mode(tmp_path / "summary.txt") == 0o600


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0175, "0.0175"),
        (0.27634, "0.276"),
        (-0.064, "-0.064"),
        (45.0, "45"),
        (1.4, "1.4"),
        (52345.6, "52,300"),
        (9_000_000.0, "9,000,000"),
        (999.7, "1,000"),
        (0.0, "0"),
        (2.5e-6, "2.5e-06"),
        (3.4e38, "3.4e+38"),
    ],
)
def test_readable_numbers_have_three_significant_figures_and_no_exponent_when_ordinary(value: float, text: str) -> None:
    assert readable(value) == text
