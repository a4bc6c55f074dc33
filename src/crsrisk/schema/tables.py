"""The cohort contract's three tables: their names, columns, types and allowed values (DESIGN.md)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Mapping

from crsrisk.schema.kinds import CHOICE, NUMBER, TEXT, TRUTH, Kind

TABLES: tuple[str, ...] = ("patients", "measurements", "events")


@dataclass(frozen=True)
class Column:
    """One contract column, its constraints as data: kind, whether it is required, allowed values, numeric range,
    and the default that fills a blank (stated in the cohort's notes, never silent)."""

    name: str
    kind: Kind
    required: bool = False
    choices: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None
    description: str = ""
    default: str | float | None = None
    default_note: str = ""  # what the default means, as the cohort's notes say it

    def in_range(self, number: float) -> bool:
        """True when ``number`` is within the column's range (always, for a column without one)."""
        return self.low is None or self.high is None or self.low <= number <= self.high

    def outside(self, numbers: Any) -> Any:
        """The vectorised ``in_range``: True where a number (array or Series; NaN never) is out of range."""
        if self.low is None or self.high is None:
            return numbers < -math.inf
        return (numbers < self.low) | (numbers > self.high)


DIAGNOSES = ("B-ALL", "LBCL", "MCL", "FL", "MM", "other")
PRODUCTS = (
    "tisagenlecleucel",
    "brexucabtagene_autoleucel",
    "obecabtagene_autoleucel",
    "axicabtagene_ciloleucel",
    "lisocabtagene_maraleucel",
    "other",
)
COSTIM_DOMAINS = ("4-1BB", "CD28")
# Costimulatory domain of each licensed product (product labels): used where costim_domain is blank.
PRODUCT_COSTIM: Mapping[str, str] = MappingProxyType(
    {
        "tisagenlecleucel": "4-1BB",
        "obecabtagene_autoleucel": "4-1BB",
        "lisocabtagene_maraleucel": "4-1BB",
        "brexucabtagene_autoleucel": "CD28",
        "axicabtagene_ciloleucel": "CD28",
    }
)
SEXES = ("F", "M")
CNS_STATUSES = ("CNS1", "CNS2", "CNS3")
LYMPHODEPLETIONS = ("flu_cy", "other", "none")

DEFAULT_DIAGNOSIS = "B-ALL"
DEFAULT_FOLLOWUP_HOURS = 28 * 24.0  # "complete to day 28" when followup_hours is blank (DESIGN.md)
BASELINE_WINDOW_HOURS = 7 * 24.0  # baseline = last value in the 7 days before infusion (DESIGN.md)

PATIENT_COLUMNS: tuple[Column, ...] = (
    Column("patient_id", TEXT, required=True, description="one row per infusion; unique"),
    Column("center", TEXT, description="treating centre; grouped validation and subgroup audits"),
    Column("age_years", NUMBER, required=True, low=0, high=100, description="age at infusion"),
    Column("sex", CHOICE, choices=SEXES),
    Column("weight_kg", NUMBER, low=0.5, high=300),
    Column(
        "diagnosis",
        CHOICE,
        choices=DIAGNOSES,
        description=f"default {DEFAULT_DIAGNOSIS}",
        default=DEFAULT_DIAGNOSIS,
        default_note=f"taken as {DEFAULT_DIAGNOSIS}",
    ),
    Column("marrow_blasts_pct", NUMBER, low=0, high=100, description="last value before lymphodepletion"),
    Column("extramedullary_disease", TRUTH),
    Column("cns_status", CHOICE, choices=CNS_STATUSES),
    Column("prior_hsct", TRUTH),
    Column("product", CHOICE, choices=PRODUCTS),
    Column("costim_domain", CHOICE, choices=COSTIM_DOMAINS, description="required when product is other"),
    Column("dose_1e6_cells_per_kg", NUMBER, low=0, high=1000, description="CAR+ viable T cells, 10^6/kg"),
    Column("lymphodepletion", CHOICE, choices=LYMPHODEPLETIONS),
    Column(
        "followup_hours",
        NUMBER,
        low=0,
        high=100_000,
        description="hours observed after infusion",
        default=DEFAULT_FOLLOWUP_HOURS,
        default_note=f"taken as complete to day 28 ({DEFAULT_FOLLOWUP_HOURS:g} h)",
    ),
)

MEASUREMENT_COLUMNS: tuple[Column, ...] = (
    Column("patient_id", TEXT, required=True),
    Column(
        "hours_since_infusion",
        NUMBER,
        required=True,
        low=-24 * 365,
        high=100_000,
        description="negative = before infusion",
    ),
    Column("analyte", TEXT, required=True, description="canonical analyte name"),
    Column("value", NUMBER, required=True),
    Column("unit", TEXT, required=True),
)

GRADE_EVENTS = ("crs_grade", "icans_grade")
DRUG_EVENTS = ("tocilizumab", "siltuximab", "anakinra", "corticosteroid")
EVENT_KINDS = GRADE_EVENTS + DRUG_EVENTS

EVENT_COLUMNS: tuple[Column, ...] = (
    Column("patient_id", TEXT, required=True),
    Column("hours_since_infusion", NUMBER, required=True, low=-24 * 365, high=100_000),
    Column("event", CHOICE, required=True, choices=EVENT_KINDS),
    Column("value", NUMBER, description="grade 0-4 for *_grade events; dose for drugs"),
)

DEFAULTED: tuple[Column, ...] = tuple(c for c in PATIENT_COLUMNS if c.default is not None)

COLUMNS: Mapping[str, tuple[Column, ...]] = MappingProxyType(
    {"patients": PATIENT_COLUMNS, "measurements": MEASUREMENT_COLUMNS, "events": EVENT_COLUMNS}
)

GRADE_RANGE = (0, 4)  # ASTCT CRS and ICANS grades (Lee et al., BBMT 2019)
MAX_DRUG_DOSE = 100_000.0  # mg; anything above is a data-entry error, not a dose
