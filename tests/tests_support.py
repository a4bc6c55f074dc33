"""Helpers shared by test modules (not fixtures)."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd

from crsrisk.cohort.validated import Cohort


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

    return predict_cohort(cohort, model).sort_values(["patient_id", "model_key", "landmark_hours"]).reset_index(drop=True)


def assert_same_tables(a: Cohort, b: Cohort) -> None:
    """The three canonical tables hold the same rows (in any order)."""
    for name in ("patients", "measurements", "events"):
        x, y = getattr(a, name), getattr(b, name)
        pd.testing.assert_frame_equal(x.sort_values(list(x.columns)).reset_index(drop=True),
                                      y.sort_values(list(y.columns)).reset_index(drop=True))


def free_port() -> int:
    """A TCP port on the loopback address that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def venv_env(**extra: str) -> dict[str, str]:
    """This environment with the venv's ``bin`` first on PATH (``mlflow models serve`` runs ``uvicorn``)."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}", **extra}


@contextlib.contextmanager
def running(command: list[str], ready_url: str, log: Path, env: dict[str, str] | None = None,
            timeout: float = 120) -> Iterator[subprocess.Popen]:
    """Start a server with its output in ``log`` (a pipe would fill and stall it), wait until ``ready_url``
    answers, and stop it on the way out; fail with the log's tail if it dies or never answers."""
    with open(log, "wb") as sink:
        process = subprocess.Popen(command, env=env or venv_env(), stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(ready_url, timeout=2)
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"{command[:4]} did not answer {ready_url}: "
                                         f"{log.read_text(errors='replace')[-2000:]}") from None
                time.sleep(0.5)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(30)


def served_probabilities(tracking_uri: str, model_uri: str, X: pd.DataFrame, log: Path) -> np.ndarray:
    """``mlflow models serve`` the registered model from ``tracking_uri`` on a loopback port and return the
    probabilities it answers for the rows of ``X``."""
    port = free_port()
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri, "--env-manager", "local",
               "-h", "127.0.0.1", "-p", str(port)]
    with running(command, f"http://127.0.0.1:{port}/ping", log, env=venv_env(MLFLOW_TRACKING_URI=tracking_uri)):
        payload = {"dataframe_split": {"columns": list(X.columns),
                                       "data": [[None if np.isnan(v) else v for v in row] for row in X.to_numpy()]}}
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=json.dumps(payload).encode(),
                                         headers={"Content-Type": "application/json"})
        answer = json.loads(urllib.request.urlopen(request, timeout=30).read())
    return np.array([row["probability"] for row in answer["predictions"]])
