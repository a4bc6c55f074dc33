"""What a training run writes: metrics.json, the comparison table, plots, bundle metadata."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence
from urllib.parse import urlsplit, urlunsplit

import numpy as np
from matplotlib.figure import Figure

from crsrisk.bundle.format import BUNDLE_MODEL
from crsrisk.cohort.validated import Cohort
from crsrisk.util import outputs
from crsrisk.util.outputs import json_ready
from crsrisk.evaluation.plots import calibration_plot, decision_curve_plot, roc_plot, save_figure
from crsrisk import notice
from crsrisk.cohort.summary import cohort_section
from crsrisk.tasks import TaskBase
from crsrisk.training.config import TrainConfig

# Tracking stores every machine can reach; anything else (sqlite:///..., file paths) lives where training ran.
SERVER_SCHEMES = ("http", "https", "postgresql", "mysql", "mssql", "databricks")


def prepare_out_dir(path: Path) -> Path:
    """Create the output folder; an earlier run there is moved aside to ``<out>.previous-<UTC time>``, never deleted."""
    if path.exists() and any(path.iterdir()):
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        path.rename(path.with_name(f"{path.name}.previous-{stamp}"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def figures(
    y: np.ndarray, predictions: Mapping[str, np.ndarray], thresholds: tuple[float, float, float]
) -> dict[str, Figure]:
    """ROC, reliability and decision-curve plots comparing every model on one task and landmark."""
    start, stop, step = thresholds
    grid = np.round(np.arange(start, stop + step / 2, step), 6)
    return {
        "roc": roc_plot(y, predictions),
        "calibration": calibration_plot(y, predictions),
        "decision_curve": decision_curve_plot(y, predictions, grid),
    }


def save_figures(figs: Mapping[str, Figure], folder: Path, prefix: str) -> None:
    """Write each figure as ``<prefix>_<name>.png``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, fig in figs.items():
        save_figure(fig, folder / f"{prefix}_{name}.png")


def flat_metrics(row: Mapping[str, Any]) -> dict[str, float]:
    """MLflow metric names: ``auroc``, ``auroc_ci_low``, ``auroc_ci_high`` and so on."""
    flat = {}
    for name, values in row["metrics"].items():
        flat[name] = values["value"]
        flat[f"{name}_ci_low"] = values["ci_low"]
        flat[f"{name}_ci_high"] = values["ci_high"]
    return flat


def by_landmark_metrics(rows: Sequence[Mapping[str, Any]], model: str) -> dict[str, dict[float, float]]:
    """A grid model's per-landmark metrics for MLflow's stepped metrics: ``{"auroc_by_landmark": {hour: value}}``."""
    out: dict[str, dict[float, float]] = {}
    for row in rows:
        if row["model"] == model and row.get("scope") == "landmark" and row.get("landmark_hours") is not None:
            for name in ("auroc", "brier", "calibration_slope"):
                out.setdefault(f"{name}_by_landmark", {})[row["landmark_hours"]] = row["metrics"][name]["value"]
    return out


def metrics_document(
    cohort: Cohort,
    config: TrainConfig,
    tasks: Mapping[str, TaskBase],
    results: list[dict[str, Any]],
    run_id: str,
    tags: Mapping[str, str],
) -> dict[str, Any]:
    """The metrics.json document other tools read: cohort fingerprint, task definitions, result rows."""
    return {
        "cohort": cohort_section(cohort),
        "tasks": {name: task.describe() for name, task in tasks.items()},
        "config": config.model_dump(mode="json"),
        "mlflow_run_id": run_id,
        "git_commit": tags.get("git_commit"),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "disclaimer": notice.banner(cohort.synthetic),  # the model trained on it is as synthetic as it
        "results": results,
    }


def write_json(path: Path, document: Any) -> None:
    """Write JSON atomically (temp file + rename) so a crash never leaves half a file."""
    outputs.write_json(path, document)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def interval_text(low: float | None, high: float | None) -> str:
    """A bootstrap interval as reports show it (``0.712-0.801``), or "CI not computable" (a resample lacked a class)
    - never "nan-nan"."""
    return "CI not computable" if _missing(low) or _missing(high) else f"{low:.3f}-{high:.3f}"


def _ci(metric: Mapping[str, Any]) -> str:
    value, low, high = (metric.get(k) for k in ("value", "ci_low", "ci_high"))
    if _missing(value):
        return "-"
    return f"{value:.3f} ({interval_text(low, high)})"


def comparison_rows(results: list[dict[str, Any]]) -> list[list[str]]:
    """Rows of the comparison table: task, landmark, model, kind, n/events, AUROC, AUPRC, Brier, slope, verdict."""
    rows = []
    for r in results:
        verdict = ""
        if "beats_best_published" in r:
            verdict = (
                f"{r.get('comparison', 'beats' if r['beats_best_published'] else 'does NOT beat')} "
                f"{r['best_published']}"
            )
        m = r["metrics"]
        rows.append(
            [
                r["task"],
                r["landmark"],
                r["model"],
                r["kind"],
                f"{r['n']}/{r['events']}",
                _ci(m["auroc"]),
                _ci(m["auprc"]),
                _ci(m["brier"]),
                _ci(m["calibration_slope"]),
                verdict,
            ]
        )
    listed = set()
    for r in results:  # each score whose inputs are all missing, once per task and landmark, never scored
        for name in r.get("not_computable", ()):
            if (r["task"], r["landmark"], name) not in listed:
                listed.add((r["task"], r["landmark"], name))
                rows.append(
                    [
                        r["task"],
                        r["landmark"],
                        name,
                        "published",
                        "-",
                        "not computable",
                        "-",
                        "-",
                        "-",
                        "inputs all missing: not scored",
                    ]
                )
    return rows


COMPARISON_HEADER = [
    "task",
    "landmark",
    "model",
    "kind",
    "n/events",
    "AUROC (95% CI)",
    "AUPRC (95% CI)",
    "Brier (95% CI)",
    "calibration slope (95% CI)",
    "vs best published score",
]


def landmark_lines(results: list[dict[str, Any]], model: str = BUNDLE_MODEL) -> list[str]:
    """One line per landmark super-model: its AUROC at each grid landmark (the full rows are in metrics.json)."""
    by_task: dict[str, list[str]] = {}
    for r in results:
        if r.get("scope") == "landmark" and "model_landmark" in r and r["model"] == model:
            value = r["metrics"]["auroc"]["value"]
            by_task.setdefault(r["task"], []).append(f"{r['landmark']} {'-' if value is None else f'{value:.2f}'}")
    return [f"{task} ({model}) AUROC by landmark: " + ", ".join(parts) for task, parts in by_task.items()]


def skipped_lines(skipped: list[dict[str, Any]]) -> list[str]:
    """One sentence per task/landmark that was not trained, and why."""
    return [
        f"{s['task']} at {s['landmark']} not trained ({s['n']} infusions): {s['reason']}"
        + (f"; to change: {s['change']}" if s.get("change") else "")
        for s in skipped
    ]


def comparison_markdown(results: list[dict[str, Any]], skipped: Sequence[dict[str, Any]] = ()) -> str:
    """The comparison table as Markdown (committed for the headline experiment), then what was skipped."""
    lines = ["| " + " | ".join(COMPARISON_HEADER) + " |", "|" + "---|" * len(COMPARISON_HEADER)]
    lines += ["| " + " | ".join(row) + " |" for row in comparison_rows(results)]
    lines += [""] + [f"- {line}" for line in skipped_lines(list(skipped))] if skipped else []
    return "\n".join(lines) + "\n"


def shared_tracking_uri(uri: str | None) -> str | None:
    """``uri`` without its password when it names a tracking server or database others can reach; None for a
    local store (SQLite file, folder), which exists only on the machine that trained the model."""
    if not uri:
        return None
    parts = urlsplit(uri)
    if parts.scheme.split("+")[0].lower() not in SERVER_SCHEMES:
        return None
    host = parts.netloc.rpartition("@")[2]
    user = parts.username
    return urlunsplit(parts._replace(netloc=f"{user}@{host}" if user else host))


def bundle_metadata(
    cohort: Cohort, tags: Mapping[str, str], document: Mapping[str, Any], tracking_uri: str
) -> dict[str, Any]:
    """What the bundle says about where it came from, including the full cross-validated metrics document.
    The tracking store is named only when it is a shared server; a local one is recorded as just that."""
    shared = shared_tracking_uri(tracking_uri)
    return {
        "training_cohort_fingerprint": cohort.fingerprint(),
        "training_cohort_size": int(len(cohort.patients)),
        "synthetic": cohort.synthetic,
        "not_for_clinical_use": True,
        "disclaimer": document["disclaimer"],
        "git_commit": tags.get("git_commit"),
        "mlflow_run_id": document["mlflow_run_id"],
        "mlflow_tracking_uri": shared,
        "mlflow_tracking_store": "server" if shared else "local",
        "training_metrics": json_ready(dict(document)),
    }
