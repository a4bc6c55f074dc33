"""A prediction's exact SHAP attribution as the steps of a waterfall: the largest reasons by name, the rest summed
per theme (``features.spec.THEMES``), so that no "131 other features" outweighs every named one.

In log-odds the steps are the SHAP values themselves and add up exactly (base value + steps = raw score). On the
probability scale a reason has no size of its own: the steps here are the calibrated risk after each cumulative
sum, taken from the base value in the order given, and the last one ends at the raw score itself, so the chart
ends exactly at the risk ``predict`` reports. In another order the steps would have other sizes; the charts say so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from crsrisk.features.phrases import absent_words, describe_value, is_one_hot, number
from crsrisk.features.spec import THEMES, feature_info

# a contribution record and the patient's features by name -> what the chart calls it
Label = Callable[[Mapping[str, Any], Mapping[str, float]], str]


@dataclass(frozen=True)
class Step:
    """One bar: what moved the score and where it took it from and to (log-odds or probability)."""

    label: str
    start: float
    end: float
    group: bool = False  # a theme's remainder (several inputs), not one named reason


@dataclass(frozen=True)
class Steps:
    """A waterfall: from the base (the model's starting point) through each step to the final score."""

    base: float
    steps: tuple[Step, ...]
    final: float
    scale: str  # "log-odds" or "probability"


def clinical_label(record: Mapping[str, Any], row: Mapping[str, float]) -> str:
    """A reason in a clinician's words (``features.phrases``), as the text summary says it."""
    return str(record["phrase"])


def value_text(name: str, value: float | None) -> str:
    """A feature's value for an auditor: what its absence means when missing (``not measured``, ``no CRS so
    far``), ``yes``/``no`` for a flag, else the number with its unit."""
    info = feature_info(name)
    if value is None or math.isnan(value):
        return absent_words(name)
    if info.unit.startswith("1 = "):
        return "yes" if value >= 0.5 else "no"
    return f"{number(value)} {info.unit}"


def audit_label(record: Mapping[str, Any], row: Mapping[str, float]) -> str:
    """A reason for an auditor: the feature's label and its value (``IL-6, latest value = 716 pg/mL``); a one-hot
    column as what the patient has, in the phrases' words (``product axicabtagene ciloleucel, not obecabtagene
    autoleucel``), not as ``= no``."""
    name, value = record["feature"], record["value"]
    if is_one_hot(name) and value is not None:
        return describe_value(name, value, row=row)
    return f"{record['label']} = {value_text(name, value)}"


def attribution(prediction: Any, top: int, label: Label) -> list[tuple[str, float, bool]]:
    """(label, SHAP sum, is a group) of the ``top`` largest reasons, largest first, then of every other input
    summed per theme, largest |sum| first; the sums add up to the raw score less the base value."""
    named = list(prediction["contributions"][:top])
    shown = {r["feature"] for r in named}
    rest = [name for name in prediction.model.feature_names if name not in shown]
    groups = theme_groups(rest)
    shap = dict(zip(prediction.model.feature_names, np.asarray(prediction.shap, dtype=np.float64).tolist()))
    sums = [(text, math.fsum(shap[name] for name in members), True) for text, members in groups]
    sums.sort(key=lambda group: -abs(group[1]))
    return [(label(r, prediction.row), float(r["shap"]), False) for r in named] + sums


def theme_groups(names: Sequence[str]) -> list[tuple[str, list[str]]]:
    """``names`` (the inputs a chart does not name) grouped by theme in ``THEMES`` order, each with its label
    (``cytokines: 12 more inputs``): one remainder per theme rather than "131 other features"."""
    themes: dict[str, list[str]] = {}
    for name in names:
        themes.setdefault(feature_info(name).theme, []).append(name)
    return [
        (f"{theme}: {len(members)} more input{'s' if len(members) > 1 else ''}", members)
        for theme, members in sorted(themes.items(), key=lambda item: THEMES.index(item[0]))
    ]


def log_odds_steps(prediction: Any, top: int, label: Label = audit_label) -> Steps:
    """The exact SHAP waterfall: base value, each reason's SHAP value, raw score (the last step ends at it)."""
    parts = attribution(prediction, top, label)
    ends = _cumulative(prediction, [effect for _, effect, _ in parts])
    return Steps(ends[0], _steps(parts, ends), ends[-1], "log-odds")


def probability_steps(prediction: Any, top: int, label: Label = clinical_label) -> Steps:
    """The same attribution on the probability scale: the calibrated risk after each cumulative sum, from the
    base value's to exactly the risk ``predict`` reports."""
    parts = attribution(prediction, top, label)
    margins = _cumulative(prediction, [effect for _, effect, _ in parts])
    risks = [float(r) for r in np.asarray(prediction.model.calibrator.transform(np.asarray(margins))).tolist()]
    return Steps(risks[0], _steps(parts, risks), risks[-1], "probability")


def _cumulative(prediction: Any, effects: list[float]) -> list[float]:
    """Base value, then the running sums; the last is the raw score itself (the sum equals it to float32 rounding),
    so a chart ends where the prediction does."""
    base = float(prediction["base_value"])
    running = [base + math.fsum(effects[: i + 1]) for i in range(len(effects))]
    return [base, *running[:-1], float(prediction["raw_score"])]


def _steps(parts: list[tuple[str, float, bool]], ends: list[float]) -> tuple[Step, ...]:
    return tuple(Step(text, ends[i], ends[i + 1], group) for i, (text, _, group) in enumerate(parts))
