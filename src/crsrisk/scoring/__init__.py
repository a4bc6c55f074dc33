"""The clinician's path: load a verified bundle, plan who is at risk, score a patient or a cohort."""

from crsrisk.scoring.cohort import SCORE_COLUMNS, CohortAttributions, cohort_attributions, predict_cohort
from crsrisk.scoring.load import DEFAULT_MODEL, load_for_research, load_model
from crsrisk.scoring.patient import PredictionResult, TaskPrediction, predict

__all__ = [
    "DEFAULT_MODEL",
    "SCORE_COLUMNS",
    "CohortAttributions",
    "PredictionResult",
    "TaskPrediction",
    "cohort_attributions",
    "load_for_research",
    "load_model",
    "predict",
    "predict_cohort",
]
