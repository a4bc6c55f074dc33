"""``crsrisk train``: every task and landmark, cross-validated beside the published scores, tracked in MLflow."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import yaml

from crsrisk.evaluation.published import baselines_for, split_computable
from crsrisk.bundle import TaskModel, save_bundle
from crsrisk.bundle.bands import relative_bands
from crsrisk.bundle.calibration import INTERVAL_REFITS
from crsrisk.bundle.format import BUNDLE_MODEL
from crsrisk.cohort.arrays import cohort_arrays
from crsrisk.cohort.io import load_cohort
from crsrisk.cohort.validated import Cohort
from crsrisk.evaluation.cohort_size import readiness as sample_size_readiness
from crsrisk.evaluation.decision import net_benefit
from crsrisk.evaluation.plots import landmark_plot
from crsrisk.landmarks import Grid
from crsrisk.cohort.population import training_population
from crsrisk.tasks import Dataset, TaskBase, tasks_from_config
from crsrisk.training import artifacts, tracking
from crsrisk.training.config import TrainConfig, load_config
from crsrisk.training.crossval import Split, TooFewEvents, check_events, combine_folds, fold_predictions, outer_splits
from crsrisk.training.estimators import FittedModel, fit_model
from crsrisk.training.executor import run_all
from crsrisk.training.progress import Progress
from crsrisk.evaluation.comparison import dataset_rows
from crsrisk.training.results import attribution_stability, per_repeat_auroc, pooled_predictions
from crsrisk.util.outputs import json_ready
from crsrisk.training.truth import ceiling_probabilities, read_truth


@dataclass
class TrainResult:
    """What one ``train`` call produced: the metrics document, the bundle folder and the MLflow run id."""

    metrics: dict[str, Any]
    out_dir: Path
    bundle_dir: Path | None
    run_id: str
    registered: dict[str, str] = field(default_factory=dict)
    repointed: list[str] = field(default_factory=list)  # registry aliases this run moved from an earlier version


@dataclass
class Planned:
    """One model to train: a task's dataset at a landmark (or grid), its published scores and outer folds."""

    data: Dataset
    baselines: list[str]  # every published score that applies here
    splits: list[Split]

    @property
    def computable(self) -> list[str]:
        """The published scores computable on the whole dataset: the only ones the folds fit."""
        return split_computable(self.baselines, self.data.X)[0]

    @property
    def name(self) -> str:
        """``severe_crs at 36h``."""
        return f"{self.data.task.name} at {self.data.landmark.label}"

    def jobs(self, config: TrainConfig) -> list[tuple[Callable[..., Any], tuple[Any, ...]]]:
        """Every outer fold, then the final model refitted on all rows: independent fits for the executor."""
        d, groups = self.data, self.data.patient_ids.to_numpy()
        folds = [(fold_predictions, (d.X, d.y, groups, split, config, self.computable)) for split in self.splits]
        return folds + [(fit_model, (BUNDLE_MODEL, d.X, d.y, config, config.seed, groups, INTERVAL_REFITS))]


def plan_training(
    cohort: Cohort, tasks: dict[str, TaskBase], config: TrainConfig
) -> tuple[list[Planned], list[dict[str, Any]]]:
    """The dataset and folds of every task and landmark, and the ones skipped for too few events (with why)."""
    arrays = cohort_arrays(cohort)
    planned, skipped = [], []
    for task in tasks.values():
        for landmark in task.landmarks:
            data = task.dataset(cohort, landmark, arrays)
            try:
                splits = outer_splits(data.y, data.patient_ids, data.centres, config)
                check_events(data.y, splits, config, data.patient_ids.to_numpy())
            except TooFewEvents as reason:
                fact, change = _too_few(reason, data, cohort)
                skipped.append(
                    {
                        "task": task.name,
                        "landmark": landmark.label,
                        "n": len(data.y),
                        "events": int(data.y.sum()),
                        "reason": fact,
                        "change": change,
                    }
                )
                continue
            planned.append(Planned(data, baselines_for(task.name, landmark), splits))
    return planned, skipped


def _too_few(reason: TooFewEvents, data: Dataset, cohort: Cohort) -> tuple[str, str]:
    """What was too few and where to change what, plus the infusions left out for short follow-up (a real
    cohort's usual cause), by name."""
    if not data.excluded:
        return reason.fact, reason.change
    labels = data.task.label_table(cohort, data.landmark)
    ids = list(dict.fromkeys(labels.loc[labels["excluded"], "patient_id"]))
    named = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
    return (
        f"{reason.fact}; {data.excluded} (infusion, landmark) pairs were excluded because follow-up ended before "
        f"the outcome window closed without an event (infusions {named})",
        f"{reason.change}; or record followup_hours in the patients table, or shorten the task's horizon_hours "
        "under task_overrides in the experiment file",
    )


def _threshold(config: TrainConfig, y: np.ndarray) -> float:
    return float(y.mean()) if config.threshold == "prevalence" else float(config.threshold)


def evaluate_planned(
    p: Planned, folds: list[tuple[pd.DataFrame, pd.Series | None]], config: TrainConfig, truth: pd.DataFrame | None
) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """metrics.json rows of one trained model beside the published scores (pooled, and per grid landmark)."""
    data = p.data
    oof, importance = combine_folds(folds)
    predictions = pooled_predictions(oof, len(data.y))
    if truth is not None:
        ceiling = ceiling_probabilities(truth, data.task.name, data.landmark, data.X.index)
        if ceiling is not None:
            predictions["generator_ceiling"] = ceiling
    rows = dataset_rows(
        data, predictions, p.baselines, config.bootstrap.n_boot, config.seed, lambda y: _threshold(config, y)
    )
    repeats = per_repeat_auroc(oof, data.y)
    for row in rows:
        if row["landmark"] == data.landmark.label:  # the model's own rows (pooled over a grid)
            row["auroc_per_repeat"] = repeats.get(row["model"], [])
            row["n_features"] = int(data.X.shape[1])
            if row["model"] == BUNDLE_MODEL and not importance.empty:
                row["attribution_stability"] = attribution_stability(importance)
    return rows, predictions


def final_model(data: Dataset, fitted: FittedModel, metrics: list[dict[str, Any]]) -> TaskModel:
    """The XGBoost model refitted (tuned and calibrated) on every row of the dataset, for the bundle."""
    kept = ("auroc", "brier", "calibration_slope")
    pooled = [r for r in metrics if r["landmark"] == data.landmark.label]
    summary = json_ready({r["model"]: {k: r["metrics"][k]["value"] for k in kept} for r in pooled})
    return TaskModel(
        task=data.task.name,
        landmark=data.landmark,
        booster=fitted.model.get_booster(),
        calibrator=fitted.calibrator,
        feature_names=list(data.X.columns),
        bands=relative_bands(data.y),
        metrics=summary,
        label_rule_version=data.task.rule_version,
        task_settings=data.task.describe(),
    )


def train(
    cohort: str | Path | Cohort,
    task: str = "all",
    config: str | Path | TrainConfig | None = None,
    tracking_uri: str | None = None,
    out: str | Path = "runs/latest",
    show_progress: bool = True,
    register: bool = True,
    announce: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train and honestly evaluate every requested task; write metrics, plots and the model bundle to ``out``.

    The fits (outer folds x models, and each final model) run side by side in ``config.workers`` processes
    (default: the cores available), single-threaded each; the numbers do not depend on the number of workers.
    Before any fit, ``announce`` (if given) receives each model's sample-size statement (Riley et al.'s criteria).
    """
    store = tracking.tracking_store(tracking_uri)  # refused before anything is read or written
    loaded = cohort if isinstance(cohort, Cohort) else load_cohort(cohort)
    settings = config if isinstance(config, TrainConfig) else load_config(config)
    if task != "all":
        settings = settings.model_copy(update={"tasks": [task]})
    tasks = tasks_from_config({"tasks": {name: settings.task_overrides.get(name, {}) for name in settings.tasks}})
    planned, skipped = plan_training(loaded, tasks, settings)
    if not planned:
        raise TooFewEvents(
            "\n".join(
                [
                    "no task and landmark could be trained: too few events or non-events for the folds",
                    *(f"- {s['task']} at {s['landmark']}: {s['reason']}" for s in skipped),
                    "what to change:",
                    *(f"- {change}" for change in dict.fromkeys(s["change"] for s in skipped)),
                ]
            )
        )
    readiness = {p.name: sample_size_readiness(p.data.y, p.data.patient_ids, p.data.X.shape[1]) for p in planned}
    for name, ready in readiness.items():
        if announce is not None:
            announce(f"{name}: {ready.statement}")
    truth = read_truth(loaded)
    out_dir = artifacts.prepare_out_dir(Path(out))
    tags = _tags(loaded, settings)
    jobs = [p.jobs(settings) for p in planned]
    owners = [(p, i) for p, model_jobs in zip(planned, jobs) for i in range(len(model_jobs))]
    results: list[dict[str, Any]] = []
    models: list[TaskModel] = []
    with (
        warnings.catch_warnings(),
        Progress(show_progress, total=len(owners)) as progress,
        tracking.parent_run(store, f"train {','.join(tasks)}", tags, _params(settings)) as run_id,
    ):
        # Known dependency noise, silenced at its source modules only (deprecations inside MLflow's own code).
        warnings.filterwarnings("ignore", category=UserWarning, module="xgboost")
        warnings.filterwarnings("ignore", module=r"mlflow(\..*)?")
        done = run_all(
            [job for model_jobs in jobs for job in model_jobs],
            settings.workers,
            lambda i: progress.step(_job_name(*owners[i])),
            settings.dask,
        )
        start = 0
        for p, model_jobs in zip(planned, jobs):
            folds, fitted = done[start : start + len(model_jobs) - 1], done[start + len(model_jobs) - 1]
            start += len(model_jobs)
            progress.note(f"{p.name}: metrics, plots, MLflow")
            rows, predictions = evaluate_planned(p, folds, settings, truth)
            label = p.data.landmark.label
            figures = artifacts.figures(p.data.y, predictions, settings.decision_thresholds)
            if isinstance(p.data.landmark, Grid):
                figures["by_landmark"] = landmark_plot(rows, f"{p.data.task.name}: out-of-fold, by landmark")
            artifacts.save_figures(figures, out_dir / "plots", f"{p.data.task.name}_{label}")
            for row in [r for r in rows if r["landmark"] == label]:
                tracking.log_child(
                    f"{p.data.task.name} {label} {row['model']}",
                    {
                        "task": p.data.task.name,
                        "landmark": label,
                        "model": row["model"],
                        "n": row["n"],
                        "events": row["events"],
                    },
                    artifacts.flat_metrics(row),
                    {**tags, "kind": row["kind"]},
                    figures,
                    stepped=artifacts.by_landmark_metrics(rows, row["model"]),
                )
            results.extend(rows)
            models.append(final_model(p.data, fitted, rows))
            nb = net_benefit(p.data.y, predictions, _decision_grid(settings))
            nb.to_csv(out_dir / f"decision_curve_{p.data.task.name}_{label}.csv", index=False)
        document = artifacts.metrics_document(loaded, settings, tasks, results, run_id, tags)
        document["skipped"] = skipped
        document["sample_size"] = {name: ready.statement for name, ready in readiness.items()}
        document["landmark_counts"] = {
            f"{p.data.task.name}__{p.data.landmark.label}": p.data.counts.to_dict(orient="records") for p in planned
        }
        artifacts.write_json(out_dir / "metrics.json", document)
        (out_dir / "config.yaml").write_text(yaml.safe_dump(settings.model_dump(mode="json"), sort_keys=False))
        (out_dir / "comparison.md").write_text(artifacts.comparison_markdown(results, skipped))
        population = training_population(
            loaded,
            {f"{p.data.task.name}__{p.data.landmark.label}": p.data.X for p in planned},
            {
                f"{p.data.task.name}__{p.data.landmark.label}": p.data.landmark_hours
                for p in planned
                if isinstance(p.data.landmark, Grid)
            },
        )
        bundle_dir = save_bundle(
            models,
            out_dir / "model",
            artifacts.bundle_metadata(loaded, tags, document, store) | {"training_population": population},
        )
        tracking.log_artifact_dir(out_dir, "results")
        registered, repointed = (
            tracking.register_models(bundle_dir, models, synthetic=loaded.synthetic) if register else ({}, [])
        )
    return TrainResult(document, out_dir, bundle_dir, run_id, registered, repointed)


def _job_name(p: Planned, index: int) -> str:
    if index == len(p.splits):
        return f"{p.name}: final model"
    split = p.splits[index]
    return f"{p.name}: repeat {split.repeat + 1} fold {split.fold + 1}"


def _decision_grid(config: TrainConfig) -> np.ndarray:
    start, stop, step = config.decision_thresholds
    return np.round(np.arange(start, stop + step / 2, step), 6)


def _tags(cohort: Cohort, config: TrainConfig) -> dict[str, str]:
    return {
        "cohort_fingerprint": cohort.fingerprint(),
        "synthetic": str(cohort.synthetic).lower(),
        "git_commit": tracking.git_commit(),
        "seed": str(config.seed),
        **{f"version.{k}": v for k, v in tracking.package_versions().items()},
    }


def _params(config: TrainConfig) -> dict[str, Any]:
    return {
        "config": json.dumps(config.model_dump(mode="json"), sort_keys=True)[:6000],
        "cv_scheme": config.cv.scheme,
        "calibration": config.calibration,
        "seed": config.seed,
    }
