"""Published clinical scores as classifiers over the feature matrix, for side-by-side comparison.

Each score is computed exactly as published from the landmark features; to report Brier score and
calibration on the same footing as the models, its raw value is mapped to a probability by a one-variable
logistic fit on the training fold only (AUROC is that of the raw score). Scores whose published
coefficients we do not hold (Teachey 2016) are refitted inside the training fold on the published inputs.
A missing input makes a threshold rule "not positive" and is imputed with the training-fold median for
a continuous score.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.utils.validation import check_is_fitted

from crsrisk.tasks import FIRST_TOCILIZUMAB

HAY_FEVER_C = 38.9  # Hay et al., Blood 2017: fever >= 38.9 C within 36 h (thresholds widely cited; to confirm tree)
HAY_MCP1 = 1343.5  # pg/mL, same source
GUST_IL6 = 16.0  # pg/mL, Gust et al., Cancer Discov 2017 (to confirm)
EASIX_CUTOFF = 4.67  # Korell et al., Front Immunol 2022 (confirmed); reported, the score itself is continuous


def _log(x: pd.Series) -> pd.Series:
    return np.log(x.where(x > 0))


def _hay(X: pd.DataFrame) -> pd.Series:
    return ((X["temperature_max"] >= HAY_FEVER_C) & (X["mcp1_max"] >= HAY_MCP1)).astype(float)


def _gust(X: pd.DataFrame) -> pd.Series:
    return ((X["temperature_max"] >= HAY_FEVER_C) & (X["il6_max"] >= GUST_IL6) & (X["mcp1_max"] >= HAY_MCP1)).astype(float)


def _m_easix(X: pd.DataFrame) -> pd.Series:
    column = "m_easix_last" if "m_easix_last" in X.columns else "m_easix_baseline"
    return _log(X[column])


@dataclass(frozen=True)
class BaselineSpec:
    """A published score: where it comes from, where it applies, what it needs and how it is computed."""

    name: str
    citation: str
    status: str
    applies: Mapping[str, tuple[Any, ...]]  # task -> landmarks
    columns: tuple[str, ...]
    kind: str  # "rule" (binary), "score" (continuous), "refit" (logistic on published inputs)
    score: Callable[[pd.DataFrame], pd.Series] | None = None


BASELINES: Mapping[str, BaselineSpec] = MappingProxyType({
    "hay2017": BaselineSpec("hay2017", "Hay et al., Blood 2017;130:2295", "thresholds confirmed; exact tree to confirm",
                            {"severe_crs": (36.0,)}, ("temperature_max", "mcp1_max"), "rule", _hay),
    "teachey2016": BaselineSpec("teachey2016", "Teachey et al., Cancer Discov 2016;6:664 (refitted: published "
                                "coefficients not available)", "to confirm", {"severe_crs": (36.0,)},
                                ("sgp130_max", "ifng_max", "il1ra_max"), "refit"),
    "m_easix": BaselineSpec("m_easix", "Pennisi et al., Blood Adv 2021;5:3397", "confirmed",
                            {"severe_crs": (0.0, 36.0), "icans": (0.0, 36.0)}, ("m_easix_baseline",), "score", _m_easix),
    "easix": BaselineSpec("easix", "Korell et al., Front Immunol 2022", "confirmed",
                          {"severe_crs": (0.0, 36.0), "icans": (0.0, 36.0)}, ("easix_baseline",), "score",
                          lambda X: _log(X["easix_baseline"])),
    "gust2017": BaselineSpec("gust2017", "Gust et al., Cancer Discov 2017", "to confirm", {"icans": (36.0,)},
                             ("temperature_max", "il6_max", "mcp1_max"), "rule", _gust),
    "toci_simple": BaselineSpec("toci_simple", "crsrisk: IL-6 and ferritin at the first dose, disease burden, CRS "
                                "grade (clinical-facts.md: no published score exists)", "project baseline",
                                {"toci_refractory": (FIRST_TOCILIZUMAB,)},
                                ("il6_last", "ferritin_last", "marrow_blasts_pct", "crs_grade_current"), "refit"),
})

_LOGGED = {"sgp130_max", "ifng_max", "il1ra_max", "il6_last", "ferritin_last"}


def baselines_for(task: str, landmark: Any) -> list[str]:
    """Names of the published scores that apply to a task at a landmark."""
    def same(a: Any, b: Any) -> bool:
        return a == b if isinstance(a, str) or isinstance(b, str) else float(a) == float(b)

    return [name for name, spec in BASELINES.items() if any(same(landmark, lm) for lm in spec.applies.get(task, ()))]


class PublishedScore(ClassifierMixin, BaseEstimator):
    """A published score as a classifier: ``score_raw`` is the score, ``predict_proba`` its fold-fitted mapping."""

    def __init__(self, name: str = "hay2017") -> None:
        self.name = name

    def _inputs(self, X: pd.DataFrame) -> pd.DataFrame:
        spec = BASELINES[self.name]
        missing = [c for c in spec.columns if c not in X.columns]
        if missing:
            raise ValueError(f"baseline {self.name}: the feature matrix lacks {missing} (is the landmark right?)")
        return X[list(spec.columns)].astype(float)

    def _refit_design(self, X: pd.DataFrame) -> np.ndarray:
        inputs = self._inputs(X)
        for column in set(inputs.columns) & _LOGGED:
            inputs[column] = _log(inputs[column])
        return inputs.fillna(self.medians_).to_numpy()

    def score_raw(self, X: pd.DataFrame) -> np.ndarray:
        """The score as published (rule 0/1, continuous value), or the refitted linear predictor."""
        spec = BASELINES[self.name]
        if spec.kind == "refit":
            check_is_fitted(self, "model_")
            return self.model_.decision_function((self._refit_design(X) - self.center_) / self.scale_)
        raw = spec.score(self._inputs(X)).to_numpy(dtype=float)
        return raw if spec.kind == "rule" else np.where(np.isnan(raw), getattr(self, "median_", np.nan), raw)

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> "PublishedScore":
        """Fit only what the published score leaves open, on the training fold."""
        if self.name not in BASELINES:
            raise ValueError(f"unknown published score {self.name!r}; expected one of {list(BASELINES)}")
        spec = BASELINES[self.name]
        y = np.asarray(y).astype(int)
        self.classes_ = np.array([0, 1])
        if spec.kind == "refit":
            inputs = self._inputs(X)
            for column in set(inputs.columns) & _LOGGED:
                inputs[column] = _log(inputs[column])
            self.medians_ = inputs.median().fillna(0.0)
            design = inputs.fillna(self.medians_).to_numpy()
            self.center_, self.scale_ = design.mean(axis=0), design.std(axis=0) + 1e-9
            self.model_ = LogisticRegression(C=1.0, max_iter=1000).fit((design - self.center_) / self.scale_, y)
            return self
        if spec.kind == "score":
            raw = spec.score(self._inputs(X)).to_numpy(dtype=float)
            self.median_ = float(np.nanmedian(raw)) if np.isfinite(raw).any() else 0.0
        self.mapping_ = LogisticRegression(C=1e6, max_iter=1000).fit(self.score_raw(X).reshape(-1, 1), y)
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Probability of the positive class in column 1."""
        if BASELINES[self.name].kind == "refit":
            check_is_fitted(self, "model_")
            return self.model_.predict_proba((self._refit_design(X) - self.center_) / self.scale_)
        check_is_fitted(self, "mapping_")
        return self.mapping_.predict_proba(self.score_raw(X).reshape(-1, 1))

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Class labels at probability 0.5."""
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)
