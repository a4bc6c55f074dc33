"""``crsrisk update``: adapt each bundled model to a new centre by a closed testing procedure.

For every model (each task, each landmark model) five options are compared on the local cohort (see
``update_options``): (a) original, (b) recalibration in the large, (c) logistic recalibration, (d) model revision,
(e) refit. The choice follows Vergouwe et al.'s closed testing (Stat Med 2017;36:4529; Steyerberg, Clinical
Prediction Models, 2nd ed., ch. 20), as written here:

1. (a), (b) and (c) are nested, so likelihood-ratio tests decide between them on the whole local cohort: the most
   extensive, (c), against (a) (2 df); if that is not significant, keep (a). Otherwise (c) against (b) (1 df): not
   significant, keep (b); else (c). The (a) vs (b) test (1 df) is reported beside them.
2. (d) and (e) are not nested in (c) (their trees differ), so no LR test applies: they are compared by
   cross-validated deviance. The option with the lowest is the reference; the simplest option (in the order
   recalibration choice, (d), (e)) whose deviance is not significantly higher is kept, by a one-sided paired z-test
   on the infusions' deviance differences.

Every figure reported per option is cross-validated on the local cohort: each option is fitted on the training
part of every fold (grouped by infusion) and scores only the held-out part. A model with too few local events keeps
its parent (option a) and says so; (d) and (e) are skipped, with the reason, where training's own event-count rule
(``training.crossval.check_events``) says the inner folds cannot be tuned.
"""

from __future__ import annotations

import os
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import chi2, norm

from crsrisk.bundle import Bundle, TaskModel
from crsrisk.bundle.calibration import INTERVAL_REFITS
from crsrisk.cohort.arrays import cohort_arrays
from crsrisk.cohort.validated import Cohort
from crsrisk.errors import InputError
from crsrisk.evaluation.bootstrap import bootstrap_ci
from crsrisk.evaluation.cohort_size import anticipated_cstatistic, precision
from crsrisk.evaluation.metrics import auroc, brier, calibration_intercept, calibration_slope
from crsrisk.evaluation.recalibration import MIN_EACH_CLASS, ci_text, parent_lineage, save_child
from crsrisk.evaluation.update_options import LABELS, OPTIONS, fit_option, log_likelihood, row_log_likelihood
from crsrisk.scoring.load import load_model
from crsrisk.training.config import CVConfig, TrainConfig
from crsrisk.training.crossval import TooFewEvents, check_events, outer_splits
from crsrisk.util.outputs import json_ready

DEFAULT_ALPHA = 0.05
UPDATE_CONFIG = TrainConfig(cv=CVConfig(n_splits=5, n_repeats=1))  # local folds; tuning as training's default
PROCEDURE = (
    "closed testing (Vergouwe et al., Stat Med 2017): LR tests for the nested recalibrations, (c) vs (a) 2 df then "
    "(c) vs (b) 1 df; (d) and (e) are not nested in (c), so cross-validated deviance with a one-sided paired z-test "
    "over infusions; the simplest option not significantly worse is kept"
)
REPEATED_ROWS = (
    "rows at several landmarks of one infusion: the LR tests count them as independent, so their p-values are "
    "optimistic; the deviance test and the bootstrap CIs resample whole infusions"
)
METRICS = {"auroc": auroc, "calibration_intercept": calibration_intercept, "calibration_slope": calibration_slope}
METRICS |= {"brier": brier}


@dataclass(frozen=True)
class UpdateLineage:
    """What an updated bundle records about where it came from (stored as ``BundleMetadata.update``)."""

    parent_bundle_sha256: str
    parent_bundle_path: str
    parent_created: str
    training_cohort_fingerprint: str | None
    local_cohort_fingerprint: str
    local_cohort_size: int
    local_cohort_synthetic: bool
    alpha: float
    procedure: str
    date: str
    models: dict[str, dict[str, Any]]  # per model key: method chosen, why, n, events, the test results
    bands: str = "kept from the parent bundle (set from the training cohort's event rate)"
    parent_lineage: dict[str, Any] = field(default_factory=dict)  # the parent's own update or recalibration

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON (NaN as null), as ``bundle.json`` stores it."""
        return json_ready(asdict(self))

    @classmethod
    def from_dict(cls, data: Any) -> "UpdateLineage":
        """Read back ``to_dict``'s form; an InputError names a missing or unknown field."""
        specs = {spec.name: spec for spec in fields(cls)}
        required = {name for name, spec in specs.items() if spec.default is spec.default_factory is MISSING}
        if not isinstance(data, dict):
            raise InputError(f"update lineage: expected a mapping, got {type(data).__name__}")
        if unknown := sorted(set(data) - set(specs)):
            raise InputError(f"update lineage: unknown field(s) {unknown}")
        if missing := sorted(required - set(data)):
            raise InputError(f"update lineage: missing field(s) {missing}")
        return cls(**data)


@dataclass(frozen=True)
class Updated:
    """The chosen model per key, the full report (REPORT.json), the lineage and where the bundle went."""

    models: list[TaskModel]
    report: dict[str, Any]
    lineage: UpdateLineage
    path: Path | None = None


def lr_test(ll_simple: float, ll_extended: float, df: int) -> dict[str, float]:
    """Likelihood-ratio test of a nested model: statistic 2 (LL_extended - LL_simple), chi-squared on ``df``."""
    statistic = max(2.0 * (ll_extended - ll_simple), 0.0)
    return {"statistic": statistic, "df": df, "p_value": float(chi2.sf(statistic, df))}


def deviance_test(y: np.ndarray, p_simple: np.ndarray, p_best: np.ndarray, groups: np.ndarray) -> dict[str, float]:
    """Is the simpler option's cross-validated deviance higher than the reference's? One-sided paired z-test on
    the per-infusion sums of deviance differences (infusions are the independent units)."""
    difference = -2 * (row_log_likelihood(y, p_simple) - row_log_likelihood(y, p_best))
    per = pd.Series(difference).groupby(np.asarray(groups)).sum().to_numpy()
    total, spread = float(per.sum()), float(per.std(ddof=1)) if per.size > 1 else 0.0
    z = total / (spread * np.sqrt(per.size)) if spread > 0 else (np.inf if total > 0 else 0.0)
    return {"deviance_difference": total, "z": float(z), "p_value": float(norm.sf(z))}


def choose(
    tests: dict[str, dict[str, float]],
    deviance: dict[str, float],
    oof: dict[str, np.ndarray],
    y: np.ndarray,
    groups: np.ndarray,
    alpha: float,
) -> tuple[str, str, dict[str, dict[str, float]]]:
    """The closed-testing choice, why, and the deviance tests it made (see the module docstring)."""
    if tests["original_vs_logistic"]["p_value"] >= alpha:
        nested, why = "original", f"(c) is not significantly better than (a) (LR 2 df, p >= {alpha})"
    elif tests["intercept_vs_logistic"]["p_value"] >= alpha:
        nested, why = "intercept", f"(c) beats (a) (LR 2 df, p < {alpha}) but not (b) (LR 1 df, p >= {alpha})"
    else:
        nested, why = "logistic", f"(c) beats (a) (LR 2 df) and (b) (LR 1 df), both p < {alpha}"
    candidates = [nested] + [o for o in ("revision", "refit") if o in oof]
    best = min(candidates, key=lambda o: deviance[o])
    compared = {f"{o}_vs_{best}": deviance_test(y, oof[o], oof[best], groups) for o in candidates if o != best}
    for option in candidates:
        if option == best or compared[f"{option}_vs_{best}"]["p_value"] >= alpha:
            break
    if option == nested and best == nested:
        return nested, why + "; its cross-validated deviance is the lowest of the options compared", compared
    if option == nested:
        return nested, why + f"; {LABELS[best]} has lower cross-validated deviance, not significantly", compared
    simpler = ", ".join(LABELS[o] for o in candidates[: candidates.index(option)])
    return (
        option,
        f"{LABELS[option]}: cross-validated deviance "
        + ("the lowest" if option == best else f"not significantly above the lowest, {LABELS[best]}'s")
        + f"; {simpler} significantly above it (paired z over infusions, p < {alpha}); "
        "(d) and (e) are not nested in (c), so no LR test applies",
        compared,
    )


def _metrics(y: np.ndarray, p: np.ndarray, groups: np.ndarray, n_boot: int, seed: int) -> dict[str, Any]:
    repeated = len(set(groups)) < len(groups)
    return bootstrap_ci(y, p, METRICS, n_boot=n_boot, seed=seed, groups=groups if repeated else None)


def _folds(data: Any, config: TrainConfig) -> tuple[list[Any], str | None]:
    """The local folds (one pass, grouped by infusion), and why (d)/(e) cannot be tuned in them (None: they can)."""
    splits = [s for s in outer_splits(data.y, data.patient_ids, data.centres, config) if s.repeat == 0]
    try:
        check_events(data.y, splits, config, data.patient_ids.to_numpy())
    except TooFewEvents as reason:
        return splits, f"skipped (training's event-count rule): {reason}"
    return splits, None


def update_model(
    model: TaskModel, cohort: Cohort, arrays: Any, config: TrainConfig, alpha: float
) -> tuple[TaskModel, dict[str, Any]]:
    """One model's comparison on the local cohort: the model to keep and its report entry."""
    data = model.definition.dataset(cohort, model.landmark, arrays)
    X, y, groups = data.X, data.y.astype(int), data.patient_ids.to_numpy()
    entry: dict[str, Any] = {"n": int(y.size), "events": int(y.sum()), "excluded": data.excluded}
    observed = (
        auroc(y, model.probability(X[model.feature_names].to_numpy(dtype=float))) if 0 < y.sum() < y.size else 0.5
    )
    entry["precision"] = asdict(precision(y, groups, anticipated_cstatistic(model.metrics, observed)))
    try:
        if min(int(y.sum()), int(y.size - y.sum())) < MIN_EACH_CLASS:
            raise TooFewEvents(f"fewer than {MIN_EACH_CLASS} events or non-events here")
        splits, skip = _folds(data, config)
    except TooFewEvents as too_few:
        return model, entry | {"choice": "original", "reason": f"kept the parent (a): too few local events: {too_few}"}
    options = OPTIONS if skip is None else OPTIONS[:3]
    oof = {o: np.empty(y.size) for o in options}
    for split in splits:
        seed = config.seed + split.fold
        for option in options:
            train, test = split.train, split.test
            fitted = fit_option(option, model, X.iloc[train], y[train], groups[train], config, seed)
            oof[option][test] = fitted.probability(X.iloc[test][model.feature_names].to_numpy(dtype=float))
    final = {o: fit_option(o, model, X, y, groups, config, config.seed, INTERVAL_REFITS) for o in OPTIONS[:3]}
    ll = {o: log_likelihood(y, m.probability(X[model.feature_names].to_numpy(dtype=float))) for o, m in final.items()}
    tests = {
        "original_vs_intercept": lr_test(ll["original"], ll["intercept"], 1),
        "intercept_vs_logistic": lr_test(ll["intercept"], ll["logistic"], 1),
        "original_vs_logistic": lr_test(ll["original"], ll["logistic"], 2),
    }
    deviance = {o: -2 * log_likelihood(y, p) for o, p in oof.items()}
    choice, reason, compared = choose(tests, deviance, oof, y, groups, alpha)
    n_boot, seed = config.bootstrap.n_boot, config.seed
    entry["options"] = {
        o: {"label": LABELS[o], "cv_deviance": deviance[o], "metrics": _metrics(y, oof[o], groups, n_boot, seed)}
        if o in oof
        else {"label": LABELS[o], "status": skip}
        for o in OPTIONS
    }
    entry |= {"log_likelihood": ll, "tests": tests | compared, "choice": choice, "reason": reason}
    if len(set(groups)) < len(groups):
        entry["note"] = REPEATED_ROWS
    chosen = (
        final[choice]
        if choice in final
        else fit_option(choice, model, X, y, groups, config, config.seed, INTERVAL_REFITS)
    )
    return chosen, entry


def selected_models(bundle: Bundle, only: str | None) -> list[str]:
    """The keys of the models to update: all, or those whose key or task is ``only`` (refused when none is)."""
    keys = [k for k, m in bundle.models.items() if only in (None, k, m.task)]
    if not keys:
        raise InputError(f"only: {only!r} names no model of this bundle; expected one of {list(bundle.models)}")
    return keys


def update(
    model: str | os.PathLike | Bundle,
    cohort: Cohort,
    alpha: float = DEFAULT_ALPHA,
    config: TrainConfig = UPDATE_CONFIG,
    only: str | None = None,
) -> Updated:
    """Compare the five options for every bundled model (or those whose key or task is ``only``) on ``cohort``."""
    if not (isinstance(alpha, float) and 0 < alpha < 1):
        raise InputError(f"alpha: expected a number strictly between 0 and 1, got {alpha!r}")
    bundle = load_model(model)
    keys = selected_models(bundle, only)
    arrays = cohort_arrays(cohort)
    models, report = [], {}
    for key, task_model in bundle.models.items():
        if key in keys:
            task_model, report[key] = update_model(task_model, cohort, arrays, config, alpha)
        models.append(task_model)
    base = parent_lineage(bundle, cohort)
    lineage = UpdateLineage(
        **base,
        alpha=alpha,
        procedure=PROCEDURE,
        date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        models={
            k: {f: e[f] for f in ("choice", "reason", "n", "events") if f in e} | {"tests": e.get("tests", {})}
            for k, e in report.items()
        },
        parent_lineage=_parent_history(bundle),
    )
    document = {
        "kind": "model_update",
        "lineage": lineage.to_dict(),
        "folds": config.cv.n_splits,
        "n_boot": config.bootstrap.n_boot,
        "models": json_ready(report),
        "not_updated": [k for k in bundle.models if k not in keys],
    }
    return Updated(models, document, lineage)


def _parent_history(bundle: Bundle) -> dict[str, Any]:
    """The parent's own lineage (an earlier update or recalibration), kept inside the new one."""
    meta = bundle.metadata
    return {k: v for k, v in (("update", meta.update), ("recalibration", meta.recalibration)) if v is not None}


def write_updated(result: Updated, parent: str | os.PathLike | Bundle, out_dir: str | os.PathLike) -> Updated:
    """Save the chosen models as a new bundle whose metadata carries ``update`` (through the one save path)."""
    bundle = load_model(parent)
    path = save_child(bundle, result.models, out_dir, None, result.lineage.to_dict())
    return replace(result, path=path)


def option_rows(report: dict[str, Any]) -> list[list[str]]:
    """One row per model and option: cross-validated AUROC, intercept, slope, Brier (95% CI), deviance, chosen."""
    rows = []
    for key, entry in report["models"].items():
        for option, figures in entry.get("options", {"original": {"label": LABELS["original"]}}).items():
            chosen = "<- kept" if option == entry["choice"] else ""
            if "metrics" not in figures:
                shown = [figures.get("status", "-")] + ["-"] * 4
            else:
                m = figures["metrics"]
                shown = [ci_text(m[name], ".3f") for name in METRICS] + [f"{figures['cv_deviance']:.1f}"]
            rows.append([key, LABELS[option], *shown, chosen])
    return rows


OPTION_HEADER = ["model", "option", "AUROC", "cal. intercept", "cal. slope", "Brier", "CV deviance", "choice"]


def lineage_rows(lineage: dict[str, Any]) -> list[list[str]]:
    """For the model card: per model, the method chosen, why, n and events, and the LR tests' p-values."""
    rows = []
    for key, entry in lineage.get("models", {}).items():
        tests = entry.get("tests", {})
        p = "; ".join(f"{name}: p={t['p_value']:.3g}" for name, t in tests.items() if t.get("p_value") is not None)
        rows.append(
            [key, LABELS.get(entry["choice"], entry["choice"]), entry["reason"], entry["n"], entry["events"], p]
        )
    return rows


LINEAGE_HEADER = ["model", "method", "why", "n", "events", "tests"]
