"""Every code the FHIR and OMOP importers read, and what each one means in the cohort contract.

One registry for both importers: a FHIR coding (system URI, code) and an OMOP concept (vocabulary_id,
concept_code) name the same code system here. Lab codes live with their analyte in ``schema/analytes.py``;
this module adds drugs, diagnoses, the CAR-T infusion, the patient fields and the CRS/ICANS grades.

No standard code exists for an ASTCT CRS or ICANS grade (LOINC has none), nor for several contract fields, so
crsrisk defines its own code system, ``PROJECT_SYSTEM`` (OMOP vocabulary_id ``crsrisk``): there the code is
the contract's own name: ``crs_grade``, ``icans_grade``, every analyte (``il6``), every patient column
(``marrow_blasts_pct``), every product (``tisagenlecleucel``), every diagnosis (``B-ALL``), ``car_t_infusion``.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal, Mapping

from crsrisk.schema.analytes import ANALYTES
from crsrisk.schema.tables import DIAGNOSES, DRUG_EVENTS, GRADE_EVENTS, PATIENT_COLUMNS, PRODUCTS

PROJECT_SYSTEM = "https://crsrisk.example/fhir/CodeSystem/crsrisk"
INFUSION_CODE = "car_t_infusion"


@dataclass(frozen=True)
class CodeSystem:
    """A terminology as FHIR names it (URIs) and as OMOP names it (vocabulary ids)."""

    key: str
    uris: tuple[str, ...]
    vocabularies: tuple[str, ...]


# FHIR URIs from the FHIR R4 terminology page (hl7.org/fhir/R4/terminologies-systems.html); OMOP vocabulary ids
# from the OHDSI standardized vocabularies (athena.ohdsi.org).
SYSTEMS: tuple[CodeSystem, ...] = (
    CodeSystem("loinc", ("http://loinc.org",), ("LOINC",)),
    CodeSystem("ucum", ("http://unitsofmeasure.org",), ("UCUM",)),
    CodeSystem("rxnorm", ("http://www.nlm.nih.gov/research/umls/rxnorm",), ("RxNorm", "RxNorm Extension")),
    CodeSystem("atc", ("http://www.whocc.no/atc",), ("ATC",)),
    CodeSystem("icd10", ("http://hl7.org/fhir/sid/icd-10", "http://hl7.org/fhir/sid/icd-10-cm"), ("ICD10", "ICD10CM")),
    CodeSystem("cpt", ("http://www.ama-assn.org/go/cpt",), ("CPT4",)),
    CodeSystem("icd10pcs", ("http://www.cms.gov/Medicare/Coding/ICD10",), ("ICD10PCS",)),
    CodeSystem("snomed", ("http://snomed.info/sct",), ("SNOMED",)),
    CodeSystem("crsrisk", (PROJECT_SYSTEM,), ("crsrisk",)),
)
_SYSTEM_KEYS = {name: s.key for s in SYSTEMS for name in (*s.uris, *s.vocabularies)}


def system_key(name: str | None) -> str | None:
    """The registry's key (``loinc``, ``rxnorm``, ...) for a FHIR system URI or an OMOP vocabulary id."""
    return _SYSTEM_KEYS.get((name or "").strip().rstrip("/"))


Kind = Literal["measurement", "event", "patient", "diagnosis", "infusion", "product"]


@dataclass(frozen=True)
class Meaning:
    """What a code stands for: an analyte, an event kind, a patient column, a diagnosis, a product, the infusion."""

    kind: Kind
    name: str


# Drugs by RxNorm ingredient (RxNav, rxnav.nlm.nih.gov; to confirm against the current release) and by ATC
# (WHO ATC/DDD index, whocc.no). ATC codes ending in a group (H02AB, systemic glucocorticoids) match every code
# below it; RxNorm clinical drugs are matched through their ingredient (OMOP: concept_ancestor).
DRUG_CODES: Mapping[str, Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "tocilizumab": {"rxnorm": ("612865",), "atc": ("L04AC07",)},
        "siltuximab": {"rxnorm": ("1535218",), "atc": ("L04AC11",)},
        "anakinra": {"rxnorm": ("72435",), "atc": ("L04AC03",)},
        # dexamethasone, methylprednisolone, prednisone, prednisolone, hydrocortisone
        "corticosteroid": {"rxnorm": ("3264", "6902", "8640", "8638", "5492"), "atc": ("H02AB",)},
    }
)
ATC_GROUPS = ("H02AB",)

# Diagnoses by ICD-10 category prefix (WHO ICD-10 2019; ICD-10-CM codes extend them). C91.0 (acute lymphoblastic
# leukaemia) does not separate B from T lineage; CD19 CAR T cells are given for B-ALL, so it is read as B-ALL.
DIAGNOSIS_ICD10: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "B-ALL": ("C910",),
        "LBCL": ("C833", "C852"),
        "MCL": ("C831",),
        "FL": ("C82",),
        "MM": ("C900",),
    }
)

# Product names as they appear in text (generic and US brand names, from the product labels).
PRODUCT_NAMES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "tisagenlecleucel": ("tisagenlecleucel", "kymriah"),
        "brexucabtagene_autoleucel": ("brexucabtagene autoleucel", "tecartus"),
        "obecabtagene_autoleucel": ("obecabtagene autoleucel", "aucatzyl"),
        "axicabtagene_ciloleucel": ("axicabtagene ciloleucel", "yescarta"),
        "lisocabtagene_maraleucel": ("lisocabtagene maraleucel", "breyanzi"),
    }
)


@dataclass(frozen=True)
class InfusionCode:
    """A standard code of the CAR-T infusion; ``product`` when the code names one (it then sets the product)."""

    system: str
    code: str
    product: str | None
    source: str
    confirmed: bool = True


_CPT = "AMA CPT 2025 (38225-38228 section); codingahead.com/cpt/codes/0540T for the Category III predecessor"
_FCSO = "First Coast (Medicare MAC) CAR T-cell billing table, medicare.fcso.com/Oncology/0489859.asp"
# The CAR-T infusion by its billing codes. CPT 38228 "CAR-T cell administration, autologous" replaced the
# Category III code 0540T (same wording) in 2023. ICD-10-PCS: XW033C3/XW043C3 (engineered autologous CAR T-cell
# immunotherapy, peripheral/central vein, before October 2021) and the product-specific new-technology codes
# since. Idecabtagene vicleucel (XW033K7/XW043K7) and ciltacabtagene autoleucel (XW033A7/XW043A7) are not
# contract products: they place the infusion and leave the product blank. No SNOMED CT concept for the CAR-T
# infusion could be confirmed here, so none is registered (a site maps its own through ``--code-map``).
INFUSION_CODES: tuple[InfusionCode, ...] = (
    InfusionCode("cpt", "38228", None, _CPT),
    InfusionCode("cpt", "0540T", None, _CPT),
    InfusionCode("icd10pcs", "XW033C3", None, _FCSO),
    InfusionCode("icd10pcs", "XW043C3", None, _FCSO),
    InfusionCode("icd10pcs", "XW033J7", "tisagenlecleucel", _FCSO),
    InfusionCode("icd10pcs", "XW043J7", "tisagenlecleucel", _FCSO),
    InfusionCode("icd10pcs", "XW033H7", "axicabtagene_ciloleucel", _FCSO),
    InfusionCode("icd10pcs", "XW043H7", "axicabtagene_ciloleucel", _FCSO),
    InfusionCode("icd10pcs", "XW033M7", "brexucabtagene_autoleucel", _FCSO),
    InfusionCode("icd10pcs", "XW043M7", "brexucabtagene_autoleucel", _FCSO),
    InfusionCode("icd10pcs", "XW23346", "brexucabtagene_autoleucel", _FCSO),
    InfusionCode("icd10pcs", "XW24346", "brexucabtagene_autoleucel", _FCSO),
    InfusionCode("icd10pcs", "XW23376", "lisocabtagene_maraleucel", _FCSO),
    InfusionCode("icd10pcs", "XW24376", "lisocabtagene_maraleucel", _FCSO),
    InfusionCode("icd10pcs", "XW033K7", None, _FCSO),
    InfusionCode("icd10pcs", "XW043K7", None, _FCSO),
    InfusionCode("icd10pcs", "XW033A7", None, _FCSO),
    InfusionCode("icd10pcs", "XW043A7", None, _FCSO),
    # Generic autologous CAR T-cell codes of FY2023 on; seen in public MIMIC-IV queries, not in a CMS table here.
    InfusionCode("icd10pcs", "XW033C7", None, "public MIMIC-IV cohort queries", confirmed=False),
    InfusionCode("icd10pcs", "XW043C7", None, "public MIMIC-IV cohort queries", confirmed=False),
    # RxNorm ingredient of lisocabtagene maraleucel, as used by public claims-cohort code; the other products are
    # read by name (``PRODUCT_NAMES``) until their RxNorm codes are confirmed.
    InfusionCode(
        "rxnorm",
        "2479140",
        "lisocabtagene_maraleucel",
        "public cohort code (RxNav not reachable here)",
        confirmed=False,
    ),
)

# Patient columns given as Observations: LOINC 29463-7 is body weight (LOINC table); the rest are crsrisk codes.
PATIENT_LOINC: Mapping[str, str] = MappingProxyType({"29463-7": "weight_kg"})
# UCUM unit each numeric patient field must carry (a value in another unit is refused, not converted).
PATIENT_UNITS: Mapping[str, str] = MappingProxyType(
    {
        "age_years": "a",
        "weight_kg": "kg",
        "marrow_blasts_pct": "%",
        "dose_1e6_cells_per_kg": "10*6/kg",
        "followup_hours": "h",
    }
)
PATIENT_OBSERVED = tuple(
    c.name for c in PATIENT_COLUMNS if c.name not in ("patient_id", "sex", "center", "diagnosis", "product")
)


def _registry() -> dict[tuple[str, str], tuple[Meaning, ...]]:
    pairs: list[tuple[tuple[str, str], Meaning]] = []
    for name, analyte in ANALYTES.items():
        pairs += [(("crsrisk", name), Meaning("measurement", name))]
        pairs += [(("loinc", code), Meaning("measurement", name)) for code in analyte.loinc]
    pairs += [(("crsrisk", event), Meaning("event", event)) for event in GRADE_EVENTS + DRUG_EVENTS]
    pairs += [
        ((system, code), Meaning("event", event))
        for event, systems in DRUG_CODES.items()
        for system, codes in systems.items()
        for code in codes
    ]
    pairs += [(("crsrisk", column), Meaning("patient", column)) for column in PATIENT_OBSERVED]
    pairs += [(("loinc", code), Meaning("patient", column)) for code, column in PATIENT_LOINC.items()]
    pairs += [(("crsrisk", diagnosis), Meaning("diagnosis", diagnosis)) for diagnosis in DIAGNOSES]
    pairs += [(("crsrisk", product), Meaning("product", product)) for product in PRODUCTS]
    pairs += [(("crsrisk", INFUSION_CODE), Meaning("infusion", INFUSION_CODE))]
    pairs += [((c.system, c.code), Meaning("infusion", INFUSION_CODE)) for c in INFUSION_CODES]
    pairs += [((c.system, c.code), Meaning("product", c.product)) for c in INFUSION_CODES if c.product]
    table: dict[tuple[str, str], tuple[Meaning, ...]] = {}
    for key, found in pairs:
        table[key] = table.get(key, ()) + (found,)
    return table


CODES: Mapping[tuple[str, str], tuple[Meaning, ...]] = MappingProxyType(_registry())
"""(system key, code) -> its meanings (``other`` is both a diagnosis and a product: the resource decides)."""


def meanings(target: str) -> tuple[Meaning, ...]:
    """Every meaning of a contract name (``il6``, ``car_t_infusion``, ``tocilizumab``, ``crs_grade``, ...)."""
    return CODES.get(("crsrisk", target.strip()), ())


def meaning(system: str | None, code: str | None, kinds: tuple[Kind, ...] | None = None) -> Meaning | None:
    """What the code means in the contract (system as a FHIR URI or OMOP vocabulary id), restricted to
    ``kinds`` when given, or None if unknown."""
    key, text = system_key(system), (code or "").strip()
    if key is None or not text:
        return None
    found = CODES.get((key, text), ()) or CODES.get((key, text.upper()), ())
    if not found and key == "atc":
        group = next((g for g in ATC_GROUPS if text.upper().startswith(g)), None)
        found = CODES.get(("atc", group), ()) if group else ()
    if not found and key == "icd10":
        bare = text.upper().replace(".", "")
        found = tuple(
            Meaning("diagnosis", d)
            for d, prefixes in DIAGNOSIS_ICD10.items()
            if any(bare.startswith(p) for p in prefixes)
        )
    return next((m for m in found if kinds is None or m.kind in kinds), None)


def product_in_text(text: str | None) -> str | None:
    """The contract product a free text names (its contract name, or a generic or brand name in any case)."""
    if (text or "").strip() in PRODUCTS:
        return (text or "").strip()
    words = (text or "").lower().replace("_", " ").replace("-", " ")
    return next((product for product, names in PRODUCT_NAMES.items() if any(n in words for n in names)), None)


def code_for(kind: Kind, name: str, system: str = "loinc") -> str | None:
    """The first code of ``system`` registered for a meaning (exporters and tests write with it)."""
    return next((code for (key, code), found in CODES.items() if key == system and Meaning(kind, name) in found), None)


# Administrative gender -> contract sex: FHIR AdministrativeGender (hl7.org/fhir/R4/valueset-administrative-gender)
# and the OMOP Gender vocabulary's standard concepts 8507 (MALE) and 8532 (FEMALE). Other values leave sex blank.
FHIR_GENDER: Mapping[str, str] = MappingProxyType({"male": "M", "female": "F"})
OMOP_GENDER: Mapping[int, str] = MappingProxyType({8507: "M", 8532: "F"})
