"""Validate raw contract tables and bring them to canonical types and units.

Pure: raw DataFrames in, a ``Cohort`` (or a ``CohortValidationError`` listing every problem) out.
Hand-written rather than pandera: measured with pandera 0.35, a failed dtype coercion turns the
column's range check into one row-less ``TypeError`` failure, so it cannot report every bad row
with its line at once, which the contract requires.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import pandas as pd

from crsrisk.cohort.validated import Cohort
from crsrisk.errors import CohortValidationError, Problem, shown
from crsrisk.schema.analytes import ANALYTES
from crsrisk.schema.numbers import FALSE_TEXT, NUMBER_TEXT, TRUE_TEXT, WHITESPACE, encodable, parse_number
from crsrisk.schema.rules import COSTIM, EVENT_VALUE
from crsrisk.schema.tables import COLUMNS, DEFAULTED, TABLES, Column
from crsrisk.schema.units import ACCEPTED_UNITS, match_unit

MAX_PROBLEMS = 50
_NOT_TEXT = object()


def _cell_text(value: Any, booleans: bool) -> Any:
    """One cell of a text column: stripped text, None when blank, ``_NOT_TEXT`` for anything else (lists,
    objects, bytes, unencodable text; booleans and floats too unless the column is boolean)."""
    if value is None or value is pd.NA:
        return None
    if isinstance(value, str):
        if not encodable(value):
            return _NOT_TEXT
        return value.strip(WHITESPACE) or None
    if isinstance(value, (bool, np.bool_)):
        return ("true" if value else "false") if booleans else _NOT_TEXT
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else str(float(value)) if booleans else _NOT_TEXT
    if isinstance(value, (int, np.integer)):
        try:
            return str(int(value))
        except ValueError:  # more digits than Python will print
            return _NOT_TEXT
    return _NOT_TEXT


@dataclass
class _Collector:
    """Gathers problems (up to ``limit`` examples, counting the rest, and every one by kind) and notes."""

    csv: Mapping[str, bool]
    limit: int = MAX_PROBLEMS
    problems: list[Problem] = field(default_factory=list)
    truncated: int = 0
    notes: list[str] = field(default_factory=list)
    kinds: dict[tuple[str, str, str], int] = field(default_factory=dict)  # (table, field, rule) -> count

    def add(
        self, table: str, column: str, message: str, rows: pd.DataFrame | None = None, show_value: bool = True
    ) -> None:
        """Record one problem per offending row of the raw table (``rows`` holds ``_row`` and ``patient_id``),
        showing the row's raw ``column`` value when asked and when the table has that column at all."""
        kind = (table, column, message)
        self.kinds[kind] = self.kinds.get(kind, 0) + (1 if rows is None else len(rows))
        if rows is None:
            self._push(Problem(table, column, message, csv=self.csv.get(table, True)))
            return
        values = rows[column] if show_value and column in rows.columns else None
        for position, (_, record) in enumerate(rows.iterrows()):
            if len(self.problems) >= self.limit:
                self.truncated += len(rows) - position
                return
            value = None if values is None else values.loc[record.name]
            self._push(
                Problem(
                    table,
                    column,
                    message,
                    int(record["_row"]),
                    _text(record.get("patient_id")),
                    _plain(value),
                    csv=self.csv.get(table, True),
                )
            )

    def _push(self, problem: Problem) -> None:
        if len(self.problems) >= self.limit:
            self.truncated += 1
        else:
            self.problems.append(problem)


def _text(value: Any) -> str | None:
    """A row's patient id for messages: text as is, None when blank, anything else as a short repr."""
    if isinstance(value, str):
        return value
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return shown(value)


def _plain(value: Any) -> Any:
    """A value as the user wrote it, for messages (numpy scalars to Python)."""
    if value is None:
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


def _as_text(series: pd.Series, booleans: bool = False) -> tuple[pd.Series, pd.Series]:
    """Text with surrounding blanks stripped (NA when blank or not text) and the mask of cells that are not
    text (see ``_cell_text``); numeric and boolean columns of a Parquet file read as their text."""
    dtype = series.dtype
    if pd.api.types.is_object_dtype(dtype):
        cells = [_cell_text(v, booleans) for v in series.tolist()]
        bad = pd.Series([c is _NOT_TEXT for c in cells], index=series.index, dtype=bool)
        text = pd.Series([None if c is _NOT_TEXT else c for c in cells], index=series.index, dtype="string")
        return text, bad
    if pd.api.types.is_bool_dtype(dtype) and not booleans:
        return pd.Series(pd.NA, index=series.index, dtype="string"), series.notna().astype(bool)
    text = series.astype("string")
    text = (text.str.lower() if pd.api.types.is_bool_dtype(dtype) else text).str.strip(WHITESPACE)
    return text.mask(text == ""), pd.Series(False, index=series.index)


def _numeric(table: str, column: Column, raw: pd.DataFrame, out: _Collector) -> tuple[pd.Series, pd.Series]:
    """The column as float64 (NaN when blank or wrong) and the mask of blank cells."""
    values = raw[column.name]
    dtype = values.dtype
    if pd.api.types.is_string_dtype(dtype) and not pd.api.types.is_object_dtype(dtype):
        text = values.str.strip(WHITESPACE)
        blank = (text.isna() | (text == "")).astype(bool)
        number = text.str.fullmatch(NUMBER_TEXT.pattern).fillna(False).astype(bool)
        numbers = pd.to_numeric(text.where(number), errors="coerce").astype("float64")
        bad = ~blank & ~number
    elif (
        pd.api.types.is_numeric_dtype(dtype)
        and not pd.api.types.is_bool_dtype(dtype)
        and not pd.api.types.is_complex_dtype(dtype)
    ):
        numbers = pd.Series(values.to_numpy(dtype="float64", na_value=np.nan), index=values.index)
        blank, bad = numbers.isna(), pd.Series(False, index=values.index)
    else:
        parsed = [parse_number(v) for v in values.tolist()]
        bad = pd.Series([p is None for p in parsed], index=values.index, dtype=bool)
        numbers = pd.Series([math.nan if p is None else p for p in parsed], index=values.index, dtype="float64")
        blank = numbers.isna() & ~bad
    if bad.any():
        out.add(table, column.name, "expected a number (digits 0-9, a point, an exponent)", raw[bad])
    infinite = np.isinf(numbers)
    if infinite.any():
        out.add(table, column.name, "expected a finite number", raw[infinite])
    numbers = numbers.mask(infinite)
    if column.low is not None:
        outside = column.outside(numbers)
        if outside.any():
            out.add(table, column.name, f"expected a value from {column.low:g} to {column.high:g}", raw[outside])
    return numbers, blank


def _boolean(
    table: str, column: Column, raw: pd.DataFrame, text: pd.Series, wrong: pd.Series, out: _Collector
) -> pd.Series:
    text = text.str.lower()
    result = pd.Series(pd.NA, index=raw.index, dtype="boolean")
    result[text.isin(TRUE_TEXT).fillna(False).astype(bool)] = True
    result[text.isin(FALSE_TEXT).fillna(False).astype(bool)] = False
    bad = (text.notna() & result.isna()).astype(bool) | wrong
    if bad.any():
        out.add(table, column.name, "expected true/false (also accepted: yes/no, 1/0)", raw[bad])
    return result


def _category(
    table: str, column: Column, raw: pd.DataFrame, text: pd.Series, wrong: pd.Series, out: _Collector
) -> pd.Series:
    bad = (text.notna() & ~text.isin(column.choices).fillna(False)).astype(bool) | wrong
    if bad.any():
        out.add(table, column.name, f"expected one of {list(column.choices)}", raw[bad])
    return text.mask(bad).astype("string")


def _typed_table(table: str, raw: pd.DataFrame, out: _Collector) -> pd.DataFrame:
    """Check presence, type, allowed values and ranges of every contract column."""
    columns = COLUMNS[table]
    names = [c.name for c in columns]
    missing = [c.name for c in columns if c.required and c.name not in raw.columns]
    for name in missing:
        out.add(table, name, f"required column is missing (columns found: {[c for c in raw.columns if c != '_row']})")
    extra = [c for c in raw.columns if c not in names and c != "_row"]
    if extra:
        out.notes.append(f"{table}: ignored extra column(s) {extra}")
    typed = pd.DataFrame(index=raw.index)
    for column in columns:
        if column.name not in raw.columns:
            typed[column.name] = pd.Series(None, index=raw.index, dtype=column.kind.dtype)
            continue
        typed[column.name], blank = _TYPED[column.kind.name](table, column, raw, out)
        if column.required:
            if blank.any():
                out.add(table, column.name, "a value is required", raw[blank], show_value=False)
    return typed


def _text_column(table: str, column: Column, raw: pd.DataFrame, out: _Collector) -> tuple[pd.Series, pd.Series]:
    """A text, truth or choice column: its values (by the kind's own check) and the mask of blank cells."""
    text, wrong = _as_text(raw[column.name], booleans=column.kind.reads_truth)
    blank = text.isna().astype(bool) & ~wrong
    return _TEXT_CHECKS[column.kind.name](table, column, raw, text, wrong, out), blank


def _plain_text(
    table: str, column: Column, raw: pd.DataFrame, text: pd.Series, wrong: pd.Series, out: _Collector
) -> pd.Series:
    if wrong.any():
        out.add(table, column.name, "expected text (UTF-8), not a number, list or object", raw[wrong])
    return text


_TEXT_CHECKS = {"bool": _boolean, "category": _category, "string": _plain_text}
_TYPED = {"float": _numeric, "bool": _text_column, "category": _text_column, "string": _text_column}
"""Column kind (``schema.kinds``) -> its vectorised check: the one dispatch on the kind."""


def _check_patients(raw: pd.DataFrame, typed: pd.DataFrame, out: _Collector) -> pd.DataFrame:
    duplicated = typed["patient_id"].notna() & typed["patient_id"].duplicated(keep="first")
    if duplicated.any():
        out.add(
            "patients", "patient_id", "duplicate patient_id: each infusion must have exactly one row", raw[duplicated]
        )
    typed[COSTIM.column], conflict, needed = COSTIM.fill_table(typed[COSTIM.column], typed[COSTIM.source])
    if conflict.any():
        out.add("patients", COSTIM.column, COSTIM.conflict, raw[conflict])
    if needed.any():
        out.add("patients", COSTIM.column, COSTIM.needed, raw[needed], show_value=False)
    for column in DEFAULTED:
        typed[column.name] = typed[column.name].fillna(column.default)
    return typed


def _defaults_applied(
    raws: Mapping[str, pd.DataFrame], typed: Mapping[str, pd.DataFrame], out: _Collector
) -> dict[str, int]:
    """Defaults that change meaning, counted, stated as notes and recorded in the metadata (never silent): a blank
    diagnosis read as B-ALL, a blank follow-up as complete to day 28, no CRS (or ICANS) records at all as none."""
    patients = raws["patients"]
    applied = {}
    for column, meaning in ((c.name, c.default_note) for c in DEFAULTED):
        blank = (
            len(patients)
            if column not in patients.columns
            else int((patients[column].isna() | (patients[column].astype(str).str.strip() == "")).sum())
        )
        if blank:
            applied[column] = blank
            out.notes.append(f"patients: {blank} infusion(s) with no {column}: {meaning}")
    for event, syndrome in (("crs_grade", "CRS"), ("icans_grade", "ICANS")):
        if len(typed["patients"]) and not (typed["events"]["event"] == event).any():
            applied[f"no_{syndrome.lower()}_records"] = int(len(typed["patients"]))
            out.notes.append(
                f"events: no {event} record at all: every infusion taken as without {syndrome} (labels "
                f"of the {syndrome} tasks are only as good as that)"
            )
    return applied


def _unit_table() -> pd.DataFrame:
    """Every accepted (analyte, unit) pair with its conversion and the analyte's canonical range."""
    return pd.DataFrame(ACCEPTED_UNITS, columns=list(ACCEPTED_UNITS[0]._fields))


_UNITS = _unit_table()


def _ucum_units(typed: pd.DataFrame, out: _Collector) -> pd.Series:
    """Each measurement's unit in the contract's spelling where UCUM's matching rules name one (schema/units.py),
    else as written (then refused by name below); every respelling is counted in a note."""
    distinct = typed[["analyte", "unit"]].dropna().drop_duplicates()
    respelled = {(a, u): match_unit(a, u) for a, u in zip(distinct["analyte"], distinct["unit"])}
    respelled = {k: v for k, v in respelled.items() if v is not None and v != k[1]}
    if not respelled:
        return typed["unit"]
    keys = pd.Series(list(zip(typed["analyte"], typed["unit"])), index=typed.index)
    units = keys.map(respelled).fillna(typed["unit"])
    for (analyte, written), unit in respelled.items():
        n = int((keys == (analyte, written)).sum())
        out.notes.append(f"measurements: {n} {analyte} value(s) with unit {written!r} read as {unit!r} (UCUM)")
    return units.astype(typed["unit"].dtype)


def _check_measurements(raw: pd.DataFrame, typed: pd.DataFrame, out: _Collector) -> tuple[pd.DataFrame, dict]:
    """Check analyte and unit pairs and plausible ranges; convert values to canonical units (one merge). A unit
    written another way UCUM allows (``pg/ml``, ``PG/ML``, ``10*9/L``) is read as the contract's, and noted."""
    typed = typed.assign(unit=_ucum_units(typed, out))
    pairs = (
        typed[["analyte", "unit"]]
        .astype(object)
        .merge(_UNITS.astype({"analyte": object, "unit": object}), on=["analyte", "unit"], how="left")
    )
    pairs.index = typed.index
    known = typed["analyte"].isin(list(ANALYTES)).fillna(False).astype(bool)
    unknown = typed["analyte"].notna() & ~known
    if unknown.any():
        out.add("measurements", "analyte", f"unknown analyte; expected one of {list(ANALYTES)}", raw[unknown])
    bad_unit = known & typed["unit"].notna() & pairs["scale"].isna()
    for name in pd.unique(typed.loc[bad_unit, "analyte"]):
        rows = bad_unit & (typed["analyte"] == name).fillna(False).astype(bool)
        out.add(
            "measurements",
            "unit",
            f"unit not accepted for {name}; expected one of {list(ANALYTES[name].conversions)}",
            raw[rows],
        )
    canonical = typed["value"] * pairs["scale"] + pairs["offset"]
    outside = (canonical < pairs["low"]) | (canonical > pairs["high"])
    for name in pd.unique(typed.loc[outside, "analyte"]):
        info = ANALYTES[name]
        rows = outside & (typed["analyte"] == name).fillna(False).astype(bool)
        out.add(
            "measurements",
            "value",
            f"implausible {name}: expected {info.low:g} to {info.high:g} {info.unit} (after unit conversion)",
            raw[rows],
        )
    changed = pairs[pairs["scale"].notna() & (pairs["unit"] != pairs["canonical"])]
    converted = {
        f"{a}: {u} -> {c}": int(n)
        for (a, u, c), n in changed.groupby(["analyte", "unit", "canonical"], sort=False).size().items()
    }
    typed["value"] = canonical.astype("float64")
    typed["unit"] = pairs["canonical"].astype("string")
    return typed, converted


def _check_events(raw: pd.DataFrame, typed: pd.DataFrame, out: _Collector) -> pd.DataFrame:
    """Each event's value against its kind's rule (``schema.rules.EVENT_VALUE``)."""
    for kind, rule in EVENT_VALUE.items():
        broken = (typed["event"] == kind).fillna(False).astype(bool) & rule.broken(typed["value"])
        if broken.any():
            out.add("events", "value", rule.expected, raw[broken])
    return typed


def _check_references(tables: dict[str, pd.DataFrame], raws: dict[str, pd.DataFrame], out: _Collector) -> None:
    known = set(tables["patients"]["patient_id"].dropna())
    for name in ("measurements", "events"):
        ids = tables[name]["patient_id"]
        orphan = ids.notna() & ~ids.isin(known)
        if orphan.any():
            out.add(name, "patient_id", "no such patient_id in the patients table", raws[name][orphan])


def validate_tables(
    raw_tables: Mapping[str, pd.DataFrame],
    csv: Mapping[str, bool] | None = None,
    metadata: Mapping[str, Any] | None = None,
    max_problems: int = MAX_PROBLEMS,
) -> Cohort:
    """Validate the three raw tables and return the canonical ``Cohort``, or raise with every problem counted by
    kind and the first ``max_problems`` of them as examples."""
    out = _Collector(csv=dict(csv or {}), limit=max_problems)
    raws = {
        name: raw_tables[name].reset_index(drop=True).assign(_row=lambda t: np.arange(1, len(t) + 1)) for name in TABLES
    }
    typed = {name: _typed_table(name, raws[name], out) for name in TABLES}
    typed["patients"] = _check_patients(raws["patients"], typed["patients"], out)
    typed["measurements"], converted = _check_measurements(raws["measurements"], typed["measurements"], out)
    typed["events"] = _check_events(raws["events"], typed["events"], out)
    _check_references(typed, raws, out)
    if out.problems:
        order = {name: i for i, name in enumerate(TABLES)}
        ranked = sorted(out.problems, key=lambda p: (order.get(p.table, -1), p.row or 0))
        counts = sorted(((*kind, n) for kind, n in out.kinds.items()), key=lambda k: (order.get(k[0], -1), -k[3]))
        raise CohortValidationError(ranked, out.truncated, counts)
    meta = dict(metadata or {})
    meta["defaults_applied"] = _defaults_applied(raws, typed, out)
    meta["units_converted"] = converted
    meta["notes"] = meta.get("notes", []) + out.notes
    return Cohort(
        typed["patients"].reset_index(drop=True),
        typed["measurements"].sort_values(["patient_id", "hours_since_infusion"], kind="stable").reset_index(drop=True),
        typed["events"].sort_values(["patient_id", "hours_since_infusion"], kind="stable").reset_index(drop=True),
        meta,
    )
