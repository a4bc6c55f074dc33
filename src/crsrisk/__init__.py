"""crsrisk: early prediction of CAR T-cell therapy complications (research software, not for clinical use).

Public entry points are imported lazily so that ``import crsrisk`` stays cheap on the clinician's path.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "load_cohort": "crsrisk.cohort.io",
    "write_cohort": "crsrisk.cohort.io",
    "Cohort": "crsrisk.cohort",
    "CohortValidationError": "crsrisk.errors",
    "simulate_cohort": "crsrisk.simulate",
    "predict": "crsrisk.scoring",
    "load_model": "crsrisk.scoring",
    "predict_cohort": "crsrisk.scoring",
    "risk_trajectory": "crsrisk.scoring.trajectory",
    "train": "crsrisk.training.run",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'crsrisk' has no attribute {name!r}")
