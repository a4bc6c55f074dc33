"""The monitoring plan: thresholds, how long they must hold, and what to do (YAML, validated with pydantic).

The default plan ships as ``default_plan.yaml`` beside this module and documents every field. A plan that is not
valid is refused as an ``InputError`` naming the field (``rules.2.below: ...``), never half applied.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from crsrisk.cohort.io import MAX_SETTINGS_BYTES, read_limited
from crsrisk.errors import CrsriskError, InputError

DEFAULT_PLAN = Path(__file__).with_name("default_plan.yaml")
OutcomeMetric = Literal["oe", "calibration_intercept", "calibration_slope", "auroc"]  # with bootstrap CIs
InputMetric = Literal[
    "drifted_features",
    "psi_max",
    "drift_test_min_p",
    "missing_change_max",
    "outside_population_share",
    "beyond_range_share",
]
VolumeMetric = Literal["pending_share", "unmatched_share"]
MetricName = Literal[OutcomeMetric, InputMetric, VolumeMetric]  # every metric a rule may name: the three kinds
OUTCOME_METRICS: tuple[str, ...] = get_args(OutcomeMetric)
INPUT_METRICS: tuple[str, ...] = get_args(InputMetric)
VOLUME_METRICS: tuple[str, ...] = get_args(VolumeMetric)
Action = Literal["review", "recalibrate", "update", "retrain", "suspend"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Rule(_Strict):
    """One threshold: ``metric`` below and/or above a value (with its CI excluding ``ci_excludes``), in
    ``consecutive`` judged periods, leads to ``action``."""

    name: str = Field(min_length=1, max_length=100)
    metric: MetricName
    below: float | None = None
    above: float | None = None
    ci_excludes: float | None = None
    consecutive: int = Field(1, ge=1, le=120)
    action: Action
    why: str = Field("", max_length=500)

    @model_validator(mode="after")
    def _threshold(self) -> "Rule":
        if self.below is None and self.above is None:
            raise ValueError("give 'below' or 'above' (or both)")
        if self.ci_excludes is not None and self.metric not in OUTCOME_METRICS:
            raise ValueError(f"ci_excludes applies to metrics with a CI ({', '.join(OUTCOME_METRICS)}) only")
        return self

    def beyond(self, value: float) -> bool:
        """Whether ``value`` is past the threshold."""
        return (self.below is not None and value < self.below) or (self.above is not None and value > self.above)

    @property
    def threshold(self) -> str:
        """``below 0.8``, ``above 1.25``."""
        parts = [
            f"below {self.below:g}" if self.below is not None else "",
            f"above {self.above:g}" if self.above is not None else "",
        ]
        return " or ".join(p for p in parts if p)


class Drift(_Strict):
    """When a feature counts as drifted: PSI at least ``psi`` and the test significant at ``alpha`` (Bonferroni)."""

    psi: float = Field(0.25, gt=0, le=10)
    alpha: float = Field(0.05, gt=0, lt=1)


class Plan(_Strict):
    """A monitoring plan (see ``default_plan.yaml``)."""

    version: Literal[1] = 1
    min_labelled: int = Field(50, ge=1, le=10_000_000)
    min_events: int = Field(10, ge=0, le=10_000_000)
    min_inputs: int = Field(30, ge=1, le=10_000_000)
    drift: Drift = Drift()
    n_boot: int = Field(200, ge=50, le=10_000)
    rules: list[Rule] = Field(default_factory=list, max_length=200)


def plan_from_mapping(data: Any, source: str = "plan") -> Plan:
    """A validated plan from plain data; an InputError naming each bad field otherwise."""
    if not isinstance(data, dict):
        raise InputError(f"{source}: expected a mapping of plan settings at the top level, got {type(data).__name__}")
    try:
        return Plan.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or '(plan)'}: {e['msg']} (got {_short(e.get('input'))})"
            for e in error.errors()
        )
        raise InputError(f"{source}: {problems}") from None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def load_plan(path: str | os.PathLike | None = None) -> Plan:
    """Read a plan file (the shipped default when None), by the bounded read that refuses FIFOs and devices."""
    where = DEFAULT_PLAN if path is None else Path(path)
    try:
        text = read_limited(where, MAX_SETTINGS_BYTES, "plan")
    except CrsriskError as error:
        raise InputError(f"plan: {error}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise InputError(f"plan {where}: not valid YAML: {str(error).splitlines()[0]}") from None
    except RecursionError:
        raise InputError(f"plan {where}: nested too deeply") from None
    return plan_from_mapping(data, f"plan {where}")


def judged(rule: Rule, plan: Plan, figures: dict[str, Any]) -> tuple[bool, float | None, list[Any] | None]:
    """Whether the group's figures allow judging the rule this period, its value and CI (None: nothing to judge)."""
    if rule.metric in OUTCOME_METRICS:
        if figures["labelled"] < plan.min_labelled or figures["events"] < plan.min_events:
            return False, None, None
        metric = figures["metrics"].get(rule.metric) or {}
        value, ci = metric.get("value"), [metric.get("ci_low"), metric.get("ci_high")]
    elif rule.metric in INPUT_METRICS:
        drift = figures.get("drift")
        if not drift or drift["rows"] < plan.min_inputs:
            return False, None, None
        value, ci = drift.get(rule.metric), None
    else:
        value, ci = figures.get(rule.metric), None
    if value is None or not math.isfinite(value):
        return False, None, None
    return True, float(value), ci


def breached(rule: Rule, value: float, ci: list[Any] | None) -> bool:
    """The rule's condition in one period: beyond the threshold, and the CI excluding ``ci_excludes`` if asked."""
    if not rule.beyond(value):
        return False
    if rule.ci_excludes is None:
        return True
    if ci is None or any(c is None or not math.isfinite(c) for c in ci):
        return False
    return not ci[0] <= rule.ci_excludes <= ci[1]


class Runs:
    """How many judged periods in a row each rule has held for each group: the plan's memory across periods."""

    def __init__(self) -> None:
        self.length: dict[tuple[str, str], int] = {}

    def flags(self, plan: Plan, group_name: str, figures: dict[str, Any]) -> list[dict[str, Any]]:
        """The flags this period's figures raise for one group (updating the runs)."""
        out = []
        for rule in plan.rules:
            ok, value, ci = judged(rule, plan, figures)
            if not ok or value is None:
                continue
            key = (rule.name, group_name)
            self.length[key] = self.length.get(key, 0) + 1 if breached(rule, value, ci) else 0
            if self.length[key] >= rule.consecutive:
                shown_ci = "" if ci is None else f" (95% CI {ci[0]:.3g}-{ci[1]:.3g})"
                out.append(
                    {
                        "rule": rule.name,
                        "metric": rule.metric,
                        "value": value,
                        "ci": ci,
                        "threshold": rule.threshold,
                        "periods_in_a_row": self.length[key],
                        "action": rule.action,
                        "why": rule.why,
                        "text": f"{group_name}: {rule.metric} {value:.3g}{shown_ci} {rule.threshold} in "
                        f"{self.length[key]} period(s) in a row: {rule.action} ({rule.name})",
                    }
                )
        return out
