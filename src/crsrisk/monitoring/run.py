"""``crsrisk monitor``: audited predictions joined with later outcomes, judged period by period against a plan.

The edge of the monitoring package: it reads the plan, the log, the outcome cohort and the bundles, runs the
streaming join (``join``), computes each group's figures (``figures``), applies the plan (``plan``) and hands the
document to the report writers (``report``) and MLflow (``tracking``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from crsrisk.audit.keys import pseudonym_key
from crsrisk.bundle.store import Bundle
from crsrisk.cohort.io import is_folder, load_cohort
from crsrisk.cohort.validated import Cohort
from crsrisk.errors import InputError
from crsrisk.monitoring.drift import outside_population
from crsrisk.monitoring.figures import group_figures
from crsrisk.monitoring.join import JoinTally, Models, Outcomes, PeriodRule, join
from crsrisk.monitoring.plan import Plan, Runs, load_plan
from crsrisk.monitoring.stream import audit_log_file, read_predictions
from crsrisk.sources.fhir import import_fhir

PERIODS = ("month",)
KEY_TEXT = (
    "patient_hash = HMAC-SHA256(pseudonym key, patient_id as UTF-8), hex; the pseudonym key is the log writer's "
    "($CRSRISK_AUDIT_SALT, else $CRSRISK_AUDIT_PSEUDONYM_KEY_FILE, else the per-user pseudonym.key), separate from "
    "the chain key; the outcome cohort's patient ids are hashed under it here, and no raw id is in the log"
)


def period_rule(period: str | None, every: int | None) -> PeriodRule:
    """``--period month`` (the default) or ``--every N``; anything else is an InputError naming the option."""
    if period is not None and every is not None:
        raise InputError("period and every: give one of them (a calendar month, or every N predictions)")
    if period is not None and period not in PERIODS:
        raise InputError(f"period: unknown period {period!r}; expected one of {list(PERIODS)} (or every N predictions)")
    return PeriodRule(every)


def load_outcomes(path: str | os.PathLike) -> Cohort:
    """The outcome cohort: a cohort folder (as ``crsrisk import fhir`` writes), or a FHIR source read directly
    (a Bundle ``.json``, a folder of Bundles or of Bulk Data ``.ndjson`` files) with the default time rule."""
    source = Path(path)
    if not source.exists():
        raise InputError(f"outcomes: no cohort folder or FHIR source at {source}")
    if is_folder(source) and any((source / f"patients{suffix}").exists() for suffix in (".csv", ".parquet")):
        return load_cohort(source)
    return import_fhir(source).cohort


@dataclass
class MonitorResult:
    """The monitoring document (what ``monitor.json`` holds) and every flag raised, in period order."""

    document: dict[str, Any]
    flags: list[dict[str, Any]] = field(default_factory=list)


def monitor(
    audit_log: str | os.PathLike,
    outcomes: str | os.PathLike | Cohort,
    bundles: list[Bundle] | None = None,
    plan: str | os.PathLike | Plan | None = None,
    every: int | None = None,
    period: str | None = None,
    verify: bool = True,
    seed: int = 0,
    on_flag: Callable[[dict[str, Any]], None] = lambda flag: None,
) -> MonitorResult:
    """Join every audited prediction of ``audit_log`` with its outcome in ``outcomes`` and judge each period
    (calendar month, or ``every`` N predictions) against ``plan`` (the shipped default when None). ``bundles``
    give model versions their task definitions, bands and training population (input drift); ``on_flag`` is
    called with each flag as its period closes."""
    rule = period_rule(period, every)
    chosen = plan if isinstance(plan, Plan) else load_plan(plan)
    log = audit_log_file(audit_log)
    cohort = outcomes if isinstance(outcomes, Cohort) else load_outcomes(outcomes)
    indexed = Outcomes.of(cohort, pseudonym_key(log, create=False))
    predictions, reading = read_predictions(log, verify)
    models = Models(bundles or [])
    outside_cache: dict[str, np.ndarray | None] = {}

    def outside(sha: str) -> np.ndarray | None:
        if sha not in outside_cache:
            bundle = models.bundles.get(sha)
            outside_cache[sha] = None if bundle is None else outside_population(bundle.population, indexed.arrays)
        return outside_cache[sha]

    tally, runs, periods, flags, seen = JoinTally(), Runs(), [], [], set()
    for joined in join(predictions, indexed, models, rule, outside, tally):
        groups, period_flags = [], []
        for state in sorted(joined.groups.values(), key=lambda s: s.group.name):
            seen.add(state.group.model_sha256)
            figures = group_figures(state, chosen, seed)
            raised = [
                {"period": joined.key, "group": state.group.name, "model_sha256": state.group.model_sha256, **flag}
                for flag in runs.flags(chosen, state.group.name, figures)
            ]
            figures["flags"] = raised
            groups.append(figures)
            period_flags += raised
        for flag in period_flags:
            on_flag(flag)
        flags += period_flags
        periods.append(
            {
                "period": joined.key,
                "index": joined.index,
                "first_seq": joined.first_seq,
                "last_seq": joined.last_seq,
                "first_time": joined.first_time,
                "last_time": joined.last_time,
                "volume": sum(g["volume"] for g in groups),
                "groups": groups,
                "flags": period_flags,
            }
        )
    notes = list(models.notes)
    unknown = sorted(seen - set(models.bundles))
    if unknown:
        notes.append(
            f"no bundle given for model version(s) {', '.join(s[:12] for s in unknown)}: judged by the default task "
            "definitions, without input drift (pass --model with that bundle)"
        )
    volume = sum(p["volume"] for p in periods)
    matched = sum(g["matched"] for p in periods for g in p["groups"])
    if volume and not matched:
        notes.append(
            f"none of {volume} predictions matched a patient of the outcome cohort: the pseudonym key used here is "
            "probably not the one the log was written with (see pseudonym_key), or the cohort holds other patients"
        )
    verified = reading.verified
    document = {
        "kind": "crsrisk monitoring report",
        "not_for_clinical_use": True,
        "synthetic_outcomes": cohort.synthetic,
        "synthetic_models": any(b.metadata.synthetic for b in models.bundles.values()),
        "audit_log": {
            "path": str(log),
            "verified": None if verified is None else verified.ok,
            "chain_problems": [] if verified is None else verified.problems,
            "chain_notes": [] if verified is None else verified.notes,
            "head": None if verified is None or verified.head is None else f"{verified.head[0]}:{verified.head[1]}",
            "records_by_kind": dict(reading.kinds),
            "unreadable": reading.unreadable,
            "not_joined": dict(tally.counts)
            | {"batch_prediction_stream": reading.kinds.get("batch_prediction_stream", 0)},
        },
        "pseudonym_key": KEY_TEXT,
        "outcomes": {
            "source": str(cohort.metadata.get("source", "")),
            "fingerprint": indexed.fingerprint,
            "infusions": int(indexed.arrays.patient_ids.size),
        },
        "models": [
            {
                "model_sha256": sha,
                "bundle": str(models.bundles[sha].path) if sha in models.bundles else None,
                "mlflow_run_id": models.bundles[sha].metadata.mlflow_run_id if sha in models.bundles else None,
            }
            for sha in sorted(seen | set(models.bundles))
        ],
        "plan": chosen.model_dump(mode="json"),
        "period": rule.kind,
        "volume": volume,
        "periods": periods,
        "flags": flags,
        "notes": notes,
    }
    return MonitorResult(document, flags)
