"""Each feature's reason in the words a clinician would use ("IL-6 rose from 40 to 2,400 pg/mL over 12 h",
"ferritin 3.8x its baseline", "febrile since hour 9", "platelets not measured yet", "product axicabtagene
ciloleucel, not obecabtagene autoleucel").

The templates sit beside the feature spec: a feature is phrased by what it is (its spec's source and, for the
analyte window statistics, which statistic), with the analyte's label and unit from the analyte registry. A
trend is said as what the patient's values did when the caller gives their ends (``trend_ends``), else as the
fold change its slope implies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping

from crsrisk.features.build import TrendEnds
from crsrisk.features.spec import NONE_YET, ONE_HOT, WINDOW_STATS, feature_info, one_hot_name
from crsrisk.schema.analytes import ANALYTES, Analyte

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


def log_odds(value: float) -> str:
    """A SHAP value (a change of log-odds) signed to three decimals; one that would print as ``-0.000`` or ``+0.000``
    is said as ``-<0.001`` / ``+<0.001``, as the reasons chart says ``+<0.1 pts``."""
    if value == 0 or abs(value) >= 0.0005:
        return f"{value:+.3f}"
    return ("+" if value > 0 else "-") + "<0.001"


def _hours(value: float) -> str:
    return f"{value:.0f}"


@dataclass(frozen=True)
class Clock:
    """When a prediction is made (``now``) and the landmark its model reads the record at, named in words
    (``the first tocilizumab dose``, ``hour 36``), so that times are said relative to now."""

    now: float
    landmark: float
    landmark_name: str

    def ago(self, hours: float) -> str:
        """``hours`` (since infusion) said from now: ``9 h ago``."""
        return f"{_hours(self.now - hours)} h ago"


def _since_onset(before_landmark: float, clock: Clock | None) -> str:
    """CRS onset said from now, and from the landmark when the model reads the record at an earlier hour:
    ``CRS began 28 h ago, 9 h before the first tocilizumab dose``."""
    if clock is None or clock.landmark >= clock.now:
        return f"CRS began {_hours(before_landmark)} h ago"
    return (
        f"CRS began {clock.ago(clock.landmark - before_landmark)}, {_hours(before_landmark)} h before "
        f"{clock.landmark_name}"
    )


def _as_of_landmark(text: str, clock: Clock | None) -> str:
    """A phrase about the record as its model reads it, said so when that is before now: ``so far`` and ``yet``
    become ``by the first tocilizumab dose``, a closing ``now`` becomes ``at the first tocilizumab dose``."""
    if clock is None or clock.landmark >= clock.now:
        return text
    text = text.replace(" so far", f" by {clock.landmark_name}").replace(" yet", f" by {clock.landmark_name}")
    return text.removesuffix(" now") + f" at {clock.landmark_name}" if text.endswith(" now") else text


def _at_hour(text: str, hours: float, clock: Clock | None) -> str:
    """``text`` naming an hour since infusion, with how long ago that was when the clock is known."""
    return text if clock is None else f"{text} ({clock.ago(hours)})"


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


def _no_trend(a: Analyte, row: Mapping[str, float] | None) -> str:
    """Why an analyte has no trend, when the patient's ``row`` says: one value so far, or none; else only that
    there is none."""
    last = None if row is None else row.get(f"{a.name}_last")
    if last is None:
        return f"no {a.label} trend yet"
    why = "not measured since infusion" if math.isnan(last) else "one value since infusion"
    return f"no {a.label} trend yet: {why}"


def _window(
    analyte: str, stat: str, value: float, ends: TrendEnds | None, clock: Clock | None, row: Mapping[str, float] | None
) -> str:
    """One window statistic of one analyte; its trend from ``ends`` when given, and why there is none from the
    patient's ``row``."""
    a = ANALYTES[analyte]
    if stat == "missing":
        return f"{a.label} not measured yet" if value >= 0.5 else f"{a.label} measured since infusion"
    if math.isnan(value):
        return _no_trend(a, row) if stat == "log_slope" else f"{a.label} not measured yet"
    return {
        "last": lambda: f"{a.label} latest {number(value)} {a.shown_unit}",
        "max": lambda: f"{a.label} highest so far {number(value)} {a.shown_unit}",
        "log_slope": lambda: _trend(a.label, value) if ends is None else _course(a, ends),
        "hours_to_max": lambda: _at_hour(f"{a.label} peaked at hour {_hours(value)}", value, clock),
    }[stat]()


_LEVEL_OF = {one_hot_name(field, level): (field, level) for field, levels in ONE_HOT for level in levels}


def is_one_hot(name: str) -> bool:
    """The feature is one level of a one-hot record field (``product_tisagenlecleucel``)."""
    return name in _LEVEL_OF


def _level(name: str, value: float, row: Mapping[str, float] | None) -> str:
    """A one-hot column said as what the patient has: ``product obecabtagene autoleucel`` when it is set, else the
    level the patient's ``row`` sets beside the one it is not (``product axicabtagene ciloleucel, not obecabtagene
    autoleucel``), or only what it is not when no row is given or no level is set; the level ``other`` said as
    ``another product``."""
    field, level = _LEVEL_OF[name]

    def said(v: str) -> str:
        return f"another {field}" if v == "other" else f"{field} {v.replace('_', ' ')}"

    if value >= 0.5:
        return said(level)
    levels = dict(ONE_HOT)[field]
    chosen = next((v for v in levels if row is not None and row.get(one_hot_name(field, v), 0.0) >= 0.5), None)
    shown = level.replace("_", " ")
    return f"{field} not {shown}" if chosen is None else f"{said(chosen)}, not {shown}"


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
    "landmark_hours": lambda v: f"hour {_hours(v)} after infusion",
}


_NONE_YET_WORDS = {"hours_since_crs_onset": "no CRS so far", "fever_first_hours": "no fever so far"}  # NONE_YET


def absent_words(name: str) -> str:
    """What a missing value of ``name`` means: an event not yet happened (``no CRS so far``, ``NONE_YET``), else
    ``not measured``; the one wording of a missing value for every chart and table."""
    return _NONE_YET_WORDS.get(name, "not measured")


def describe_value(
    name: str,
    value: float,
    trends: Mapping[str, TrendEnds] | None = None,
    clock: Clock | None = None,
    row: Mapping[str, float] | None = None,
) -> str:
    """What the patient's value of one feature says, without its effect (e.g. ``febrile since hour 9``);
    ``trends`` (analyte -> ``TrendEnds`` at the same landmark) lets a trend say what the values did, ``clock``
    says times from now (``CRS began 28 h ago, 9 h before the first tocilizumab dose``) and what was known at an
    earlier landmark as such (``no fibrinogen trend by the first tocilizumab dose``), and ``row`` (the patient's
    features by name) lets a one-hot column name what the patient has rather than only what they have not."""
    if name in _LEVEL_OF:
        return _level(name, value, row)
    return _as_of_landmark(_described(name, value, trends, clock, row), clock)


def _described(
    name: str,
    value: float,
    trends: Mapping[str, TrendEnds] | None,
    clock: Clock | None,
    row: Mapping[str, float] | None,
) -> str:
    info = feature_info(name)
    for known in WINDOW_STATS:
        head, _, tail = name.rpartition(f"_{known}")
        if not tail and head in ANALYTES:
            return _window(head, known, value, trends.get(head) if trends else None, clock, row)
    if name in _NONE_YET_WORDS and math.isnan(value):
        return _NONE_YET_WORDS[name]
    if name == "hours_since_crs_onset":
        return _since_onset(value, clock)
    if name == "fever_first_hours":
        return _at_hour(f"febrile since hour {_hours(value)}", value, clock)
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


_COMPUTED = {  # a derived feature named in a list of what could not be computed
    "easix_baseline": "EASIX before infusion",
    "m_easix_baseline": "m-EASIX before infusion",
    "m_easix_last": "m-EASIX",
    "ferritin_fold_change": "ferritin fold change",
    "crp_fold_change": "CRP fold change",
    "il6_sgp130_ratio": "IL-6/sgp130 ratio",
    "fever_hours": "hours of fever",
}
_RECORD_FIELDS = {  # a patient feature named by the record field it comes from
    "sex_male": "sex",
    "cns3": "CNS status",
    "costim_cd28": "costimulatory domain",
    "lymphodepletion_flu_cy": "lymphodepletion",
}
_BEFORE, _SINCE, _ONE, _COMPUTABLE, _RECORDED = range(5)  # the groups, in the order they are listed


def _analyte_of(name: str) -> tuple[str, str]:
    """The analyte a baseline or window feature is about and which statistic (``baseline`` for a baseline)."""
    if name.startswith("baseline_"):
        return name.removeprefix("baseline_"), "baseline"
    for stat in WINDOW_STATS:
        head, _, tail = name.rpartition(f"_{stat}")
        if not tail and head in ANALYTES:
            return head, stat
    raise KeyError(name)


def _missing_item(name: str, missing: set[str]) -> tuple[int, str]:
    """The group a missing input is listed in and its words there: the analyte's label for a measurement (its
    highest value, latest value and trend are one thing missing), the inputs a derived value lacks, the record
    field a patient feature comes from."""
    info = feature_info(name)
    if info.source == "baseline":
        return _BEFORE, ANALYTES[name.removeprefix("baseline_")].label
    if info.source == "window":
        analyte, stat = _analyte_of(name)
        measured = f"{analyte}_last" not in missing and f"{analyte}_max" not in missing
        return (_ONE if stat == "log_slope" and measured else _SINCE), ANALYTES[analyte].label
    if info.inputs:
        lacking = [ANALYTES[_analyte_of(i)[0]].label for i in info.inputs if i in missing]
        needs = f"needs {', '.join(dict.fromkeys(lacking))}" if lacking else "an input is zero"
        return _COMPUTABLE, f"{_COMPUTED[name]} ({needs})"
    if name in _LEVEL_OF:
        return _RECORDED, _LEVEL_OF[name][0]  # the record field a one-hot column comes from
    return _RECORDED, _RECORD_FIELDS.get(name, info.label)


def _headings(clock: Clock | None) -> tuple[str, ...]:
    """Each group's heading; said as of the landmark when its model reads the record before now."""
    since = "not measured since infusion"
    if clock is not None and clock.landmark < clock.now:
        since = f"not measured from infusion to {clock.landmark_name}"
    one = _as_of_landmark("only one value so far (no trend)", clock)
    return "not measured before infusion", since, one, "not computable", "not recorded"


def missing_lines(names: list[str], clock: Clock | None = None) -> list[str]:
    """A model's missing inputs as a clinician would list them, grouped by why each is missing, one line a group
    (``not measured since infusion: IFN-gamma, sIL-6R``, ``only one value so far (no trend): ferritin, CRP``,
    ``not computable: m-EASIX (needs platelets)``), each input said once; ``clock`` as for ``describe_value``."""
    missing, groups = set(names), [dict[str, None]() for _ in range(5)]
    for name in names:
        group, item = _missing_item(name, missing)
        groups[group][item] = None
    return [f"{heading}: {', '.join(items)}" for heading, items in zip(_headings(clock), groups) if items]


def is_absence(name: str, value: float) -> bool:
    """The value says an input is absent (not measured, too few values for a trend), not what it measured; an
    event that has not happened (no CRS, no fever) is a finding, not an absence."""
    indicator = name.endswith("_missing") and name.removesuffix("_missing") in ANALYTES
    return (math.isnan(value) and name not in NONE_YET) or (indicator and value >= 0.5)


def phrase(
    name: str,
    value: float,
    shap: float,
    trends: Mapping[str, TrendEnds] | None = None,
    clock: Clock | None = None,
    row: Mapping[str, float] | None = None,
) -> str:
    """One reason as a clinician would say it, with its effect: ``ferritin 3.8x its baseline (raised the risk)``;
    an absent input's effect said as such: ``no platelets trend yet (its absence raised the risk)`` (``trends``,
    ``clock`` and ``row`` as for ``describe_value``)."""
    effect = "raised the risk" if shap > 0 else ("lowered the risk" if shap < 0 else "did not change the risk")
    if is_absence(name, value) and shap != 0:
        effect = f"its absence {effect}"
    return f"{describe_value(name, value, trends, clock, row)} ({effect})"
