"""Names, human-readable labels, units and log-scale flags of every feature the builder can emit.

Explanations, the CLI and the model card read these; analyte features are derived from the analyte
registry, so adding an analyte there adds its features here.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import pandas as pd

from crsrisk.errors import NotFoundError
from crsrisk.schema.analytes import ANALYTES
from crsrisk.schema.tables import DIAGNOSES, PRODUCTS


THEMES = (
    "cytokines",
    "inflammation markers",
    "blood counts and chemistry",
    "fever",
    "course so far",
    "disease burden",
    "product and conditioning",
    "patient",
)
"""What a clinician groups features under (a chart's remainder is summed per theme), in the order they are shown;
an analyte's features take the analyte's theme (``schema.analytes``)."""


@dataclass(frozen=True)
class FeatureInfo:
    """What a feature means: label for people, unit, whether a linear model should take its log, its theme."""

    name: str
    label: str
    unit: str
    log_scale: bool
    source: str  # patient, baseline, window, fever, derived, course
    theme: str  # one of THEMES
    inputs: tuple[str, ...] = ()  # a derived feature's inputs: it has no value while any of them has none

    def __post_init__(self) -> None:
        if self.theme not in THEMES:
            raise ValueError(f"feature {self.name}: theme {self.theme!r} is not one of {THEMES}")


_BURDEN, _PRODUCT, _COURSE = "disease burden", "product and conditioning", "course so far"


def _theme_of(analyte: str) -> str:
    """A derived feature's theme: that of the analyte it is computed from (m-EASIX from LDH, fever from
    temperature)."""
    return ANALYTES[analyte].theme


ONE_HOT = (("product", PRODUCTS), ("diagnosis", DIAGNOSES))  # record fields given to models one column a level


def one_hot_name(field: str, level: str) -> str:
    """The column of one level of a one-hot field: ``product_obecabtagene_autoleucel``, ``diagnosis_b_all``."""
    return f"{field}_{level.lower().replace('-', '_')}"


def _patient() -> list[FeatureInfo]:
    fixed = [
        FeatureInfo("age_years", "age", "years", False, "patient", "patient"),
        FeatureInfo("weight_kg", "weight", "kg", False, "patient", "patient"),
        FeatureInfo("sex_male", "male sex", "1 = yes", False, "patient", "patient"),
        FeatureInfo("marrow_blasts_pct", "marrow blasts before lymphodepletion", "%", False, "patient", _BURDEN),
        FeatureInfo("extramedullary_disease", "extramedullary disease", "1 = yes", False, "patient", _BURDEN),
        FeatureInfo("cns3", "CNS3 status", "1 = yes", False, "patient", _BURDEN),
        FeatureInfo("prior_hsct", "prior stem-cell transplant", "1 = yes", False, "patient", "patient"),
        FeatureInfo("dose_1e6_cells_per_kg", "CAR T-cell dose", "10^6 cells/kg", True, "patient", _PRODUCT),
        FeatureInfo("costim_cd28", "CD28 costimulatory domain", "1 = yes", False, "patient", _PRODUCT),
        FeatureInfo(
            "lymphodepletion_flu_cy",
            "fludarabine/cyclophosphamide lymphodepletion",
            "1 = yes",
            False,
            "patient",
            _PRODUCT,
        ),
    ]
    theme = {"product": _PRODUCT, "diagnosis": _BURDEN}
    fixed += [
        FeatureInfo(
            one_hot_name(field, level), f"{field}: {level.replace('_', ' ')}", "1 = yes", False, "patient", theme[field]
        )
        for field, levels in ONE_HOT
        for level in levels
    ]
    return fixed


def _baseline() -> list[FeatureInfo]:
    return [
        FeatureInfo(f"baseline_{a.name}", f"{a.label} before infusion", a.unit, a.log_scale, "baseline", a.theme)
        for a in ANALYTES.values()
    ]


WINDOW_STATS = ("last", "max", "log_slope", "hours_to_max", "missing")


def _window() -> list[FeatureInfo]:
    out = []
    for a in ANALYTES.values():
        out += [
            FeatureInfo(f"{a.name}_last", f"{a.label}, latest value", a.unit, a.log_scale, "window", a.theme),
            FeatureInfo(f"{a.name}_max", f"{a.label}, highest since infusion", a.unit, a.log_scale, "window", a.theme),
            FeatureInfo(
                f"{a.name}_log_slope",
                f"{a.label}, trend (change of log value per hour)",
                f"log({a.unit})/h",
                False,
                "window",
                a.theme,
            ),
            FeatureInfo(
                f"{a.name}_hours_to_max",
                f"{a.label}, hours from infusion to its highest value",
                "h",
                False,
                "window",
                a.theme,
            ),
            FeatureInfo(
                f"{a.name}_missing", f"{a.label} not measured since infusion", "1 = missing", False, "window", a.theme
            ),
        ]
    return out


def _late() -> list[FeatureInfo]:
    return [
        FeatureInfo(
            "fever_hours",
            "hours with fever >= 38.0 C since infusion",
            "h",
            False,
            "fever",
            _theme_of("temperature"),
            ("temperature_last",),
        ),
        FeatureInfo(
            "fever_first_hours",
            "hours from infusion to first fever >= 38.0 C",
            "h",
            False,
            "fever",
            _theme_of("temperature"),
        ),
        FeatureInfo(
            "m_easix_last",
            "m-EASIX (LDH x CRP / platelets), latest",
            "U/L x mg/dL / 10^9/L",
            True,
            "derived",
            _theme_of("ldh"),
            ("ldh_last", "crp_last", "platelets_last"),
        ),
        FeatureInfo(
            "ferritin_fold_change",
            "ferritin, latest / baseline",
            "ratio",
            True,
            "derived",
            _theme_of("ferritin"),
            ("ferritin_last", "baseline_ferritin"),
        ),
        FeatureInfo(
            "crp_fold_change",
            "CRP, latest / baseline",
            "ratio",
            True,
            "derived",
            _theme_of("crp"),
            ("crp_last", "baseline_crp"),
        ),
        FeatureInfo(
            "il6_sgp130_ratio",
            "IL-6 / sgp130, latest",
            "ratio",
            True,
            "derived",
            _theme_of("il6"),
            ("il6_last", "sgp130_last"),
        ),
        FeatureInfo("crs_grade_current", "CRS grade now", "ASTCT grade", False, "course", _COURSE),
        FeatureInfo("crs_grade_max", "highest CRS grade so far", "ASTCT grade", False, "course", _COURSE),
        FeatureInfo("icans_grade_max", "highest ICANS grade so far", "ASTCT grade", False, "course", _COURSE),
        FeatureInfo("tocilizumab_doses", "tocilizumab doses so far", "doses", False, "course", _COURSE),
        FeatureInfo("corticosteroid_given", "corticosteroids given so far", "1 = yes", False, "course", _COURSE),
        FeatureInfo("hours_since_crs_onset", "hours since CRS onset", "h", False, "course", _COURSE),
        FeatureInfo("landmark_hours", "hours since infusion at prediction", "h", False, "course", _COURSE),
    ]


_EARLY_DERIVED = [
    FeatureInfo(
        "easix_baseline",
        "EASIX (LDH x creatinine / platelets) before infusion",
        "U/L x mg/dL / 10^9/L",
        True,
        "derived",
        _theme_of("ldh"),
        ("baseline_ldh", "baseline_creatinine", "baseline_platelets"),
    ),
    FeatureInfo(
        "m_easix_baseline",
        "m-EASIX (LDH x CRP / platelets) before infusion",
        "U/L x mg/dL / 10^9/L",
        True,
        "derived",
        _theme_of("ldh"),
        ("baseline_ldh", "baseline_crp", "baseline_platelets"),
    ),
]


@lru_cache(maxsize=2)
def feature_specs(window: bool) -> tuple[FeatureInfo, ...]:
    """Every feature, in output order: pre-infusion ones always, post-infusion ones when ``window``."""
    specs = _patient() + _baseline() + _EARLY_DERIVED
    return tuple(specs + _window() + _late()) if window else tuple(specs)


def feature_names(window: bool) -> list[str]:
    """Column names in output order."""
    return [f.name for f in feature_specs(window)]


_ALL = {f.name: f for f in feature_specs(True)}


def feature_info(name: str) -> FeatureInfo:
    """The description of one feature (KeyError names the unknown feature)."""
    try:
        return _ALL[name]
    except KeyError:
        raise NotFoundError(f"unknown feature {name!r}") from None


def log_scale_columns(names: list[str]) -> list[str]:
    """The columns a linear model should log-transform (the analyte spans orders of magnitude)."""
    return [n for n in names if n in _ALL and _ALL[n].log_scale]


def describe_features(frame: pd.DataFrame) -> pd.DataFrame:
    """Name, label, unit and missing fraction of each column of a feature matrix."""
    rows = [(c, feature_info(c).label, feature_info(c).unit, float(frame[c].isna().mean())) for c in frame.columns]
    return pd.DataFrame(rows, columns=["feature", "label", "unit", "missing"])


NONE_YET = ("hours_since_crs_onset", "fever_first_hours")  # NaN means it has not happened (no CRS, no fever) yet
_PRE_INFUSION = frozenset(f.name for f in feature_specs(False))


def absent_by_design(name: str, landmark_hours: float) -> bool:
    """A NaN of this feature at this landmark says nothing is missing: the event has not happened yet
    (``NONE_YET``), or the feature is about the time after infusion and the landmark is not after it."""
    return name in NONE_YET or (landmark_hours <= 0 and name not in _PRE_INFUSION)
