"""Each feature's reason in the words a clinician would use ("IL-6 rose from 40 to 2,400 pg/mL over 12 h",
"ferritin 3.8x its baseline", "febrile since hour 9", "platelets not measured yet", "product: obecabtagene
autoleucel").

The templates sit beside the feature spec: a feature is phrased by what it is (its spec's source and, for the
analyte window statistics, which statistic), with the analyte's label and unit from the analyte registry. A
trend is said as what the patient's values did when the caller gives their ends (``trend_ends``), else as the
fold change its slope implies.
"""

from __future__ import annotations

import math
from typing import Callable, Mapping

from crsrisk.features.build import TrendEnds
from crsrisk.features.spec import WINDOW_STATS, feature_info
from crsrisk.schema.analytes import ANALYTES, Analyte
from crsrisk.schema.tables import DIAGNOSES, PRODUCTS

TREND_HOURS = 12  # without its ends, a log-slope per hour is said as the fold change over this many hours
STEADY = 0.1  # a latest value within this fraction of the first reads as steady (a fold within 1 +- this)


def number(value: float) -> str:
    """A value as a clinician writes it: whole numbers from 100 up (thousands separated), one decimal from 1 (none
    when it is 0), two significant figures below 1."""
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1 or value == 0:
        return f"{value:.1f}".removesuffix(".0")
    return f"{value:.2g}"


def _hours(value: float) -> str:
    return f"{value:.0f}"


def _span(hours: float) -> str:
    """Hours between two values: whole hours, one decimal below an hour (two significant figures where one
    decimal would read 0.0: values minutes apart)."""
    if round(hours) >= 1:
        return f"{hours:.0f}"
    return f"{hours:.1f}" if hours >= 0.05 else number(hours)


def _close(a: Analyte, reference: float, other: float) -> bool:
    """``other`` within ``STEADY`` of ``reference``; on a scale whose zero is not "none" (degC) only when equal,
    since a percentage of it means nothing (37 -> 40 degC is a change of 8 %)."""
    return abs(other - reference) <= (STEADY * reference if a.ratio_scale else 0.0)


def _course(a: Analyte, ends: TrendEnds) -> str:
    """What the values did from the first to the latest: ``IL-6 rose from 40 to 2,400 pg/mL over 12 h``; a peak
    well above both ends is said too (``rose from 40 to a peak of 5,000, now 2,400 pg/mL``)."""
    span = _span(ends.last_hours - ends.first_hours)
    if not _close(a, max(ends.first, ends.last), ends.peak):
        return (
            f"{a.label} rose from {number(ends.first)} to a peak of {number(ends.peak)}, now "
            f"{number(ends.last)} {a.shown_unit}, over {span} h"
        )
    if _close(a, ends.first, ends.last):
        return f"{a.label} about {number(ends.last)} {a.shown_unit}, steady over {span} h"
    moved = "rose" if ends.last > ends.first else "fell"
    return f"{a.label} {moved} from {number(ends.first)} to {number(ends.last)} {a.shown_unit} over {span} h"


def _trend(label: str, slope: float) -> str:
    """The fold change a log-slope implies over ``TREND_HOURS``: the trend said without its ends."""
    if slope * TREND_HOURS > math.log(1e6):  # exp() of a slope this steep overflows: say it in words
        return f"{label} rising more than a million-fold per {TREND_HOURS} h"
    fold = math.exp(slope * TREND_HOURS)
    if 1 - STEADY <= fold <= 1 + STEADY:
        return f"{label} steady over the last values"
    if fold > 1:
        return f"{label} rising about {number(fold)}-fold per {TREND_HOURS} h"
    return f"{label} falling to about {number(fold)}x per {TREND_HOURS} h"


def _window(analyte: str, stat: str, value: float, ends: TrendEnds | None) -> str:
    """One window statistic of one analyte; its trend from ``ends`` when given."""
    a = ANALYTES[analyte]
    if stat == "missing":
        return f"{a.label} not measured yet" if value >= 0.5 else f"{a.label} measured since infusion"
    if math.isnan(value):
        return f"{a.label}: too few values for a trend" if stat == "log_slope" else f"{a.label} not measured yet"
    return {
        "last": lambda: f"{a.label} latest {number(value)} {a.shown_unit}",
        "max": lambda: f"{a.label} highest so far {number(value)} {a.shown_unit}",
        "log_slope": lambda: _trend(a.label, value) if ends is None else _course(a, ends),
        "hours_to_max": lambda: f"{a.label} peaked at hour {_hours(value)}",
    }[stat]()


def _choice(vocabulary: tuple[str, ...], prefix: str, field: str) -> dict[str, Callable[[float], str]]:
    """One-hot columns of a vocabulary said as words: ``product: obecabtagene autoleucel`` / ``product not ...``."""
    return {
        f"{prefix}_{v.lower().replace('-', '_')}": (
            lambda value, v=v: (  # type: ignore[misc]  # mypy cannot type a lambda's bound default
                f"{field}: {v.replace('_', ' ')}" if value >= 0.5 else f"{field} not {v.replace('_', ' ')}"
            )
        )
        for v in vocabulary
    }


def _yes_no(yes: str, no: str) -> Callable[[float], str]:
    return lambda value: yes if value >= 0.5 else no


def _count(none: str, template: str) -> Callable[[float], str]:
    return lambda value: none if value == 0 else template.format(n=number(value))


_FIXED: dict[str, Callable[[float], str]] = {
    "sex_male": _yes_no("male", "female"),
    "extramedullary_disease": _yes_no("extramedullary disease", "no extramedullary disease"),
    "cns3": _yes_no("CNS3 status", "not CNS3"),
    "prior_hsct": _yes_no("prior stem-cell transplant", "no prior stem-cell transplant"),
    "costim_cd28": _yes_no("CD28 costimulatory domain", "4-1BB costimulatory domain"),
    "lymphodepletion_flu_cy": _yes_no(
        "fludarabine/cyclophosphamide lymphodepletion", "lymphodepletion other than fludarabine/cyclophosphamide"
    ),
    "age_years": lambda v: f"age {number(v)} years",
    "fever_first_hours": lambda v: f"febrile since hour {_hours(v)}",
    "fever_hours": _count("no fever so far", "febrile for {n} h so far"),
    "ferritin_fold_change": lambda v: f"ferritin {number(v)}x its baseline",
    "crp_fold_change": lambda v: f"CRP {number(v)}x its baseline",
    "il6_sgp130_ratio": lambda v: f"IL-6/sgp130 ratio {number(v)}",
    "m_easix_last": lambda v: f"m-EASIX {number(v)} now",
    "easix_baseline": lambda v: f"EASIX {number(v)} before infusion",
    "m_easix_baseline": lambda v: f"m-EASIX {number(v)} before infusion",
    "crs_grade_current": _count("no CRS now", "CRS grade {n} now"),
    "crs_grade_max": _count("no CRS so far", "CRS up to grade {n} so far"),
    "icans_grade_max": _count("no ICANS so far", "ICANS up to grade {n} so far"),
    "tocilizumab_doses": _count("no tocilizumab so far", "{n} tocilizumab dose(s) so far"),
    "corticosteroid_given": _yes_no("corticosteroids given", "no corticosteroids so far"),
    "hours_since_crs_onset": lambda v: f"CRS began {_hours(v)} h ago",
    "landmark_hours": lambda v: f"hour {_hours(v)} after infusion",
    **_choice(PRODUCTS, "product", "product"),
    **_choice(DIAGNOSES, "diagnosis", "diagnosis"),
}


def describe_value(name: str, value: float, trends: Mapping[str, TrendEnds] | None = None) -> str:
    """What the patient's value of one feature says, without its effect (e.g. ``febrile since hour 9``);
    ``trends`` (analyte -> ``TrendEnds`` at the same landmark) lets a trend say what the values did."""
    info = feature_info(name)
    for known in WINDOW_STATS:
        head, _, tail = name.rpartition(f"_{known}")
        if not tail and head in ANALYTES:
            return _window(head, known, value, trends.get(head) if trends else None)
    if name in _FIXED and not math.isnan(value):
        return _FIXED[name](value)
    if info.source == "baseline":
        analyte = name.removeprefix("baseline_")
        a = ANALYTES[analyte]
        return (
            f"{a.label} not measured before infusion"
            if math.isnan(value)
            else f"{a.label} before infusion {number(value)} {a.shown_unit}"
        )
    if math.isnan(value):
        return f"{info.label.replace('_', ' ')}: not recorded"
    return f"{info.label} {number(value)} {info.unit}"


def phrase(name: str, value: float, shap: float, trends: Mapping[str, TrendEnds] | None = None) -> str:
    """One reason as a clinician would say it, with its effect: ``ferritin 3.8x its baseline (raised the risk)``
    (``trends`` as for ``describe_value``)."""
    effect = "raised the risk" if shap > 0 else ("lowered the risk" if shap < 0 else "did not change the risk")
    return f"{describe_value(name, value, trends)} ({effect})"
