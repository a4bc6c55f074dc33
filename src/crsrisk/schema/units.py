"""UCUM spellings of the contract's units, and the one place where a unit as written is matched to them.

The contract spells units for people (``10^9/L``, ``degC``); FHIR and OMOP carry UCUM codes (``10*9/L``,
``Cel``). Matching follows UCUM's own rules (https://ucum.org/ucum, sections 2.1-2.4) rather than a blanket
case-fold: in case-sensitive UCUM the litre may be written ``l`` or ``L`` (so ``pg/ml`` is ``pg/mL``) and the
micro sign is ``u``; a unit written entirely in capitals is read as UCUM's case-insensitive form (``PG/ML``).
Mixed spellings UCUM does not define (``Pg/mL``, ``MG/dl``) match nothing: a megagram is not a milligram.
"""

from __future__ import annotations

import re
from types import MappingProxyType
from typing import Mapping, NamedTuple

from crsrisk.schema.analytes import ANALYTES

# Contract unit -> its UCUM code (unitsofmeasure.org; [degF] and Cel from UCUM table 15, 10*9 from section 2.3).
UCUM: Mapping[str, str] = MappingProxyType(
    {
        "pg/mL": "pg/mL",
        "ng/L": "ng/L",
        "ng/mL": "ng/mL",
        "ug/L": "ug/L",
        "mg/L": "mg/L",
        "mg/dL": "mg/dL",
        "U/L": "U/L",
        "10^9/L": "10*9/L",
        "10^3/uL": "10*3/uL",
        "g/L": "g/L",
        "umol/L": "umol/L",
        "degC": "Cel",
        "degF": "[degF]",
    }
)


class AcceptedUnit(NamedTuple):
    """One accepted (analyte, unit) pair: the conversion to canonical (value * scale + offset, as
    ``UnitConversion.apply``) and the analyte's canonical unit and plausible range."""

    analyte: str
    unit: str
    scale: float
    offset: float
    canonical: str
    low: float
    high: float


ACCEPTED_UNITS: tuple[AcceptedUnit, ...] = tuple(
    AcceptedUnit(name, unit, c.scale, c.offset, a.unit, a.low, a.high)
    for name, a in ANALYTES.items()
    for unit, c in a.conversions.items()
)
"""Every unit conversion the contract accepts, in registry order: the table validator and the record fast path
both convert and range-check through this one table."""

_LITRE = re.compile(r"(?<![A-Za-z\[])([munpfdc]?)l(?![A-Za-z\]])")  # a litre atom with an optional prefix


def _case_sensitive_key(text: str) -> str:
    """A written unit in one UCUM case-sensitive spelling: micro as ``u``, the litre as ``L``, no blanks."""
    text = re.sub(r"\s+", "", text).replace("\u00b5", "u").replace("\u03bc", "u")
    return _LITRE.sub(lambda m: f"{m.group(1)}L", text)


def _spellings(unit: str) -> set[str | tuple[str, str]]:
    """Every key under which a contract unit is recognised: its own name and its UCUM code, both forms."""
    codes = {unit, UCUM.get(unit, unit)}
    return {_case_sensitive_key(c) for c in codes} | {("CI", c.upper()) for c in codes}


def match_unit(analyte: str, written: str | None) -> str | None:
    """The contract unit of ``analyte`` that ``written`` denotes under UCUM's rules, or None when none does."""
    if written is None or analyte not in ANALYTES:
        return None
    text = written.strip()
    if not text:
        return None
    key: object = (
        ("CI", re.sub(r"\s+", "", text)) if not any(ch.islower() for ch in text) else _case_sensitive_key(text)
    )
    for unit in ANALYTES[analyte].conversions:
        if key in _spellings(unit):
            return unit
    return None


DOSE_UNIT = "mg"  # the contract's unit of a drug dose (events.value of a drug event)
# UCUM mass units -> factor to mg; a dose per kg of body weight is multiplied by the patient's weight_kg.
_DOSE_FACTORS: Mapping[str, float] = MappingProxyType({"mg": 1.0, "g": 1000.0, "ug": 0.001, "mcg": 0.001})


def dose_to_mg(written: str | None) -> tuple[float, bool] | None:
    """(factor to mg, per kg of body weight) for a dose unit as written (UCUM: ``mg``, ``g``, ``ug``, ``mg/kg``),
    or None when it is no mass (or mass per kg) unit the contract can convert."""
    text = re.sub(r"\s+", "", written or "").replace("\u00b5", "u").replace("\u03bc", "u").lower()
    per_kg = text.endswith("/kg")
    factor = _DOSE_FACTORS.get(text[:-3] if per_kg else text)
    return None if factor is None else (factor, per_kg)
