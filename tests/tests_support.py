"""Helpers shared by test modules (not fixtures)."""

from __future__ import annotations

import multiprocessing
from typing import Any, Callable

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
