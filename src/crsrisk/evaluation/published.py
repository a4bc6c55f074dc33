"""Published clinical scores as classifiers over the feature frame, for side-by-side comparison.

Each score is computed as published from the landmark features (``score_raw``). To report Brier score and
calibration on the same footing as the models, ``fit`` maps the raw score to a probability with a
one-variable logistic regression fitted on the training fold only; the ordering, and so the AUROC, is that
of the raw score. Scores whose published coefficients we do not hold (Teachey 2016) and the project's own
tocilizumab baseline are logistic regressions refitted inside the training fold on the published inputs.

Missing inputs: a binary rule with a missing input is "not positive" (a threshold that was not measured was
not met); a continuous score or a refitted input is imputed with the training-fold median.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.utils.validation import check_is_fitted

from crsrisk.errors import InputError
from crsrisk.landmarks import Grid, Landmark, parse_landmark

# Hay et al., Blood 2017;130:2295: fever >= 38.9 C and MCP-1 >= 1343.5 pg/mL within 36 h.
# clinical-facts.md: thresholds widely cited, exact tree "to confirm".
HAY_FEVER_C = 38.9
HAY_MCP1_PG_ML = 1343.5
# Gust et al., Cancer Discov 2017: the same fever and MCP-1 thresholds plus IL-6 >= 16 pg/mL ("to confirm").
GUST_IL6_PG_ML = 16.0
# Korell et al., Front Immunol 2022 ("confirmed"): pre-lymphodepletion EASIX > 4.67 -> 4.3-fold odds of
# grade >= 3 CRS and/or ICANS. Our easix_baseline is the last pre-infusion value (within 7 days).
EASIX_CUTOFF = 4.67


def _log(x: pd.Series) -> pd.Series:
    """Natural log; non-positive values become NaN (then imputed like missing ones)."""
    return np.log(x.where(x > 0))


def _hay(X: pd.DataFrame) -> pd.Series:
    return ((X["temperature_max"] >= HAY_FEVER_C) & (X["mcp1_max"] >= HAY_MCP1_PG_ML)).astype(float)


def _gust(X: pd.DataFrame) -> pd.Series:
    return (_hay(X).astype(bool) & (X["il6_max"] >= GUST_IL6_PG_ML)).astype(float)


def _m_easix(X: pd.DataFrame) -> pd.Series:
    """log m-EASIX at its latest value: the last one in the window when there is one, else the baseline."""
    latest = X["m_easix_last"].fillna(X["m_easix_baseline"]) if "m_easix_last" in X else X["m_easix_baseline"]
    return _log(latest)


def _easix(X: pd.DataFrame) -> pd.Series:
    return _log(X["easix_baseline"])


class ScoreKind(ABC):
    """One kind of published score: how its raw score is computed, when it is computable, what is fitted on the
    training fold, and how the raw score orients to a probability. ``inputs`` are the score's required columns
    and the optional ones present, as floats (``PublishedScore`` checks and selects them)."""

    def computable(self, inputs: pd.DataFrame, required: tuple[str, ...]) -> bool:
        """Every required input measured in at least one row."""
        return bool(inputs[list(required)].notna().any().all())

    @abstractmethod
    def fit(self, model: PublishedScore, inputs: pd.DataFrame, y: np.ndarray) -> None:
        """Fit, on ``model``, only what the published score leaves open."""

    @abstractmethod
    def raw(self, model: PublishedScore, inputs: pd.DataFrame) -> np.ndarray:
        """The score as published, or the refitted linear predictor."""

    def probability(self, model: PublishedScore, inputs: pd.DataFrame) -> np.ndarray:
        """Probabilities of class 0 and 1 by the fold-fitted 1-D logistic map of the raw score."""
        check_is_fitted(model, "mapping_")
        return model.mapping_.predict_proba(self.raw(model, inputs).reshape(-1, 1))

    def _map(self, model: PublishedScore, inputs: pd.DataFrame, y: np.ndarray) -> None:
        # Practically unpenalised 1-D logistic recalibration of the raw score.
        model.mapping_ = LogisticRegression(C=1e6, max_iter=1000).fit(self.raw(model, inputs).reshape(-1, 1), y)


@dataclass(frozen=True)
class Rule(ScoreKind):
    """A binary rule (0/1); a threshold that was not measured was not met."""

    score: Callable[[pd.DataFrame], pd.Series]

    def fit(self, model: PublishedScore, inputs: pd.DataFrame, y: np.ndarray) -> None:
        self._map(model, inputs, y)

    def raw(self, model: PublishedScore, inputs: pd.DataFrame) -> np.ndarray:
        return self.score(inputs).to_numpy(dtype=float)


@dataclass(frozen=True)
class Continuous(ScoreKind):
    """A continuous score; a missing value is imputed with the training-fold median."""

    score: Callable[[pd.DataFrame], pd.Series]

    def computable(self, inputs: pd.DataFrame, required: tuple[str, ...]) -> bool:
        """A finite score in at least one row."""
        return bool(np.isfinite(self.score(inputs).to_numpy(dtype=float)).any())

    def fit(self, model: PublishedScore, inputs: pd.DataFrame, y: np.ndarray) -> None:
        raw = self.score(inputs).to_numpy(dtype=float)
        model.median_ = float(np.nanmedian(raw)) if np.isfinite(raw).any() else 0.0
        self._map(model, inputs, y)

    def raw(self, model: PublishedScore, inputs: pd.DataFrame) -> np.ndarray:
        raw = self.score(inputs).to_numpy(dtype=float)
        check_is_fitted(model, "median_")
        return np.where(np.isnan(raw), model.median_, raw)


@dataclass(frozen=True)
class Refit(ScoreKind):
    """A logistic regression refitted on the published inputs (``logged`` on the log scale), imputed with the
    training-fold medians and standardised; its own probabilities, oriented by the fit."""

    logged: tuple[str, ...] = ()

    def _design(self, inputs: pd.DataFrame) -> pd.DataFrame:
        return inputs.assign(**{c: _log(inputs[c]) for c in self.logged})

    def _standardised(self, model: PublishedScore, inputs: pd.DataFrame) -> np.ndarray:
        check_is_fitted(model, "model_")
        return (self._design(inputs).fillna(model.medians_).to_numpy() - model.center_) / model.scale_

    def fit(self, model: PublishedScore, inputs: pd.DataFrame, y: np.ndarray) -> None:
        design = self._design(inputs)
        model.medians_ = design.median().fillna(0.0)
        values = design.fillna(model.medians_).to_numpy()
        model.center_, model.scale_ = values.mean(axis=0), values.std(axis=0) + 1e-9
        # Mild L2 (C=1 on standardised inputs) keeps small folds with near-separation finite.
        model.model_ = LogisticRegression(C=1.0, max_iter=1000).fit((values - model.center_) / model.scale_, y)

    def raw(self, model: PublishedScore, inputs: pd.DataFrame) -> np.ndarray:
        return model.model_.decision_function(self._standardised(model, inputs))

    def probability(self, model: PublishedScore, inputs: pd.DataFrame) -> np.ndarray:
        return model.model_.predict_proba(self._standardised(model, inputs))


@dataclass(frozen=True)
class BaselineSpec:
    """A published score: where it comes from, where it applies, what it needs and (its kind) how it is computed."""

    name: str
    citation: str
    status: str  # "confirmed" / "to confirm" as in clinical-facts.md, or "project baseline"
    applies: Mapping[str, tuple[str, ...]]  # task -> landmark labels ("36h", "first_tocilizumab"; "grid": any grid)
    columns: tuple[str, ...]  # required feature columns
    kind: ScoreKind
    optional_columns: tuple[str, ...] = ()  # used when present (e.g. window values at a later landmark)
    cutoff: float | None = None  # published decision cut-off on the raw score (positive when raw > cutoff)


# Scores computed from labs alone apply wherever a grade task is asked, the landmark grids included.
_EVERY_GRADE_LANDMARK = {
    "severe_crs": ("0h", "36h"),
    "icans": ("0h", "36h"),
    "severe_crs_dynamic": ("grid",),
    "icans_dynamic": ("grid",),
}

BASELINES: Mapping[str, BaselineSpec] = MappingProxyType(
    {
        "hay2017": BaselineSpec(
            "hay2017",
            "Hay et al., Blood 2017;130:2295 (fever >= 38.9 C and MCP-1 >= 1343.5 pg/mL in 36 h)",
            "to confirm",
            {"severe_crs": ("36h",)},
            ("temperature_max", "mcp1_max"),
            Rule(_hay),
            cutoff=0.5,
        ),
        "teachey2016": BaselineSpec(
            "teachey2016",
            "Teachey et al., Cancer Discov 2016;6:664 (sgp130, IFN-gamma, IL-1RA; refitted: published "
            "coefficients not available; published window 72 h, here the landmark window)",
            "to confirm",
            {"severe_crs": ("36h",), "severe_crs_dynamic": ("grid",)},
            ("sgp130_max", "ifng_max", "il1ra_max"),
            Refit(logged=("sgp130_max", "ifng_max", "il1ra_max")),
        ),
        "m_easix": BaselineSpec(
            "m_easix",
            "Pennisi et al., Blood Adv 2021;5:3397 (LDH x CRP[mg/dL] / platelets, log scale)",
            "confirmed",
            _EVERY_GRADE_LANDMARK,
            ("m_easix_baseline",),
            Continuous(_m_easix),
            optional_columns=("m_easix_last",),
        ),
        "easix": BaselineSpec(
            "easix",
            "Korell et al., Front Immunol 2022 (LDH x creatinine / platelets, log scale; cut-off 4.67)",
            "confirmed",
            _EVERY_GRADE_LANDMARK,
            ("easix_baseline",),
            Continuous(_easix),
            cutoff=float(np.log(EASIX_CUTOFF)),
        ),
        "gust2017": BaselineSpec(
            "gust2017",
            "Gust et al., Cancer Discov 2017 (fever >= 38.9 C, IL-6 >= 16 pg/mL, MCP-1 >= 1343.5 pg/mL in 36 h)",
            "to confirm",
            {"icans": ("36h",)},
            ("temperature_max", "il6_max", "mcp1_max"),
            Rule(_gust),
            cutoff=0.5,
        ),
        "toci_simple": BaselineSpec(
            "toci_simple",
            "crsrisk project baseline: IL-6 and ferritin at the first dose, marrow blasts, CRS grade "
            "(clinical-facts.md: no published score exists for tocilizumab-refractory CRS)",
            "project baseline",
            {"toci_refractory": ("first_tocilizumab",)},
            ("il6_last", "ferritin_last", "marrow_blasts_pct", "crs_grade_current"),
            Refit(logged=("il6_last", "ferritin_last")),
        ),
    }
)


def baselines_for(task_name: str, landmark: Landmark | Any) -> list[str]:
    """Names of the published scores that apply to a task at a landmark (a grid matches ``"grid"``)."""
    landmark = parse_landmark(landmark)
    label = "grid" if isinstance(landmark, Grid) else landmark.label
    return [name for name, spec in BASELINES.items() if label in spec.applies.get(task_name, ())]


def baseline_computable(name: str, X: pd.DataFrame) -> bool:
    """The one rule of computability: False when the score cannot be computed from anything measured in ``X`` (its
    kind decides: a continuous score with no finite value; a rule or refit with a required input missing in every
    row). Such a score is "not computable" there: never fitted, scored or beaten, never an AUROC of 0.5."""
    spec = get_baseline(name)
    if not set(spec.columns) <= set(X.columns):
        return False
    return spec.kind.computable(_inputs(spec, X), spec.columns)


def _inputs(spec: BaselineSpec, X: pd.DataFrame) -> pd.DataFrame:
    """The score's required columns and the optional ones present, as floats."""
    present = [c for c in spec.optional_columns if c in X.columns]
    return X[[*spec.columns, *present]].astype(float)


def split_computable(names: list[str], X: pd.DataFrame) -> tuple[list[str], list[str]]:
    """``names`` split into (computable, not computable) on ``X`` by ``baseline_computable``, order kept."""
    computable = [name for name in names if baseline_computable(name, X)]
    return computable, [name for name in names if name not in computable]


def get_baseline(name: str) -> BaselineSpec:
    """The registry entry, or a ValueError listing the known names."""
    if name not in BASELINES:
        raise InputError(f"unknown published score {name!r}; expected one of {list(BASELINES)}")
    return BASELINES[name]


class PublishedScore(ClassifierMixin, BaseEstimator):
    """A published score as a classifier: ``score_raw`` is the score, ``predict_proba`` its fold-fitted mapping."""

    def __init__(self, name: str = "hay2017") -> None:
        self.name = name

    def _inputs(self, X: pd.DataFrame) -> pd.DataFrame:
        spec = get_baseline(self.name)
        if not isinstance(X, pd.DataFrame):
            raise InputError(
                f"baseline {self.name}: expected the feature frame (a pandas DataFrame), got {type(X).__name__}"
            )
        missing = [c for c in spec.columns if c not in X.columns]
        if missing:
            raise InputError(f"baseline {self.name}: the feature frame lacks {missing} (is the landmark right?)")
        return _inputs(spec, X)

    def score_raw(self, X: pd.DataFrame) -> np.ndarray:
        """The score as published (rule 0/1, continuous log score), or the refitted linear predictor."""
        return get_baseline(self.name).kind.raw(self, self._inputs(X))

    def fit(self, X: pd.DataFrame, y: object) -> "PublishedScore":
        """Fit only what the published score leaves open, on the training fold."""
        spec = get_baseline(self.name)
        y = np.asarray(y, dtype=float).ravel()
        if len(y) != len(X):
            raise InputError(f"baseline {self.name}: {len(y)} labels for {len(X)} feature rows")
        if not np.isin(y, (0.0, 1.0)).all() or np.unique(y).size < 2:
            raise InputError(f"baseline {self.name}: labels must be 0/1 with both classes in the training fold")
        self.classes_ = np.array([0, 1])
        spec.kind.fit(self, self._inputs(X), y.astype(int))
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Probabilities of class 0 and 1 (column 1: the event)."""
        return get_baseline(self.name).kind.probability(self, self._inputs(X))

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """The published classification (raw score above the published cut-off), else probability >= 0.5."""
        cutoff = get_baseline(self.name).cutoff
        if cutoff is not None:
            return (self.score_raw(X) > cutoff).astype(int)
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)
