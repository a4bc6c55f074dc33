"""``LogTransform``: the log scale that linear models read some features on, as an sklearn transformer."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted


class LogTransform(TransformerMixin, BaseEstimator):
    """log1p of the named columns (values below 0 are clipped to 0) for linear models; others pass through."""

    def __init__(self, columns: tuple[str, ...] | list[str] = ()) -> None:
        self.columns = columns

    def fit(self, X: pd.DataFrame, y: Any = None) -> "LogTransform":
        """Remember the input columns and which of them to transform."""
        names = list(X.columns) if isinstance(X, pd.DataFrame) else [f"x{i}" for i in range(np.shape(X)[1])]
        self.feature_names_in_ = np.asarray(names, dtype=object)
        self.n_features_in_ = len(names)
        self.positions_ = [i for i, name in enumerate(names) if name in set(self.columns)]
        return self

    def transform(self, X: Any) -> np.ndarray:
        """A float array with the chosen columns log-transformed."""
        check_is_fitted(self, "positions_")
        values = np.array(X, dtype=float, copy=True)
        values[:, self.positions_] = np.log1p(np.clip(values[:, self.positions_], 0, None))
        return values

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Same names as the input."""
        check_is_fitted(self, "positions_")
        return self.feature_names_in_.copy()
