"""The one home of analyte facts: canonical names, units, accepted unit conversions, plausible ranges.

Every other module asks this registry; nothing else spells an analyte name, a unit or a range.
Units and conversions follow the cohort contract in DESIGN.md; ranges are deliberately wide
(physiologically possible, not "normal") so that only impossible values are refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping


@dataclass(frozen=True)
class UnitConversion:
    """Affine map to the canonical unit: canonical = value * scale + offset."""

    scale: float
    offset: float = 0.0

    def apply(self, value):  # works on floats, numpy arrays and pandas Series alike
        """Convert ``value`` (in this unit) to the canonical unit."""
        return value * self.scale + self.offset


SAME = UnitConversion(1.0)


@dataclass(frozen=True)
class Analyte:
    """A measured quantity: its canonical unit, accepted alternatives and plausible range."""

    name: str
    label: str
    unit: str
    low: float
    high: float
    log_scale: bool
    alternatives: Mapping[str, UnitConversion] = field(default_factory=dict)
    loinc: tuple[str, ...] = ()  # LOINC codes read as this analyte by the FHIR and OMOP importers
    ratio_scale: bool = True  # zero means none of it, so a change can be said as a percentage (not so in degC)
    symbol: str = ""  # how people write the unit, where the contract's code differs ("degC" is written "°C")
    theme: str = field(kw_only=True)  # what a clinician groups it under (features.spec.THEMES): its features' theme

    @property
    def shown_unit(self) -> str:
        """The unit as the phrases and the page print it."""
        return self.symbol or self.unit

    @property
    def conversions(self) -> dict[str, UnitConversion]:
        """Every accepted unit (canonical included) with its conversion to canonical."""
        return {self.unit: SAME, **self.alternatives}


_PG_PER_ML = {"ng/L": SAME, "ng/mL": UnitConversion(1000.0)}


def _cytokine(name: str, label: str, high: float = 1e7, loinc: tuple[str, ...] = ()) -> Analyte:
    return Analyte(name, label, "pg/mL", 0.0, high, True, _PG_PER_ML, loinc, theme="cytokines")


_INFLAMMATION, _CHEMISTRY = "inflammation markers", "blood counts and chemistry"  # themes of several analytes

_ALL: tuple[Analyte, ...] = (
    # LOINC codes, all "[Mass/volume] in Serum or Plasma" unless said otherwise. Sources: clinical-facts.md
    # ("to confirm against the official release") for IL-6, CRP, ferritin, LDH, platelets, fibrinogen; the LOINC
    # table (loinc.org) for IL-10 26848-2, creatinine 2160-0 (serum/plasma) and 38483-4 (blood), body
    # temperature 8310-5 and oral temperature 8331-1. An analyte without a code here is read from FHIR/OMOP only
    # under the crsrisk code system (schema/codes.py): add its LOINC code, with the source, when confirmed.
    _cytokine("il6", "IL-6", loinc=("26881-3",)),
    _cytokine("ifng", "IFN-gamma"),
    # Soluble receptors circulate at ~200-300 ng/mL (clinical-facts.md): allow up to 10 ug/mL.
    _cytokine("sgp130", "sgp130", high=1e7),
    _cytokine("sil6r", "sIL-6R", high=1e7),
    _cytokine("il1ra", "IL-1RA"),
    _cytokine("il10", "IL-10", loinc=("26848-2",)),
    _cytokine("mcp1", "MCP-1"),
    _cytokine("il8", "IL-8"),
    _cytokine("il15", "IL-15"),
    _cytokine("tnfa", "TNF-alpha"),
    # HLH-like toxicity reaches peak ferritin ~92,000 ng/mL (CART-PICU, Front Immunol 2023).
    Analyte("ferritin", "ferritin", "ng/mL", 0.0, 1e6, True, {"ug/L": SAME}, ("2276-4",), theme=_INFLAMMATION),
    Analyte("crp", "CRP", "mg/L", 0.0, 1000.0, True, {"mg/dL": UnitConversion(10.0)}, ("1988-5",), theme=_INFLAMMATION),
    Analyte("ldh", "LDH", "U/L", 0.0, 100_000.0, True, {}, ("2532-0",), theme=_CHEMISTRY),
    Analyte("platelets", "platelets", "10^9/L", 0.0, 3000.0, False, {"10^3/uL": SAME}, ("777-3",), theme=_CHEMISTRY),
    Analyte(
        "fibrinogen",
        "fibrinogen",
        "mg/dL",
        0.0,
        3000.0,
        False,
        {"g/L": UnitConversion(100.0)},
        ("3255-7",),
        theme=_CHEMISTRY,
    ),
    Analyte(
        "creatinine",
        "creatinine",
        "mg/dL",
        0.0,
        30.0,
        False,
        {"umol/L": UnitConversion(1 / 88.4)},
        ("2160-0", "38483-4"),
        theme=_CHEMISTRY,
    ),
    Analyte(
        "temperature",
        "temperature",
        "degC",
        25.0,
        45.0,
        False,
        {"degF": UnitConversion(5 / 9, -32 * 5 / 9)},
        ("8310-5", "8331-1"),
        ratio_scale=False,
        symbol="°C",
        theme="fever",
    ),
)

ANALYTES: Mapping[str, Analyte] = MappingProxyType({a.name: a for a in _ALL})
"""Canonical analyte name -> its facts, in contract order."""

FEVER_THRESHOLD_C = 38.0  # ASTCT CRS requires fever >= 38.0 C (Lee et al., BBMT 2019)
