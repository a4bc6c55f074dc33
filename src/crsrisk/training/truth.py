"""The generator's truth file: each synthetic infusion's true outcome probability, i.e. the ceiling.

Only a synthetic cohort has one (``truth.csv`` beside the contract tables, never read as data);
a real cohort has none and its reports simply show no ceiling.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crsrisk.cohort.io import TRUTH_FILE
from crsrisk.cohort.validated import Cohort
from crsrisk.landmarks import Hours


def read_truth(cohort: Cohort) -> pd.DataFrame | None:
    """The truth table of a synthetic cohort loaded from a folder, indexed by patient_id, else None."""
    source = cohort.metadata.get("source")
    if not cohort.synthetic or source is None or not (Path(source) / TRUTH_FILE).exists():
        return None
    return pd.read_csv(Path(source) / TRUTH_FILE, dtype={"patient_id": str}).set_index("patient_id")


def truth_column(task: str, landmark: Any) -> str:
    """Which truth column holds the true probability of ``task``'s label at ``landmark``."""
    if task == "severe_crs" and isinstance(landmark, Hours) and landmark.hours > 0:
        return "p_severe_crs_after_36h"
    return f"p_{task}"


def ceiling_probabilities(truth: pd.DataFrame, task: str, landmark: Any, patient_ids: pd.Index) -> np.ndarray | None:
    """True probabilities for the given infusions, or None when the truth file lacks that target."""
    column = truth_column(task, landmark)
    if column not in truth.columns:
        return None
    return truth[column].reindex(patient_ids).to_numpy(dtype=float)
