"""Helpers shared by test modules (not fixtures)."""

from __future__ import annotations

import pandas as pd

from crsrisk.cohort import Cohort


def patient_record(cohort: Cohort, patient_id: str) -> dict:
    """One infusion of a cohort in the predict input shape (canonical units)."""
    patient = cohort.patients[cohort.patients["patient_id"] == patient_id].iloc[0]
    record = {k: (None if pd.isna(v) else v.item() if hasattr(v, "item") else v) for k, v in patient.items()}
    rows = lambda t: t[t["patient_id"] == patient_id].drop(columns="patient_id").to_dict(orient="records")  # noqa: E731
    return {"patient": record, "measurements": rows(cohort.measurements), "events": rows(cohort.events)}
