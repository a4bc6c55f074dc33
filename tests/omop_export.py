"""A small OMOP CDM v5.4 writer for tests: contract tables -> a DuckDB database with its own concept table.

Concept ids are local to this database (as in any CDM instance); the importer must resolve them through
``concept``. Drugs are written as RxNorm clinical drugs linked to their ingredient by ``concept_ancestor``,
corticosteroids by ATC, grades and patient fields as crsrisk concepts, the diagnosis as an ICD-10 source concept.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from crsrisk.schema.codes import code_for
from crsrisk.schema.units import UCUM

BASE = datetime(2024, 1, 1, 10, 0)
DDL = {
    "concept": "concept_id BIGINT, concept_name VARCHAR, domain_id VARCHAR, vocabulary_id VARCHAR, "
    "concept_class_id VARCHAR, standard_concept VARCHAR, concept_code VARCHAR",
    "concept_ancestor": "ancestor_concept_id BIGINT, descendant_concept_id BIGINT",
    "care_site": "care_site_id BIGINT, care_site_name VARCHAR",
    "person": "person_id BIGINT, gender_concept_id BIGINT, year_of_birth INTEGER, month_of_birth INTEGER, "
    "day_of_birth INTEGER, birth_datetime TIMESTAMP, care_site_id BIGINT, person_source_value VARCHAR",
    "procedure_occurrence": "procedure_occurrence_id BIGINT, person_id BIGINT, procedure_concept_id BIGINT, "
    "procedure_date DATE, procedure_datetime TIMESTAMP, procedure_source_value VARCHAR",
    "drug_exposure": "drug_exposure_id BIGINT, person_id BIGINT, drug_concept_id BIGINT, drug_exposure_start_date DATE, "
    "drug_exposure_start_datetime TIMESTAMP, quantity DOUBLE, drug_source_value VARCHAR",
    "measurement": "measurement_id BIGINT, person_id BIGINT, measurement_concept_id BIGINT, measurement_date DATE, "
    "measurement_datetime TIMESTAMP, value_as_number DOUBLE, unit_concept_id BIGINT, "
    "unit_source_value VARCHAR",
    "observation": "observation_id BIGINT, person_id BIGINT, observation_concept_id BIGINT, observation_date DATE, "
    "observation_datetime TIMESTAMP, value_as_number DOUBLE, value_as_string VARCHAR, "
    "value_as_concept_id BIGINT, unit_concept_id BIGINT, unit_source_value VARCHAR",
    "condition_occurrence": "condition_occurrence_id BIGINT, person_id BIGINT, condition_concept_id BIGINT, "
    "condition_source_concept_id BIGINT",
}
INGREDIENT = {"tocilizumab": "612865", "siltuximab": "1535218", "anakinra": "72435"}
ICD10 = {"B-ALL": "C91.00", "LBCL": "C83.30", "MCL": "C83.10", "FL": "C82.90", "MM": "C90.00"}
FIELD_UNITS = {"weight_kg": "kg", "marrow_blasts_pct": "%", "dose_1e6_cells_per_kg": "10*6/kg", "followup_hours": "h"}


class Concepts:
    """Hands out local concept ids, one per (vocabulary, code)."""

    def __init__(self) -> None:
        self.rows: list[tuple] = []
        self.ids: dict[tuple[str, str], int] = {}

    def __call__(self, vocabulary: str, code: str, name: str = "") -> int:
        key = (vocabulary, code)
        if key not in self.ids:
            self.ids[key] = (2_000_000_001 if vocabulary == "crsrisk" else 1_000) + len(self.ids)
            self.rows.append((self.ids[key], name or code, "", vocabulary, "", "S", code))
        return self.ids[key]


def _blank(value: Any) -> bool:
    return value is None or (not isinstance(value, str) and pd.isna(value))


def write_omop(path: Path, patients: pd.DataFrame, measurements: pd.DataFrame, events: pd.DataFrame) -> str:
    """Write the cohort into a new DuckDB file at ``path``; returns its SQLAlchemy URL."""
    concept = Concepts()
    for sex, cid in (("MALE", 8507), ("FEMALE", 8532)):
        concept.rows.append((cid, sex, "Gender", "Gender", "Gender", "S", sex[0]))
    tables: dict[str, list[tuple]] = {name: [] for name in DDL}
    starts, person_ids, sites = {}, {}, {}
    for n, p in enumerate(patients.to_dict("records"), start=1):
        pid, start = p["patient_id"], BASE + timedelta(days=n)
        starts[pid], person_ids[pid] = start, n
        birth = start.date() - timedelta(days=round(p["age_years"] * 365.25))
        site = sites.setdefault(p.get("center"), len(sites) + 1) if not _blank(p.get("center")) else None
        gender = {"M": 8507, "F": 8532}.get(p.get("sex"), 0)
        tables["person"].append((n, gender, birth.year, birth.month, birth.day, None, site, pid))
        tables["procedure_occurrence"].append(
            (
                n,
                n,
                concept("crsrisk", "car_t_infusion"),
                start.date(),
                start,
                None if _blank(p.get("product")) else p["product"],
            )
        )
        if not _blank(p.get("diagnosis")):
            tables["condition_occurrence"].append(
                (
                    n,
                    n,
                    concept("SNOMED", f"dx-{p['diagnosis']}"),
                    concept("ICD10CM", ICD10[p["diagnosis"]])
                    if p["diagnosis"] in ICD10
                    else concept("crsrisk", p["diagnosis"]),
                )
            )
        for column in (
            "weight_kg",
            "marrow_blasts_pct",
            "extramedullary_disease",
            "cns_status",
            "prior_hsct",
            "costim_domain",
            "dose_1e6_cells_per_kg",
            "lymphodepletion",
            "followup_hours",
        ):
            value = p.get(column)
            if _blank(value) or value == "":
                continue
            code = concept("LOINC", "29463-7") if column == "weight_kg" else concept("crsrisk", column)
            number = float(value) if isinstance(value, (bool, int, float)) else None
            unit = concept("UCUM", FIELD_UNITS[column]) if column in FIELD_UNITS else None
            tables["observation"].append(
                (
                    len(tables["observation"]) + 1,
                    n,
                    code,
                    start.date(),
                    start,
                    number,
                    None if number is not None else str(value),
                    None,
                    unit,
                    None,
                )
            )
    tables["care_site"] = [(i, name) for name, i in sites.items()]
    for row in measurements.itertuples(index=False):
        at = starts[row.patient_id] + timedelta(seconds=round(row.hours_since_infusion * 3600))
        loinc = code_for("measurement", row.analyte)
        code = concept("LOINC", loinc) if loinc else concept("crsrisk", row.analyte)
        tables["measurement"].append(
            (
                len(tables["measurement"]) + 1,
                person_ids[row.patient_id],
                code,
                at.date(),
                at,
                float(row.value),
                concept("UCUM", UCUM[row.unit]),
                row.unit,
            )
        )
    for row in events.itertuples(index=False):
        at = starts[row.patient_id] + timedelta(seconds=round(row.hours_since_infusion * 3600))
        person, value = person_ids[row.patient_id], None if math.isnan(row.value) else float(row.value)
        if row.event in ("crs_grade", "icans_grade"):
            tables["observation"].append(
                (
                    len(tables["observation"]) + 1,
                    person,
                    concept("crsrisk", row.event),
                    at.date(),
                    at,
                    value,
                    None,
                    None,
                    None,
                    None,
                )
            )
            continue
        if row.event == "corticosteroid":
            drug = concept("ATC", "H02AB02", "dexamethasone")
        else:
            drug = concept("RxNorm", f"{INGREDIENT[row.event]}-ivsol", f"{row.event} 20 MG/ML Injectable Solution")
            ingredient = concept("RxNorm", INGREDIENT[row.event], row.event)
            if (ingredient, drug) not in tables["concept_ancestor"]:
                tables["concept_ancestor"].append((ingredient, drug))
        tables["drug_exposure"].append(
            (len(tables["drug_exposure"]) + 1, person, drug, at.date(), at, value, row.event)
        )
    tables["concept"] = concept.rows
    with duckdb.connect(str(path)) as connection:
        for name, columns in DDL.items():
            connection.execute(f"CREATE TABLE {name} ({columns})")
            if tables[name]:
                frame = pd.DataFrame(tables[name], columns=[c.split()[0] for c in columns.split(", ")])
                connection.register("frame", frame)
                connection.execute(f"INSERT INTO {name} SELECT * FROM frame")
                connection.unregister("frame")
    return f"duckdb:///{path}"
