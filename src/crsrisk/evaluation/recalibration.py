"""Local recalibration: refit each bundled model's calibrator on a local cohort, keeping its booster.

A model trained elsewhere often ranks local patients well but misstates their risk (a different event rate,
different practice). Recalibration keeps the trees (the raw score, its SHAP reasons) and refits only the map
from raw score to probability: ``platt`` (logistic on the booster margin: a new intercept and slope, ``crsrisk
update``'s option (c)), ``intercept`` (recalibration in the large: a new intercept only, option (b)) or
``isotonic``. The new bundle records its lineage: the parent bundle's SHA-256, the training and local cohort
fingerprints, the method, the date, and each model's calibration intercept and slope (bootstrap 95 % CI)
before and after on the local cohort. "After" is measured on the cohort the calibrator was fitted on, so it
is optimistic (Platt makes both exactly ideal there): check it on another local cohort with ``evaluate``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np

from crsrisk.bundle import Bundle, TaskModel, save_bundle
from crsrisk.bundle.calibration import INTERVAL_REFITS, METHODS, fit_calibrator
from crsrisk.cohort.arrays import cohort_arrays
from crsrisk.cohort.validated import Cohort
from crsrisk.evaluation.bootstrap import bootstrap_ci
from crsrisk.evaluation.metrics import calibration_intercept, calibration_slope
from crsrisk.evaluation.update_options import fit_option
from crsrisk.scoring.load import load_model
from crsrisk.training.config import TrainConfig
from crsrisk.util.outputs import json_ready

RecalibrationMethod = Literal["platt", "isotonic", "intercept"]
RECALIBRATION_METHODS: tuple[str, ...] = (*METHODS, "intercept")  # intercept: update's (b); platt: its (c)
MIN_EACH_CLASS = 5  # fewer local events (or non-events) than this: the model keeps its calibrator


@dataclass(frozen=True)
class Recalibrated:
    """The recalibrated models, the lineage written into the new bundle, and where it went."""

    models: list[TaskModel]
    lineage: dict[str, Any]
    path: Path | None = None


def _calibration(
    y: np.ndarray, p: np.ndarray, groups: np.ndarray, n_boot: int, seed: int
) -> dict[str, dict[str, float]]:
    """Intercept and slope with bootstrap CIs; rows of one infusion (a landmark grid) are resampled together."""
    repeated = len(set(groups)) < len(groups)
    return bootstrap_ci(
        y,
        p,
        {"calibration_intercept": calibration_intercept, "calibration_slope": calibration_slope},
        n_boot=n_boot,
        seed=seed,
        groups=groups if repeated else None,
    )


def recalibrate(
    model: str | os.PathLike | Bundle,
    cohort: Cohort,
    method: RecalibrationMethod = "platt",
    n_boot: int = 500,
    seed: int = 0,
) -> Recalibrated:
    """Refit every model's calibrator on ``cohort`` (boosters unchanged) and measure calibration before/after."""
    bundle = load_model(model)
    arrays = cohort_arrays(cohort)
    models, report = [], {}
    for key, task_model in bundle.models.items():
        data = task_model.definition.dataset(cohort, task_model.landmark, arrays)
        y, groups = data.y.astype(int), data.patient_ids.to_numpy()
        entry: dict[str, Any] = {"n": int(y.size), "events": int(y.sum()), "excluded": data.excluded}
        if min(int(y.sum()), int(y.size - y.sum())) < MIN_EACH_CLASS:
            entry["status"] = f"kept the parent calibrator: fewer than {MIN_EACH_CLASS} events or non-events here"
            models.append(task_model)
            report[key] = entry
            continue
        margin = task_model.margin(data.X[task_model.feature_names].to_numpy(dtype=float))
        if method == "intercept":  # slope 1 on the parent's logit: exactly update's option (b)
            refitted = fit_option("intercept", task_model, data.X, y, groups, TrainConfig(), seed, INTERVAL_REFITS)
            calibrator = refitted.calibrator
        else:
            calibrator = fit_calibrator(margin, y, method, n_boot=INTERVAL_REFITS, groups=groups)
        before, after = task_model.calibrator.transform(margin), calibrator.transform(margin)
        entry |= {
            "status": "recalibrated",
            "calibrator": calibrator.to_dict(),
            "before": _calibration(y, before, groups, n_boot, seed),
            "after": _calibration(y, after, groups, n_boot, seed),
        }
        models.append(replace(task_model, calibrator=calibrator))
        report[key] = entry
    lineage = parent_lineage(bundle, cohort) | {
        "parent_mlflow_run_id": bundle.metadata.mlflow_run_id,
        "method": method,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "bands": "kept from the parent bundle (set from the training cohort's event rate)",
        "after_is_in_sample": True,
        "models": report,
    }
    return Recalibrated(models, lineage)


def parent_lineage(bundle: Bundle, cohort: Cohort) -> dict[str, Any]:
    """What every derived bundle records of its parent and the local cohort (recalibrate and update alike)."""
    return {
        "parent_bundle_sha256": bundle.digest,
        "parent_bundle_path": str(bundle.path),
        "parent_created": bundle.metadata.created,
        "training_cohort_fingerprint": bundle.metadata.training_cohort_fingerprint,
        "local_cohort_fingerprint": cohort.fingerprint(),
        "local_cohort_size": int(len(cohort.patients)),
        "local_cohort_synthetic": cohort.synthetic,
    }


def save_child(
    bundle: Bundle,
    models: list[TaskModel],
    out_dir: str | os.PathLike,
    recalibration: dict[str, Any] | None,
    update: dict[str, Any] | None,
) -> Path:
    """Save models derived from ``bundle`` through the one save path: the parent's metadata with these lineage
    fields, no MLflow run of its own, synthetic if either cohort was."""
    local_synthetic = any(bool(v and v.get("local_cohort_synthetic")) for v in (recalibration, update))
    meta = replace(
        bundle.metadata,
        mlflow_run_id=None,
        mlflow_tracking_uri=None,
        synthetic=bundle.metadata.synthetic or local_synthetic,
        recalibration=recalibration,
        update=update,
    )
    return save_bundle(models, out_dir, meta)


def ci_text(metric: dict[str, float | None], spec: str = "+.2f") -> str:
    """A metric with its 95 % CI as the lineage tables show it (``+0.12 (-0.05 to +0.30)``; ``-`` when missing)."""

    def number(value: float | None) -> str:
        return "-" if value is None or not np.isfinite(value) else f"{value:{spec}}"

    return f"{number(metric['value'])} ({number(metric['ci_low'])} to {number(metric['ci_high'])})"


def lineage_rows(lineage: dict[str, Any]) -> list[list[str]]:
    """One row per model: key, n, events, status, intercept and slope before and after (with 95 % CIs)."""
    rows = []
    for key, entry in lineage["models"].items():
        shown = [
            ci_text(entry[when][metric]) if when in entry else "-"
            for when in ("before", "after")
            for metric in ("calibration_intercept", "calibration_slope")
        ]
        rows.append([key, str(entry["n"]), str(entry["events"]), entry["status"], *shown])
    return rows


LINEAGE_HEADER = [
    "model",
    "n",
    "events",
    "status",
    "intercept before",
    "slope before",
    "intercept after",
    "slope after",
]


def write_recalibrated(
    result: Recalibrated, parent: str | os.PathLike | Bundle, out_dir: str | os.PathLike
) -> Recalibrated:
    """Save the recalibrated models as a new bundle (the parent's metadata plus ``recalibration``)."""
    bundle = load_model(parent)
    lineage = json_ready(result.lineage)  # an undefined CI bound (NaN) is stored as null
    if bundle.metadata.recalibration is not None:
        lineage["parent_recalibration"] = bundle.metadata.recalibration
    return replace(result, path=save_child(bundle, result.models, out_dir, lineage, bundle.metadata.update))
