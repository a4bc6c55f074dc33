"""``LandmarkFeatures``: a task's risk set at a landmark and its features, as an sklearn transformer over a ``Cohort``."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from crsrisk.cohort.arrays import cohort_arrays
from crsrisk.cohort.validated import Cohort
from crsrisk.features.build import build_features
from crsrisk.features.spec import feature_names
from crsrisk.landmarks import parse_landmark
from crsrisk.tasks.definitions import get_task


class LandmarkFeatures(TransformerMixin, BaseEstimator):
    """Cohort -> one row per infusion in ``task``'s risk set at ``landmark`` (index patient_id; a grid gives one row
    per infusion per grid landmark).

    Encodings use the contract's fixed vocabularies, so fitting learns no statistics from the data: ``fit``
    only fixes the output columns. That keeps the transformer leakage-free by construction.
    """

    def __init__(self, task: Any = "severe_crs", landmark: Any = 36.0) -> None:
        self.task = task
        self.landmark = landmark

    def fit(self, X: Cohort, y: Any = None) -> "LandmarkFeatures":
        """Fix the output columns for this task and landmark."""
        if not isinstance(X, Cohort):
            raise TypeError(f"LandmarkFeatures.fit expects a crsrisk Cohort, got {type(X).__name__}")
        self.feature_names_out_ = np.asarray(feature_names(parse_landmark(self.landmark).window), dtype=object)
        self.n_features_out_ = len(self.feature_names_out_)
        return self

    def transform(self, X: Cohort) -> pd.DataFrame:
        """The feature matrix of the infusions at risk at the landmark."""
        check_is_fitted(self, "feature_names_out_")
        if not isinstance(X, Cohort):
            raise TypeError(f"LandmarkFeatures.transform expects a crsrisk Cohort, got {type(X).__name__}")
        arrays = cohort_arrays(X)
        landmarks = get_task(self.task).risk_set(arrays, self.landmark)
        window = parse_landmark(self.landmark).window
        return build_features(X, landmarks, window=window, arrays=arrays)[list(self.feature_names_out_)]

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Names of the output columns (see ``crsrisk.features.feature_info`` for labels and units)."""
        check_is_fitted(self, "feature_names_out_")
        return self.feature_names_out_.copy()
