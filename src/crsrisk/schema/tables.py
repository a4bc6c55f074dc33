"""The cohort contract's three tables: their names, columns, types and allowed values (DESIGN.md)."""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal, Mapping

TABLES: tuple[str, ...] = ("patients", "measurements", "events")

ColumnKind = Literal["string", "float", "bool", "category"]


@dataclass(frozen=True)
class Column:
    """One contract column: type, whether it is required, allowed values or numeric range."""

    name: str
    kind: ColumnKind
    required: bool = False
    choices: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None
    description: str = ""


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
    Column("patient_id", "string", required=True, description="one row per infusion; unique"),
    Column("center", "string", description="treating centre; grouped validation and subgroup audits"),
    Column("age_years", "float", required=True, low=0, high=100, description="age at infusion"),
    Column("sex", "category", choices=SEXES),
    Column("weight_kg", "float", low=0.5, high=300),
    Column("diagnosis", "category", choices=DIAGNOSES, description=f"default {DEFAULT_DIAGNOSIS}"),
    Column("marrow_blasts_pct", "float", low=0, high=100, description="last value before lymphodepletion"),
    Column("extramedullary_disease", "bool"),
    Column("cns_status", "category", choices=CNS_STATUSES),
    Column("prior_hsct", "bool"),
    Column("product", "category", choices=PRODUCTS),
    Column("costim_domain", "category", choices=COSTIM_DOMAINS, description="required when product is other"),
    Column("dose_1e6_cells_per_kg", "float", low=0, high=1000, description="CAR+ viable T cells, 10^6/kg"),
    Column("lymphodepletion", "category", choices=LYMPHODEPLETIONS),
    Column("followup_hours", "float", low=0, high=100_000, description="hours observed after infusion"),
)

MEASUREMENT_COLUMNS: tuple[Column, ...] = (
    Column("patient_id", "string", required=True),
    Column("hours_since_infusion", "float", required=True, low=-24 * 365, high=100_000,
           description="negative = before infusion"),
    Column("analyte", "string", required=True, description="canonical analyte name"),
    Column("value", "float", required=True),
    Column("unit", "string", required=True),
)

GRADE_EVENTS = ("crs_grade", "icans_grade")
DRUG_EVENTS = ("tocilizumab", "siltuximab", "anakinra", "corticosteroid")
EVENT_KINDS = GRADE_EVENTS + DRUG_EVENTS

EVENT_COLUMNS: tuple[Column, ...] = (
    Column("patient_id", "string", required=True),
    Column("hours_since_infusion", "float", required=True, low=-24 * 365, high=100_000),
    Column("event", "category", required=True, choices=EVENT_KINDS),
    Column("value", "float", description="grade 0-4 for *_grade events; dose for drugs"),
)

COLUMNS: Mapping[str, tuple[Column, ...]] = MappingProxyType(
    {"patients": PATIENT_COLUMNS, "measurements": MEASUREMENT_COLUMNS, "events": EVENT_COLUMNS}
)

GRADE_RANGE = (0, 4)  # ASTCT CRS and ICANS grades (Lee et al., BBMT 2019)
MAX_DRUG_DOSE = 100_000.0  # mg; anything above is a data-entry error, not a dose
