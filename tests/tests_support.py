"""Helpers shared by test modules (not fixtures)."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd
import pytest

from crsrisk.bundle import TaskModel, save_bundle
from crsrisk.bundle.calibration import Calibrator
from crsrisk.cohort.population import training_population
from crsrisk.cohort.validated import Cohort
from crsrisk.service.local import free_port, local_server
from crsrisk.tasks import TaskBase

# Debian's chromium (scripts/test.sh installs it), driven by playwright without a browser download.
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian chromium not installed (scripts/test.sh installs it)"
)
# Headless, no sandbox (root in CI) and nothing fetched but what a page asks for.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# The columns of `crsrisk predict COHORT --out scores.csv`, in order: the contract, written out (not read from src).
BATCH_CSV_COLUMNS = ["patient_id", "task", "landmark_hours", "horizon_hours", "probability", "band", "status", "reason"]
# (task, landmark) of every model of the default tasks: what a run or an evaluation either gives or says it skipped.
DEFAULT_MODELS = {
    ("severe_crs", "0h"),
    ("severe_crs", "36h"),
    ("icans", "0h"),
    ("icans", "36h"),
    ("severe_crs_dynamic", "every12h_0-168h"),
    ("icans_dynamic", "every12h_0-168h"),
    ("toci_refractory", "first_tocilizumab"),
}

Fit = Callable[[pd.DataFrame, np.ndarray], tuple[Any, Calibrator]]  # X, y -> (booster, calibrator)


def fitted_bundle(
    cohort: Cohort,
    out: Path,
    tasks: Iterable[TaskBase],
    fit: Fit,
    fingerprint: str,
    by_hour: bool = False,
    synthetic: bool = True,
) -> Path:
    """A bundle of every task's landmark models fitted directly by ``fit`` (no tuning, placeholder bands and
    metrics), so tests stay fast; ``by_hour`` adds the training population's per-landmark-hour bins;
    ``synthetic=False`` marks it trained on real data."""
    models, inputs, hours = [], {}, {}
    for task in tasks:
        for landmark in task.landmarks:
            data = task.dataset(cohort, landmark)
            key = f"{task.name}__{landmark.label}"
            inputs[key], hours[key] = data.X, data.landmark_hours
            booster, calibrator = fit(data.X, data.y)
            models.append(
                TaskModel(
                    task.name,
                    landmark,
                    booster,
                    calibrator,
                    list(data.X.columns),
                    {"low": 0.1, "high": 0.3},
                    {"xgboost": {"auroc": 0.0}},
                    task.rule_version,
                    task.describe(),
                )
            )
    population = training_population(cohort, inputs, hours) if by_hour else training_population(cohort, inputs)
    return save_bundle(
        models,
        out,
        {
            "synthetic": synthetic,
            "not_for_clinical_use": True,
            "training_cohort_fingerprint": fingerprint,
            "training_population": population,
        },
    )


def patient_record(cohort: Cohort, patient_id: str) -> dict:
    """One infusion of a cohort in the predict input shape (canonical units)."""
    patient = cohort.patients[cohort.patients["patient_id"] == patient_id].iloc[0]
    record = {k: (None if pd.isna(v) else v.item() if hasattr(v, "item") else v) for k, v in patient.items()}
    rows = lambda t: t[t["patient_id"] == patient_id].drop(columns="patient_id").to_dict(orient="records")  # noqa: E731
    return {"patient": record, "measurements": rows(cohort.measurements), "events": rows(cohort.events)}


def run_in_processes(target: Callable[..., None], arguments: list[tuple[Any, ...]], timeout: float) -> None:
    """Run ``target`` once per argument tuple, each in its own spawned process, all at once; all must succeed."""
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=target, args=args) for args in arguments]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout)
    assert [worker.exitcode for worker in workers] == [0] * len(workers)


def simulated_tables(n: int, seed: int) -> tuple[dict[str, pd.DataFrame], Cohort]:
    """A synthetic cohort's tables as the centres reported them (mixed units) and its validated form."""
    from crsrisk.cohort.validate import validate_tables
    from crsrisk.simulate import simulate_cohort

    sim = simulate_cohort(n=n, seed=seed)
    tables = {"patients": sim.patients, "measurements": sim.measurements, "events": sim.events}
    return tables, validate_tables(tables)


def sorted_scores(cohort: Cohort, model: Any) -> pd.DataFrame:
    """``predict_cohort`` in a fixed row order, to compare two cohorts' predictions."""
    from crsrisk.scoring import predict_cohort

    return (
        predict_cohort(cohort, model).sort_values(["patient_id", "model_key", "landmark_hours"]).reset_index(drop=True)
    )


def assert_same_tables(a: Cohort, b: Cohort) -> None:
    """The three canonical tables hold the same rows (in any order)."""
    for name in ("patients", "measurements", "events"):
        x, y = getattr(a, name), getattr(b, name)
        pd.testing.assert_frame_equal(
            x.sort_values(list(x.columns)).reset_index(drop=True), y.sort_values(list(y.columns)).reset_index(drop=True)
        )


def venv_env(**extra: str) -> dict[str, str]:
    """This environment with the venv's ``bin`` first on PATH (``mlflow models serve`` runs ``uvicorn``)."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}", **extra}


def mlflow_serve_command(model_uri: str, port: int) -> list[str]:
    """``mlflow models serve`` of ``model_uri`` in this environment (no new virtualenv) on a loopback ``port``; run it
    with ``venv_env`` (it starts ``uvicorn`` from PATH) and ``MLFLOW_TRACKING_URI`` for a registry URI."""
    return [
        sys.executable,
        "-m",
        "mlflow",
        "models",
        "serve",
        "-m",
        model_uri,
        "--env-manager",
        "local",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
    ]


def served_probabilities(tracking_uri: str, model_uri: str, X: pd.DataFrame, log: Path) -> np.ndarray:
    """``mlflow models serve`` the registered model from ``tracking_uri`` on a loopback port and return the
    probabilities it answers for the rows of ``X``."""
    port = free_port()
    with local_server(
        mlflow_serve_command(model_uri, port),
        f"http://127.0.0.1:{port}/ping",
        env=venv_env(MLFLOW_TRACKING_URI=tracking_uri),
        log=log,
    ):
        payload = {
            "dataframe_split": {
                "columns": list(X.columns),
                "data": [[None if np.isnan(v) else v for v in row] for row in X.to_numpy()],
            }
        }
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json"},
        )
        answer = json.loads(urllib.request.urlopen(request, timeout=30).read())
    return np.array([row["probability"] for row in answer["predictions"]])


def launch_chromium(playwright: Any) -> Any:
    """Debian chromium, headless, launched by a ``sync_playwright()`` context (``CHROMIUM_ARGS``)."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def service_client(bundle: Any, tmp_path: Path, token: str | None = None) -> Any:
    """The service app in-process (FastAPI's TestClient), auditing to ``tmp_path / "audit.jsonl"``."""
    from fastapi.testclient import TestClient

    from crsrisk.service import create_app

    return TestClient(create_app(model=bundle, audit_log=tmp_path / "audit.jsonl", token=token))


def serve_command(model: Path, port: int, audit_log: Path) -> list[str]:
    """``crsrisk serve`` of ``model`` with two worker processes on a loopback ``port``, auditing to ``audit_log``."""
    return [
        sys.executable,
        "-m",
        "crsrisk.cli",
        "serve",
        "--model",
        str(model),
        "--port",
        str(port),
        "--audit-log",
        str(audit_log),
        "--workers",
        "2",
    ]
