"""A site's own codes -> the contract's names: a CSV (OMOP ``source_to_concept_map`` columns) or a FHIR ConceptMap.

A hospital's local lab codes and local infusion order code are mapped to a contract name (``il6``,
``car_t_infusion``, ``tocilizumab``, ``crs_grade``, a product, a diagnosis, a patient column): the target is
looked up in ``schema.codes`` like a crsrisk code, so a map can say nothing the registry could not. The map is
validated as a whole (an unknown target, a duplicate source code, a missing column), each problem naming its row.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from crsrisk.cohort.io import MAX_TABLE_BYTES, read_limited
from crsrisk.errors import CohortValidationError, Problem
from crsrisk.schema.codes import Kind, Meaning, meanings, system_key

CSV_COLUMNS = ("source_vocabulary_id", "source_code", "source_code_description", "target")


def _key(system: str | None, code: str | None) -> tuple[str, str]:
    """The lookup key: the registry's system key when the system is known, else the URI or vocabulary as written."""
    name = (system or "").strip().rstrip("/")
    return (system_key(name) or name, (code or "").strip())


@dataclass(frozen=True)
class CodeMap:
    """Site codes (system, code) -> the contract meanings of their target; ``source`` names the file."""

    entries: Mapping[tuple[str, str], tuple[Meaning, ...]]
    source: str = "no code map"

    def meaning(self, system: str | None, code: str | None, kinds: tuple[Kind, ...] | None = None) -> Meaning | None:
        """The mapped meaning of a site code (restricted to ``kinds``), or None when the map does not name it."""
        return next((m for m in self.entries.get(_key(system, code), ()) if kinds is None or m.kind in kinds), None)


NO_MAP = CodeMap({})


def _build(rows: list[tuple[str, str, str, str]], where: str) -> CodeMap:
    """Validate (row label, system, code, target) rows into a map; every bad row is a problem naming it."""
    problems: list[Problem] = []
    entries: dict[tuple[str, str], tuple[Meaning, ...]] = {}
    first: dict[tuple[str, str], str] = {}
    for label, system, code, target in rows:
        if not system.strip() or not code.strip():
            problems.append(
                Problem(
                    "code_map",
                    "source_code",
                    f"{where} {label}: expected a vocabulary and a code",
                    value=f"{system}|{code}",
                    csv=False,
                )
            )
            continue
        found = meanings(target)
        if not found:
            problems.append(
                Problem(
                    "code_map",
                    "target",
                    f"{where} {label}: unknown target: expected a contract "
                    "name (an analyte such as il6, car_t_infusion, a drug event, crs_grade, "
                    "icans_grade, a product, a diagnosis or a patient column)",
                    value=target,
                    csv=False,
                )
            )
            continue
        key = _key(system, code)
        if key in first:
            problems.append(
                Problem(
                    "code_map",
                    "source_code",
                    f"{where} {label}: duplicate source code (first mapped at {first[key]})",
                    value=f"{system}|{code}",
                    csv=False,
                )
            )
            continue
        first[key] = label
        entries[key] = found
    if problems:
        raise CohortValidationError(problems)
    return CodeMap(entries, where)


def _csv_rows(text: str, where: str) -> list[tuple[str, str, str, str]]:
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise CohortValidationError(
            [
                Problem(
                    "code_map",
                    missing[0],
                    f"{where}: missing column(s) {missing}: expected {list(CSV_COLUMNS)}",
                    csv=False,
                )
            ]
        )
    return [
        (f"line {n}", r["source_vocabulary_id"] or "", r["source_code"] or "", r["target"] or "")
        for n, r in enumerate(reader, start=2)
    ]


def _concept_map_rows(data: Mapping[str, Any], where: str) -> list[tuple[str, str, str, str]]:
    """(label, system, code, target) of every element of an R4 ConceptMap, validated with fhir.resources."""
    from fhir.resources.R4B.conceptmap import ConceptMap
    from pydantic import ValidationError

    try:
        concept_map = ConceptMap.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        raise CohortValidationError(
            [
                Problem(
                    "code_map",
                    ".".join(str(p) for p in first["loc"]) or "<resource>",
                    f"{where}: not a valid FHIR R4 ConceptMap: {first['msg']}",
                    csv=False,
                )
            ]
        ) from None
    rows = []
    for g, group in enumerate(concept_map.group or []):
        for e, element in enumerate(group.element or []):
            label = f"group[{g}].element[{e}]"
            targets = [t for t in element.target or [] if t.equivalence not in ("unmatched", "disjoint")]
            if len(targets) != 1:
                raise CohortValidationError(
                    [
                        Problem(
                            "code_map",
                            "target",
                            f"{where} {label}: expected one target (the contract name), found {len(targets)}",
                            value=element.code,
                            csv=False,
                        )
                    ]
                )
            rows.append((label, group.source or "", element.code or "", targets[0].code or ""))
    return rows


def load_code_map(path: str | os.PathLike | None) -> CodeMap:
    """A site code map from a CSV (``CSV_COLUMNS``) or a FHIR ConceptMap (.json); None gives the empty map."""
    if path is None:
        return NO_MAP
    file = Path(path)
    try:
        text = read_limited(file, MAX_TABLE_BYTES, "code_map").decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise CohortValidationError(
            [Problem("code_map", "<file>", f"{file.name}: not UTF-8 text ({error})", csv=False)]
        ) from None
    if file.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except ValueError as error:
            raise CohortValidationError(
                [Problem("code_map", "<json>", f"{file.name}: not valid JSON ({error})", csv=False)]
            ) from None
        if not isinstance(data, Mapping) or data.get("resourceType") != "ConceptMap":
            raise CohortValidationError(
                [
                    Problem(
                        "code_map",
                        "resourceType",
                        f"{file.name}: expected a FHIR ConceptMap (or a CSV code map)",
                        csv=False,
                    )
                ]
            )
        return _build(_concept_map_rows(data, file.name), file.name)
    return _build(_csv_rows(text, file.name), file.name)
