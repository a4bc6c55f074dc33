"""OMOP CDM v5.4 in: a database (any SQLAlchemy URL: DuckDB, PostgreSQL, ...) -> a cohort.

Every code is resolved through the database's own ``concept`` table (vocabulary_id, concept_code), so concept
ids never appear in crsrisk; the codes are those of ``schema/codes.py`` and ``schema/analytes.py``:

- ``person``: ``person_source_value`` (else ``person_id``) is the patient_id; gender concept 8507/8532 -> sex;
  birth date (``birth_datetime``, else year/month/day of birth) -> age at infusion; ``care_site.care_site_name``
  -> center.
- ``procedure_occurrence`` with the crsrisk concept ``car_t_infusion``, or any procedure or ``drug_exposure``
  naming a CAR-T product (concept name or source value): the infusion (time zero) and the product.
- ``measurement`` with a LOINC (or crsrisk) analyte concept, ``value_as_number`` and a UCUM unit concept
  (``unit_source_value`` when the unit concept is missing).
- ``drug_exposure``: tocilizumab, siltuximab, anakinra, corticosteroids by RxNorm or ATC, the concept itself
  or any ancestor in ``concept_ancestor`` (clinical drugs -> ingredient); ``quantity`` is taken as the dose.
- ``observation`` (or ``measurement``) rows with the crsrisk concepts ``crs_grade`` / ``icans_grade`` and the
  grade in ``value_as_number``; patient fields as crsrisk concepts named after the column.
- ``condition_occurrence``: the diagnosis by its ICD-10 source concept (or a crsrisk concept).

Every concept is looked up in the site's code map (``--code-map``: vocabulary_id, concept_code) before the
registry; procedures by CPT4 38228/0540T or ICD10PCS (``schema.codes.INFUSION_CODES``) are the infusion.
Concepts nobody maps are counted in the import report, with an example row each.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Iterator

from crsrisk.errors import CohortValidationError, InputError, Problem
from crsrisk.schema.codes import OMOP_GENDER, product_in_text
from crsrisk.schema.tables import DRUG_EVENTS, GRADE_EVENTS
from crsrisk.schema.units import match_unit
from crsrisk.sources.assemble import Imported, SourceRows, assemble
from crsrisk.sources.codemap import NO_MAP, CodeMap
from crsrisk.sources.daily import Moment, TimeRule
from crsrisk.sources.values import patient_value

_CONCEPT = "LEFT JOIN concept {a} ON {a}.concept_id = {column}"
_PERSON = """SELECT p.person_id, p.person_source_value, p.gender_concept_id, p.year_of_birth, p.month_of_birth,
    p.day_of_birth, p.birth_datetime, cs.care_site_name FROM person p
    LEFT JOIN care_site cs ON cs.care_site_id = p.care_site_id"""
_MEASUREMENT = f"""SELECT x.measurement_id AS id, x.person_id, x.measurement_date AS day, x.measurement_datetime AS at,
    x.value_as_number AS number, NULL AS text, NULL AS value_code, c.vocabulary_id, c.concept_code, c.concept_name,
    u.concept_code AS unit_code, x.unit_source_value AS unit_text FROM measurement x
    {_CONCEPT.format(a="c", column="x.measurement_concept_id")} {_CONCEPT.format(a="u", column="x.unit_concept_id")}"""
_OBSERVATION = f"""SELECT x.observation_id AS id, x.person_id, x.observation_date AS day, x.observation_datetime AS at,
    x.value_as_number AS number, x.value_as_string AS text, v.concept_code AS value_code, c.vocabulary_id,
    c.concept_code, c.concept_name, u.concept_code AS unit_code, x.unit_source_value AS unit_text FROM observation x
    {_CONCEPT.format(a="c", column="x.observation_concept_id")} {_CONCEPT.format(a="u", column="x.unit_concept_id")}
    {_CONCEPT.format(a="v", column="x.value_as_concept_id")}"""
_DRUG = f"""SELECT x.drug_exposure_id AS id, x.person_id, x.drug_exposure_start_date AS day,
    x.drug_exposure_start_datetime AS at, x.quantity, x.drug_concept_id, x.drug_source_value AS source_value,
    c.vocabulary_id, c.concept_code, c.concept_name FROM drug_exposure x
    {_CONCEPT.format(a="c", column="x.drug_concept_id")}"""
_ANCESTORS = """SELECT ca.descendant_concept_id, a.vocabulary_id, a.concept_code FROM concept_ancestor ca
    JOIN concept a ON a.concept_id = ca.ancestor_concept_id
    WHERE ca.descendant_concept_id IN (SELECT drug_concept_id FROM drug_exposure)"""
_PROCEDURE = f"""SELECT x.procedure_occurrence_id AS id, x.person_id, x.procedure_date AS day, x.procedure_datetime AS at,
    x.procedure_source_value AS source_value, c.vocabulary_id, c.concept_code, c.concept_name
    FROM procedure_occurrence x {_CONCEPT.format(a="c", column="x.procedure_concept_id")}"""
_CONDITION = f"""SELECT x.condition_occurrence_id AS id, x.person_id, c.vocabulary_id, c.concept_code, c.concept_name,
    s.vocabulary_id AS source_vocabulary, s.concept_code AS source_code FROM condition_occurrence x
    {_CONCEPT.format(a="c", column="x.condition_concept_id")}
    {_CONCEPT.format(a="s", column="x.condition_source_concept_id")}"""


def _when(row: Any) -> Moment | None:
    """The row's datetime when given (a time recorded), else its date (placed by the daily rule)."""
    if row.at is not None:
        return row.at if isinstance(row.at, datetime) else datetime.fromisoformat(str(row.at))
    if row.day is None:
        return None
    return (
        row.day
        if isinstance(row.day, date) and not isinstance(row.day, datetime)
        else date.fromisoformat(str(row.day)[:10])
    )


def _birth(row: Any, rows: SourceRows, patient_id: str) -> date | None:
    if row.birth_datetime is not None:
        return row.birth_datetime.date() if isinstance(row.birth_datetime, datetime) else row.birth_datetime
    if row.year_of_birth is None:
        return None
    if row.month_of_birth is None or row.day_of_birth is None:
        rows.skipped["person birth date completed to the middle of the year or month"] += 1
        return date(
            int(row.year_of_birth),
            int(row.month_of_birth or 7),
            int(row.day_of_birth or (15 if row.month_of_birth else 1)),
        )
    return date(int(row.year_of_birth), int(row.month_of_birth), int(row.day_of_birth))


def _people(connection: Any, rows: SourceRows) -> dict[Any, str]:
    ids: dict[Any, str] = {}
    for row in _query(connection, _PERSON):
        patient_id = str(row.person_source_value).strip() if row.person_source_value else str(row.person_id)
        ids[row.person_id] = patient_id
        rows.patient(patient_id)
        rows.set_field(patient_id, "sex", OMOP_GENDER.get(row.gender_concept_id), f"person {row.person_id}")
        rows.set_field(patient_id, "center", row.care_site_name, f"person {row.person_id}")
        birth = _birth(row, rows, patient_id)
        if birth is not None:
            rows.birth_dates[patient_id] = birth
    return ids


def _query(connection: Any, sql: str) -> Iterator[Any]:
    from sqlalchemy import text

    yield from connection.execute(text(sql))


def _person(ids: dict[Any, str], row: Any, table: str, rows: SourceRows) -> str | None:
    if row.person_id not in ids:
        rows.problem(table, "person_id", f"{table}_id {row.id}: no such person", value=row.person_id)
        return None
    return ids[row.person_id]


def _timed(row: Any, table: str, rows: SourceRows, patient_id: str) -> Moment | None:
    moment = _when(row)
    if moment is None:
        rows.problem(table, "date", f"{table}_id {row.id}: no date", patient_id)
    return moment


def _placed(ids: dict[Any, str], row: Any, table: str, rows: SourceRows) -> tuple[str, Moment | None]:
    """The row's patient_id and time, or a None time once the problem is recorded."""
    patient_id = _person(ids, row, table, rows)
    return (patient_id or "", None if patient_id is None else _timed(row, table, rows, patient_id))


def _facts(connection: Any, ids: dict[Any, str], rows: SourceRows, table: str, sql: str) -> None:
    """Measurement or observation rows: analytes, grades and patient fields."""
    for row in _query(connection, sql):
        found = rows.meaning(row.vocabulary_id, row.concept_code, ("measurement", "event", "patient"))
        if found is None or (found.kind == "event" and found.name not in GRADE_EVENTS):
            rows.add_unknown(table, row.vocabulary_id, row.concept_code, row.concept_name, f"{table}_id {row.id}")
            continue
        patient_id = _person(ids, row, table, rows)
        if patient_id is None:
            continue
        unit = row.unit_code or row.unit_text
        if found.kind == "patient":
            value = next((v for v in (row.number, row.text, row.value_code) if v is not None), None)
            value = float(value) if isinstance(value, (int, float)) or hasattr(value, "as_tuple") else value  # type: ignore[arg-type]  # as_tuple: a Decimal
            rows.set_field(
                patient_id,
                found.name,
                patient_value(found.name, value, unit, f"{table}_id {row.id}", patient_id, rows),
                f"{table}_id {row.id}",
            )
            continue
        moment = _timed(row, table, rows, patient_id)
        if moment is None:
            continue
        if row.number is None:
            rows.problem(
                table, "value_as_number", f"{table}_id {row.id}: expected a number for {found.name}", patient_id
            )
        elif found.kind == "measurement":
            matched = match_unit(found.name, row.unit_code) or match_unit(found.name, row.unit_text)
            rows.measurements.append((patient_id, moment, found.name, float(row.number), matched or unit or ""))
        else:
            rows.events.append((patient_id, moment, found.name, float(row.number)))


def _ancestors(connection: Any) -> dict[Any, list[tuple[str, str]]]:
    from sqlalchemy import inspect

    if not inspect(connection).has_table("concept_ancestor"):
        return {}
    found: dict[Any, list[tuple[str, str]]] = {}
    for row in _query(connection, _ANCESTORS):
        found.setdefault(row.descendant_concept_id, []).append((row.vocabulary_id, row.concept_code))
    return found


def _drugs(connection: Any, ids: dict[Any, str], rows: SourceRows) -> None:
    ancestors = _ancestors(connection)
    for row in _query(connection, _DRUG):
        product = (
            getattr(rows.meaning(row.vocabulary_id, row.concept_code, ("product",)), "name", None)
            or product_in_text(row.concept_name)
            or product_in_text(row.source_value)
        )
        codes = [(row.vocabulary_id, row.concept_code), *ancestors.get(row.drug_concept_id, [])]
        found = next((m for v, c in codes if (m := rows.meaning(v, c, ("event",))) and m.name in DRUG_EVENTS), None)
        if product is None and found is None:
            rows.add_unknown(
                "drug_exposure", row.vocabulary_id, row.concept_code, row.concept_name, f"drug_exposure_id {row.id}"
            )
            continue
        patient_id, moment = _placed(ids, row, "drug_exposure", rows)
        if moment is None:
            continue
        if product is not None:
            rows.add_infusion(patient_id, moment, product, f"drug_exposure_id {row.id}")
        else:
            rows.events.append((patient_id, moment, found.name, None if row.quantity is None else float(row.quantity)))  # type: ignore[union-attr]  # no product: found is set


def _procedures(connection: Any, ids: dict[Any, str], rows: SourceRows) -> None:
    for row in _query(connection, _PROCEDURE):
        infusion = rows.meaning(row.vocabulary_id, row.concept_code, ("infusion",))
        product = (
            getattr(rows.meaning(row.vocabulary_id, row.concept_code, ("product",)), "name", None)
            or product_in_text(row.source_value)
            or product_in_text(row.concept_name)
        )
        if infusion is None and product is None:
            rows.add_unknown(
                "procedure_occurrence",
                row.vocabulary_id,
                row.concept_code,
                row.concept_name,
                f"procedure_occurrence_id {row.id}",
            )
            continue
        patient_id, moment = _placed(ids, row, "procedure_occurrence", rows)
        if moment is not None:
            rows.add_infusion(patient_id, moment, product, f"procedure_occurrence_id {row.id}")


def _conditions(connection: Any, ids: dict[Any, str], rows: SourceRows) -> None:
    for row in _query(connection, _CONDITION):
        found = rows.meaning(row.source_vocabulary, row.source_code, ("diagnosis",)) or rows.meaning(
            row.vocabulary_id, row.concept_code, ("diagnosis",)
        )
        if found is None:
            rows.add_unknown(
                "condition_occurrence",
                row.source_vocabulary or row.vocabulary_id,
                row.source_code or row.concept_code,
                row.concept_name,
                f"condition_occurrence_id {row.id}",
            )
            continue
        patient_id = _person(ids, row, "condition_occurrence", rows)
        if patient_id is not None:
            rows.set_field(patient_id, "diagnosis", found.name, f"condition_occurrence_id {row.id}")


def read_omop_rows(url: str, codes: CodeMap = NO_MAP) -> SourceRows:
    """Every OMOP row crsrisk reads, decoded into source rows (problems collected)."""
    from sqlalchemy import create_engine, inspect
    from sqlalchemy.exc import SQLAlchemyError

    try:
        engine = create_engine(url)
    except (SQLAlchemyError, ValueError, ImportError) as error:
        raise InputError(f"database URL {url!r}: {error}") from None
    rows = SourceRows(codes=codes)
    try:
        with engine.connect() as connection:
            present = set(inspect(connection).get_table_names())
            needed = {
                "person",
                "concept",
                "care_site",
                "measurement",
                "observation",
                "drug_exposure",
                "procedure_occurrence",
                "condition_occurrence",
            }
            if needed - present:
                raise CohortValidationError(
                    [
                        Problem(
                            "omop",
                            "<tables>",
                            f"missing OMOP CDM v5.4 table(s) {sorted(needed - present)} in {engine.url!r}",
                        )
                    ]
                )
            ids = _people(connection, rows)
            _procedures(connection, ids, rows)
            _drugs(connection, ids, rows)
            _facts(connection, ids, rows, "measurement", _MEASUREMENT)
            _facts(connection, ids, rows, "observation", _OBSERVATION)
            _conditions(connection, ids, rows)
    except SQLAlchemyError as error:
        raise InputError(f"reading {engine.url!r}: {str(error).splitlines()[0]}") from None
    finally:
        engine.dispose()
    return rows


def import_omop(url: str, rule: TimeRule = TimeRule(), codes: CodeMap = NO_MAP) -> Imported:
    """An OMOP CDM v5.4 database as a validated cohort with its import report (the password is not recorded)."""
    from sqlalchemy.engine import make_url

    shown = make_url(url).render_as_string(hide_password=True)
    return assemble(
        read_omop_rows(url, codes), rule, {"kind": "omop", "version": "5.4", "source": shown, "code_map": codes.source}
    )
