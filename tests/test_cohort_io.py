"""The cohort contract: loading, unit conversion, and errors that name table, row, field and value."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crsrisk.cohort.io import load_cohort, write_cohort
from crsrisk.errors import CohortValidationError
from crsrisk.schema.analytes import ANALYTES

PATIENTS = """patient_id,center,age_years,sex,product,dose_1e6_cells_per_kg,marrow_blasts_pct,note
P1,A,10,F,tisagenlecleucel,1.5,40,hello
P2,B,22.5,M,other,1,5,
"""
MEASUREMENTS = """patient_id,hours_since_infusion,analyte,value,unit
P1,-24,il6,5,pg/mL
P1,12,temperature,101.3,degF
P1,14,crp,5,mg/dL
P1,16,sgp130,250,ng/mL
P2,3,creatinine,88.4,umol/L
"""
EVENTS = """patient_id,hours_since_infusion,event,value
P1,24,crs_grade,2
P1,30,tocilizumab,8
"""


def write(folder: Path, patients: str = PATIENTS, measurements: str = MEASUREMENTS, events: str = EVENTS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "patients.csv").write_text(patients)
    (folder / "measurements.csv").write_text(measurements)
    (folder / "events.csv").write_text(events)
    return folder


def problems_of(folder: Path) -> list[str]:
    with pytest.raises(CohortValidationError) as caught:
        load_cohort(folder)
    return [str(p) for p in caught.value.problems]


def test_valid_cohort_is_converted_to_canonical_units(tmp_path: Path) -> None:
    # P2 has product "other" and needs costim_domain: add it.
    cohort = load_cohort(
        write(
            tmp_path,
            PATIENTS.replace(",other,1,5,", ",other,1,5,")
            .replace("note\n", "note,costim_domain\n")
            .replace("hello\n", "hello,\n")
            .replace("5,\n", "5,,CD28\n"),
        )
    )
    m = cohort.measurements.set_index("analyte")
    assert m.loc["temperature", "value"] == pytest.approx(38.5)
    assert m.loc["crp", "value"] == pytest.approx(50.0)
    assert m.loc["sgp130", "value"] == pytest.approx(250_000.0)
    assert m.loc["creatinine", "value"] == pytest.approx(1.0)
    assert set(cohort.measurements["unit"]) == {ANALYTES[a].unit for a in m.index}
    assert cohort.metadata["units_converted"] == {
        "sgp130: ng/mL -> pg/mL": 1,
        "crp: mg/dL -> mg/L": 1,
        "creatinine: umol/L -> mg/dL": 1,
        "temperature: degF -> degC": 1,
    }
    p = cohort.patients.set_index("patient_id")
    assert p.loc["P1", "costim_domain"] == "4-1BB"  # derived from tisagenlecleucel
    assert p.loc["P2", "costim_domain"] == "CD28"
    assert p.loc["P1", "followup_hours"] == 672.0
    assert p.loc["P1", "diagnosis"] == "B-ALL"
    assert any("note" in n for n in cohort.metadata["notes"])


def test_every_problem_is_reported_with_line_patient_field_value(tmp_path: Path) -> None:
    bad_patients = PATIENTS + "P2,C,abc,X,tisagenlecleucel,1,5,\n"
    bad_measurements = (
        MEASUREMENTS + "P1,30,temperature,140,degF\nP1,31,il99,3,pg/mL\nP1,32,il6,4,mg/L\nP7,1,il6,2,pg/mL\n"
    )
    found = problems_of(write(tmp_path, bad_patients, bad_measurements, EVENTS + "P1,40,crs_grade,5\n"))
    expected = [
        "patients, line 3, patient_id='P2', field 'costim_domain': required when product is 'other'",
        "patients, line 4, patient_id='P2', field 'age_years': value 'abc': expected a number",
        "patients, line 4, patient_id='P2', field 'sex': value 'X': expected one of ['F', 'M']",
        "patients, line 4, patient_id='P2', field 'patient_id': value 'P2': duplicate patient_id",
        "measurements, line 7, patient_id='P1', field 'value': value '140': implausible temperature: "
        "expected 25 to 45 degC",
        "measurements, line 8, patient_id='P1', field 'analyte': value 'il99': unknown analyte",
        "measurements, line 9, patient_id='P1', field 'unit': value 'mg/L': unit not accepted for il6; "
        "expected one of ['pg/mL', 'ng/L', 'ng/mL']",
        "measurements, line 10, patient_id='P7', field 'patient_id': value 'P7': no such patient_id",
        "events, line 4, patient_id='P1', field 'value': value '5': expected an integer grade 0 to 4",
    ]
    for text in expected:
        assert any(p.startswith(text) for p in found), (text, found)
    assert len(found) == len(expected)


def test_missing_required_column_and_missing_table(tmp_path: Path) -> None:
    found = problems_of(write(tmp_path, PATIENTS.replace("age_years", "age")))
    assert any("field 'age_years'" in p and "required column is missing" in p for p in found)
    (tmp_path / "events.csv").unlink()
    assert any("events" in p and "missing table" in p for p in problems_of(tmp_path))


def test_grade_without_a_value_column_is_named_not_a_crash(tmp_path: Path) -> None:
    # value is an optional column; a grade event still needs one (found by the record property test)
    events = "patient_id,hours_since_infusion,event\nP1,24,crs_grade\nP1,30,tocilizumab\n"
    found = problems_of(write(tmp_path, PATIENTS.replace(",other,", ",tisagenlecleucel,"), events=events))
    assert found == ["events, line 2, patient_id='P1', field 'value': expected an integer grade 0 to 4"]


def test_mixed_csv_and_parquet_round_trip(tmp_path: Path) -> None:
    src = write(tmp_path / "src", PATIENTS.replace(",other,", ",brexucabtagene_autoleucel,"))
    cohort = load_cohort(src)
    write_cohort(cohort, tmp_path / "pq", fmt="parquet")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "patients.parquet").write_bytes((tmp_path / "pq" / "patients.parquet").read_bytes())
    (mixed / "measurements.csv").write_text(MEASUREMENTS)
    (mixed / "events.parquet").write_bytes((tmp_path / "pq" / "events.parquet").read_bytes())
    again = load_cohort(mixed)
    assert again.fingerprint() == cohort.fingerprint()
    assert load_cohort(tmp_path / "pq").fingerprint() == cohort.fingerprint()


def test_write_refuses_to_clobber(tmp_path: Path) -> None:
    cohort = load_cohort(write(tmp_path / "src", PATIENTS.replace(",other,", ",tisagenlecleucel,")))
    target = write_cohort(cohort, tmp_path / "out")
    before = (target / "patients.csv").read_bytes()
    with pytest.raises(FileExistsError):
        write_cohort(cohort, target)
    assert (target / "patients.csv").read_bytes() == before


def test_problem_list_is_capped_and_counts_the_rest(tmp_path: Path) -> None:
    rows = "".join(f"P1,{i},il6,-1,pg/mL\n" for i in range(80))
    with pytest.raises(CohortValidationError) as caught:
        load_cohort(write(tmp_path, PATIENTS.replace(",other,", ",tisagenlecleucel,"), MEASUREMENTS + rows))
    assert len(caught.value.problems) == 50 and caught.value.truncated == 30
    assert "30 more problem(s)" in str(caught.value)


JUNK = st.one_of(
    st.text(max_size=6),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(["", "NA", "il6", "pg/mL", "degF", "P1", "crs_grade", "-1e308", "1e400"]),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    cells=st.lists(st.lists(JUNK, min_size=5, max_size=5), max_size=6),
    column=st.sampled_from(["patients", "measurements", "events"]),
)
def test_random_junk_only_ever_raises_the_validation_error(tmp_path: Path, cells, column) -> None:
    folder = write(tmp_path / "junk", PATIENTS.replace(",other,", ",tisagenlecleucel,"))
    header = {
        "patients": "patient_id,age_years,sex,product,center",
        "measurements": "patient_id,hours_since_infusion,analyte,value,unit",
        "events": "patient_id,hours_since_infusion,event,value,extra",
    }[column]
    frame = pd.DataFrame(cells, columns=header.split(",")) if cells else pd.DataFrame(columns=header.split(","))
    frame.to_csv(folder / f"{column}.csv", index=False)
    try:
        cohort = load_cohort(folder)
    except CohortValidationError as error:
        assert error.problems and all(p.field for p in error.problems)
    else:
        assert np.isfinite(cohort.measurements["value"]).all()


def test_cli_validate_reports_without_traceback(tmp_path: Path) -> None:
    import subprocess
    import sys

    folder = write(tmp_path / "bad", PATIENTS, MEASUREMENTS + "P1,30,temperature,140,degF\n")
    out = subprocess.run(
        [sys.executable, "-m", "crsrisk.cli", "validate", str(folder)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "measurements, line 7, patient_id='P1', field 'value': value '140': implausible temperature" in out.stderr
    assert "patients, line 3, patient_id='P2', field 'costim_domain'" in out.stderr
    good = write(tmp_path / "good", PATIENTS.replace(",other,", ",tisagenlecleucel,"))
    out = subprocess.run(
        [sys.executable, "-m", "crsrisk.cli", "validate", str(good)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0 and "valid cohort" in out.stdout and "crp: mg/dL -> mg/L" in out.stdout


def test_validate_counts_every_problem_by_kind_and_writes_them_all(tmp_path: Path) -> None:
    import subprocess
    import sys

    import pandas as pd

    folder = tmp_path / "bad"
    folder.mkdir()
    pd.DataFrame(
        {
            "patient_id": [f"P{i}" for i in range(80)],
            "age_years": [-1.0] * 70 + [10.0] * 10,
            "product": "tisagenlecleucel",
        }
    ).to_csv(folder / "patients.csv", index=False)
    pd.DataFrame(
        {"patient_id": ["P1"] * 5, "hours_since_infusion": 1.0, "analyte": "il6", "value": 10.0, "unit": "Pg/mL"}
    ).to_csv(folder / "measurements.csv", index=False)  # not a UCUM spelling
    pd.DataFrame(columns=["patient_id", "hours_since_infusion", "event", "value"]).to_csv(
        folder / "events.csv", index=False
    )
    out = tmp_path / "problems.csv"
    done = subprocess.run(
        [sys.executable, "-m", "crsrisk.cli", "validate", str(folder), "--problems-out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    text = " ".join(done.stderr.split())
    assert "75 problem(s)" in text and "by kind:" in text and "70 x patients.age_years" in text
    written = pd.read_csv(out)
    assert len(written) == 75 and set(written["field"]) == {"age_years", "unit"}
    assert (out.stat().st_mode & 0o777) == 0o600


def test_defaults_that_change_meaning_are_noted_and_recorded(tmp_path: Path) -> None:
    import pandas as pd

    from crsrisk.cohort.validate import validate_tables

    patients = pd.DataFrame(
        {
            "patient_id": ["A", "B"],
            "age_years": [9.0, 12.0],
            "product": "tisagenlecleucel",
            "diagnosis": ["B-ALL", None],
            "followup_hours": [None, 300.0],
        }
    )
    empty_m = pd.DataFrame(columns=["patient_id", "hours_since_infusion", "analyte", "value", "unit"])
    events = pd.DataFrame({"patient_id": ["A"], "hours_since_infusion": [20.0], "event": ["crs_grade"], "value": [2]})
    cohort = validate_tables({"patients": patients, "measurements": empty_m, "events": events})
    assert cohort.metadata["defaults_applied"] == {"diagnosis": 1, "followup_hours": 1, "no_icans_records": 2}
    notes = " ".join(cohort.metadata["notes"])
    assert "1 infusion(s) with no diagnosis: taken as B-ALL" in notes and "no icans_grade record at all" in notes


def test_units_are_matched_the_way_ucum_matches_them() -> None:
    import pandas as pd

    from crsrisk.cohort.validate import validate_tables

    patients = pd.DataFrame({"patient_id": ["A"], "age_years": [9.0], "product": "tisagenlecleucel"})
    measurements = pd.DataFrame(
        {
            "patient_id": "A",
            "hours_since_infusion": [1.0, 2.0, 3.0],
            "analyte": ["il6", "il6", "platelets"],
            "value": [40.0, 2400.0, 80.0],
            "unit": ["pg/ml", "PG/ML", "10*9/L"],
        }
    )
    events = pd.DataFrame(columns=["patient_id", "hours_since_infusion", "event", "value"])
    cohort = validate_tables({"patients": patients, "measurements": measurements, "events": events})
    assert list(cohort.measurements["unit"]) == ["pg/mL", "pg/mL", "10^9/L"]
    assert list(cohort.measurements["value"]) == [40.0, 2400.0, 80.0]
    assert "1 il6 value(s) with unit 'pg/ml' read as 'pg/mL' (UCUM)" in " ".join(cohort.metadata["notes"])
