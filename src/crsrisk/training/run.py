"""``crsrisk train``: every task and landmark, cross-validated beside the published scores, tracked in MLflow."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from crsrisk.baselines import baselines_for
from crsrisk.bundle import TaskModel, save_bundle
from crsrisk.cohort.validated import Cohort
from crsrisk.cohort.io import load_cohort
from crsrisk.evaluation.decision import net_benefit
from crsrisk.features import LandmarkFeatures
from crsrisk.tasks import Task, label_table, landmark_label, tasks_from_config
from crsrisk.training import artifacts, tracking
from crsrisk.training.config import TrainConfig, load_config
from crsrisk.training.crossval import TooFewEvents, check_events, out_of_fold, outer_splits
from crsrisk.training.estimators import fit_model
from crsrisk.training.progress import Progress
from crsrisk.training.results import attribution_stability, per_repeat_auroc, pooled_predictions, result_rows
from crsrisk.training.truth import ceiling_probabilities, read_truth

BAND_FACTORS = (0.5, 2.0)  # risk bands: low below half the cohort's event rate, high above twice it


@dataclass
class Dataset:
    """One task at one landmark: the feature matrix, labels and bookkeeping of who was left out."""

    task: Task
    landmark: Any
    X: pd.DataFrame
    y: np.ndarray
    patient_ids: pd.Series
    centres: pd.Series
    risk_set: int
    excluded: int


@dataclass
class TrainResult:
    """What one ``train`` call produced: the metrics document, the bundle folder and the MLflow run id."""

    metrics: dict[str, Any]
    out_dir: Path
    bundle_dir: Path | None
    run_id: str
    registered: dict[str, str] = field(default_factory=dict)


def build_dataset(cohort: Cohort, task: Task, landmark: Any) -> Dataset:
    """Labels (excluded infusions dropped and counted) joined to leakage-free landmark features."""
    labels = label_table(cohort, task, landmark)
    kept = labels[~labels["excluded"]].set_index("patient_id")
    X = LandmarkFeatures(task=task, landmark=landmark).fit(cohort).transform(cohort)
    X = X.loc[X.index.intersection(kept.index)]
    centres = cohort.patients.set_index("patient_id")["center"].reindex(X.index)
    return Dataset(task, landmark, X.astype("float64"), kept.loc[X.index, "label"].astype(int).to_numpy(),
                   pd.Series(X.index, index=X.index), centres, int(len(labels)), int(labels["excluded"].sum()))


def _threshold(config: TrainConfig, y: np.ndarray) -> float:
    return float(y.mean()) if config.threshold == "prevalence" else float(config.threshold)


def _bands(y: np.ndarray) -> dict[str, float]:
    rate = float(y.mean())
    return {"low": round(rate * BAND_FACTORS[0], 4), "high": round(min(rate * BAND_FACTORS[1], 0.9), 4)}


def evaluate_dataset(data: Dataset, config: TrainConfig, truth: pd.DataFrame | None,
                     progress: Progress) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """Cross-validate the models and published scores on one dataset and return metrics.json rows."""
    baselines = baselines_for(data.task.name, data.landmark)
    splits = outer_splits(data.y, data.patient_ids, data.centres, config)
    check_events(data.y, splits, config)
    progress.add(len(splits) * (len(config.models) + len(baselines)))
    oof, importance = out_of_fold(data.X, data.y, splits, config, baselines, progress.step)
    predictions = pooled_predictions(oof, len(data.y))
    if truth is not None:
        ceiling = ceiling_probabilities(truth, data.task.name, data.landmark, data.X.index)
        if ceiling is not None:
            predictions["generator_ceiling"] = ceiling
    repeats = per_repeat_auroc(oof, data.y)
    rows = result_rows(data.task.name, data.landmark, data.y, predictions, _threshold(config, data.y),
                       config.bootstrap.n_boot, config.seed, set(baselines),
                       {"risk_set": data.risk_set, "excluded": data.excluded,
                        "label_rule_version": data.task.rule_version})
    for row in rows:
        row["auroc_per_repeat"] = repeats.get(row["model"], [])
        row["n_features"] = int(data.X.shape[1])
        if row["model"] == "xgboost" and not importance.empty:
            row["attribution_stability"] = attribution_stability(importance)
    return rows, predictions


def final_model(data: Dataset, config: TrainConfig, metrics: list[dict[str, Any]]) -> TaskModel:
    """The XGBoost model refitted (tuned and calibrated) on every infusion of the dataset, for the bundle."""
    fitted = fit_model("xgboost", data.X, data.y, config, config.seed)
    kept = ("auroc", "brier", "calibration_slope")
    summary = artifacts.json_ready({r["model"]: {k: r["metrics"][k]["value"] for k in kept} for r in metrics})
    return TaskModel(task=data.task.name, landmark=data.landmark, booster=fitted.model.get_booster(),
                     calibrator=fitted.calibrator, feature_names=list(data.X.columns), bands=_bands(data.y),
                     metrics=summary, label_rule_version=data.task.rule_version,
                     task_settings=data.task.describe())


def train(cohort: str | Path | Cohort, task: str = "all", config: str | Path | TrainConfig | None = None,
          tracking_uri: str | None = None, out: str | Path = "runs/latest", show_progress: bool = True,
          register: bool = True) -> TrainResult:
    """Train and honestly evaluate every requested task; write metrics, plots and the model bundle to ``out``."""
    loaded = cohort if isinstance(cohort, Cohort) else load_cohort(cohort)
    settings = config if isinstance(config, TrainConfig) else load_config(config)
    if task != "all":
        settings = settings.model_copy(update={"tasks": [task]})
    tasks = tasks_from_config({"tasks": {name: settings.task_overrides.get(name, {}) for name in settings.tasks}})
    truth = read_truth(loaded)
    out_dir = artifacts.prepare_out_dir(Path(out))
    tags = _tags(loaded, settings)
    results: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    models: list[TaskModel] = []
    with warnings.catch_warnings(), Progress(show_progress) as progress, \
            tracking.parent_run(tracking_uri, f"train {','.join(tasks)}", tags, _params(settings)) as run_id:
        # Known dependency noise, silenced at its source modules only (deprecations inside MLflow's own code).
        warnings.filterwarnings("ignore", category=UserWarning, module="xgboost")
        warnings.filterwarnings("ignore", module=r"mlflow(\..*)?")
        for task_def in tasks.values():
            for landmark in task_def.landmarks:
                data = build_dataset(loaded, task_def, landmark)
                try:
                    rows, predictions = evaluate_dataset(data, settings, truth, progress)
                except TooFewEvents as reason:
                    skipped.append({"task": task_def.name, "landmark": landmark_label(landmark), "n": len(data.y),
                                     "events": int(data.y.sum()), "reason": str(reason)})
                    continue
                figures = artifacts.figures(data.y, predictions, settings.decision_thresholds)
                artifacts.save_figures(figures, out_dir / "plots", f"{task_def.name}_{rows[0]['landmark']}")
                for row in rows:
                    tracking.log_child(f"{task_def.name} {row['landmark']} {row['model']}",
                                       {"task": task_def.name, "landmark": row["landmark"], "model": row["model"],
                                        "n": row["n"], "events": row["events"]},
                                       artifacts.flat_metrics(row), {**tags, "kind": row["kind"]}, figures)
                results.extend(rows)
                progress.note(f"{task_def.name} at {rows[0]['landmark']}: final model")
                models.append(final_model(data, settings, rows))
                nb = net_benefit(data.y, predictions, _decision_grid(settings))
                nb.to_csv(out_dir / f"decision_curve_{task_def.name}_{rows[0]['landmark']}.csv", index=False)
        if not models:
            raise TooFewEvents("no task and landmark could be trained: " + "; ".join(
                f"{s['task']} at {s['landmark']}: {s['reason']}" for s in skipped))
        document = artifacts.metrics_document(loaded, settings, tasks, results, run_id, tags)
        document["skipped"] = skipped
        artifacts.write_json(out_dir / "metrics.json", document)
        (out_dir / "config.yaml").write_text(yaml.safe_dump(settings.model_dump(mode="json"), sort_keys=False))
        (out_dir / "comparison.md").write_text(artifacts.comparison_markdown(results, skipped))
        bundle_dir = save_bundle(models, out_dir / "model", artifacts.bundle_metadata(
            loaded, tags, document, tracking_uri or tracking.DEFAULT_TRACKING_URI))
        tracking.log_artifact_dir(out_dir, "results")
        registered = tracking.register_models(bundle_dir, models) if register else {}
    return TrainResult(document, out_dir, bundle_dir, run_id, registered)


def _decision_grid(config: TrainConfig) -> np.ndarray:
    start, stop, step = config.decision_thresholds
    return np.round(np.arange(start, stop + step / 2, step), 6)


def _tags(cohort: Cohort, config: TrainConfig) -> dict[str, str]:
    return {"cohort_fingerprint": cohort.fingerprint(), "synthetic": str(cohort.synthetic).lower(),
            "git_commit": tracking.git_commit(), "seed": str(config.seed),
            **{f"version.{k}": v for k, v in tracking.package_versions().items()}}


def _params(config: TrainConfig) -> dict[str, Any]:
    return {"config": json.dumps(config.model_dump(mode="json"), sort_keys=True)[:6000],
            "cv_scheme": config.cv.scheme, "calibration": config.calibration, "seed": config.seed}
