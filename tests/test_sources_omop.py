"""OMOP CDM v5.4 in: a cohort written into a DuckDB CDM imports back to the same predictions."""

from __future__ import annotations

import duckdb
import numpy as np
import pytest
from typer.testing import CliRunner

from crsrisk.cli import app
from crsrisk.cohort.io import load_cohort
from crsrisk.errors import CohortValidationError
from crsrisk.sources.daily import TimeRule
from crsrisk.sources.omop import import_omop
from omop_export import write_omop
from tests_support import assert_same_tables, simulated_tables, sorted_scores


@pytest.fixture(scope="module")
def simulated():
    return simulated_tables(30, 8)


@pytest.fixture()
def database(simulated, tmp_path):
    tables, _ = simulated
    path = tmp_path / "cdm.duckdb"
    return path, write_omop(path, **tables)


def test_omop_round_trip_through_the_cli_gives_the_same_predictions(simulated, small_bundle, database, tmp_path):
    _, original = simulated
    _, url = database
    result = CliRunner().invoke(app, ["import", "omop", url, "--out", str(tmp_path / "cohort")])
    assert result.exit_code == 0, result.output
    loaded = load_cohort(tmp_path / "cohort")
    assert_same_tables(original, loaded)
    a, b = sorted_scores(original, small_bundle), sorted_scores(loaded, small_bundle)
    assert len(a) > 60
    np.testing.assert_array_equal(a["probability"].to_numpy(), b["probability"].to_numpy())
    assert loaded.metadata["imported_from"]["kind"] == "omop" and loaded.metadata["unknown_codes"] == []


def test_unknown_concepts_date_only_rows_and_the_same_day_option(database):
    path, url = database
    with duckdb.connect(str(path)) as connection:
        connection.execute("INSERT INTO concept VALUES (5, 'Hemoglobin', 'Measurement', 'LOINC', '', 'S', '718-7')")
        connection.execute(
            "INSERT INTO measurement VALUES (900001, 1, 5, DATE '2024-01-03', NULL, 9.1, NULL, 'g/dL'),"
            "(900002, 1, 5, DATE '2024-01-04', NULL, 9.0, NULL, 'g/dL')"
        )
        il6 = connection.execute("SELECT concept_id FROM concept WHERE concept_code = '26881-3'").fetchone()[0]
        pg = connection.execute("SELECT concept_id FROM concept WHERE concept_code = 'pg/mL'").fetchone()[0]
        # a date-only IL-6 on the infusion day of person 1 (infusion 2024-01-02 10:00) and one the day after
        connection.execute(
            f"INSERT INTO measurement VALUES (900003, 1, {il6}, DATE '2024-01-02', NULL, 40, {pg}, NULL),"
            f"(900004, 1, {il6}, DATE '2024-01-03', NULL, 50, {pg}, NULL)"
        )
    with pytest.raises(CohortValidationError, match="same_day_labs"):
        import_omop(url)
    imported = import_omop(url, TimeRule(same_day_labs="after"))
    unknown = imported.report["unknown_codes"]
    assert unknown == [
        {
            "where": "measurement",
            "system": "LOINC",
            "code": "718-7",
            "display": "Hemoglobin",
            "count": 2,
            "example": "measurement_id 900001",
        }
    ]
    first = imported.cohort.patients["patient_id"].iloc[0]  # noqa: F841 (read by the query below)
    il6_rows = imported.cohort.measurements.query("patient_id == @first and analyte == 'il6'")
    assert {1.0, 22.0} <= set(il6_rows["hours_since_infusion"])  # after: +1 h; next day 08:00 = 24 + 8 - 10
    assert (
        imported.report["date_only"]["measurements"] == 2 and imported.report["time_rule"]["same_day_labs"] == "after"
    )


def test_a_database_that_is_not_omop_is_a_clear_error(tmp_path):
    path = tmp_path / "empty.duckdb"
    duckdb.connect(str(path)).close()
    result = CliRunner().invoke(app, ["import", "omop", f"duckdb:///{path}", "--out", str(tmp_path / "c")])
    assert result.exit_code == 2 and "missing OMOP CDM v5.4 table(s)" in result.output
    assert not (tmp_path / "c").exists()


def test_a_site_code_map_and_cpt_infusions_import_the_same_cohort(simulated, database, tmp_path):
    from crsrisk.sources.codemap import load_code_map

    _, original = simulated
    path, url = database
    with duckdb.connect(str(path)) as connection:  # the site's own IL-6 code; the infusion by CPT4 38228
        connection.execute(
            "UPDATE concept SET vocabulary_id = 'HOSP_LAB', concept_code = 'IL6-LOCAL' "
            "WHERE vocabulary_id = 'LOINC' AND concept_code = '26881-3'"
        )
        connection.execute(
            "UPDATE concept SET vocabulary_id = 'CPT4', concept_code = '38228' "
            "WHERE vocabulary_id = 'crsrisk' AND concept_code = 'car_t_infusion'"
        )
    unread = import_omop(url).report["unknown_codes"]  # without the map the local IL-6 code is unread
    assert [(u["system"], u["code"]) for u in unread] == [("HOSP_LAB", "IL6-LOCAL")]
    code_map = tmp_path / "map.csv"
    code_map.write_text(
        "source_vocabulary_id,source_code,source_code_description,target\nHOSP_LAB,IL6-LOCAL,Interleukin 6,il6\n"
    )
    result = CliRunner().invoke(
        app, ["import", "omop", url, "--out", str(tmp_path / "cohort"), "--code-map", str(code_map)]
    )
    assert result.exit_code == 0, result.output
    assert_same_tables(original, load_cohort(tmp_path / "cohort"))
    assert import_omop(url, codes=load_code_map(code_map)).report["unknown_codes"] == []
