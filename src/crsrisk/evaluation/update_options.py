"""The five ways to update one bundled model on a local cohort (Steyerberg, Clinical Prediction Models, ch. 20).

Each option is fitted on some local rows and returns a whole ``TaskModel``, so its figures are always those of
the model that would be saved, scored through ``TaskModel.probability`` (the one raw-score path):

- ``original``: the parent model as it is;
- ``intercept``: recalibration in the large, a new intercept on the logit of the original probability (slope 1);
- ``logistic``: logistic recalibration, a new intercept and slope on that logit (``crsrisk recalibrate``'s Platt
  refit, expressed on the parent's probability so the three are nested);
- ``revision``: the parent's booster continued on local data (XGBoost's ``xgb_model``): a few shallow, strongly
  regularised rounds, the round count and penalty tuned on inner folds, and the calibrator refitted on inner-fold
  margins;
- ``refit``: a model trained from scratch on local data by training's own ``fit_model`` (tuning inside folds).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

import numpy as np
import pandas as pd
import xgboost as xgb
from scipy.special import expit
from sklearn.model_selection import StratifiedGroupKFold

from crsrisk.bundle import TaskModel
from crsrisk.bundle.calibration import Calibrator, Isotonic, Platt, fit_calibrator
from crsrisk.bundle.format import BUNDLE_MODEL, model_ready
from crsrisk.errors import InputError
from crsrisk.evaluation.metrics import EPS, calibration_intercept, logit
from crsrisk.training.config import TrainConfig
from crsrisk.training.estimators import fit_model

OPTIONS = ("original", "intercept", "logistic", "revision", "refit")  # simplest first: the order of the choice
LABELS = {
    "original": "(a) original",
    "intercept": "(b) recalibration in the large",
    "logistic": "(c) logistic recalibration",
    "revision": "(d) model revision (booster continued)",
    "refit": "(e) refit from scratch",
}
# Model revision: few shallow trees at a low learning rate with a strong L2 penalty, so local data nudge the
# parent's trees rather than replace them; the grid is small on purpose (tuned on inner folds of a small cohort).
REVISION_PARAMS = {
    "objective": "binary:logistic",
    "eta": 0.05,
    "max_depth": 2,
    "min_child_weight": 5,
    "subsample": 0.8,
    "colsample_bytree": 0.8,
    "tree_method": "hist",
    "nthread": 1,
}
REVISION_GRID = tuple({"rounds": r, "reg_lambda": lam} for r in (10, 30) for lam in (10.0, 50.0))

Fitter = Callable[[TaskModel, pd.DataFrame, np.ndarray, np.ndarray, TrainConfig, int, int], TaskModel]


def row_log_likelihood(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Each row's Bernoulli log-likelihood under probabilities ``p`` (clipped to [EPS, 1 - EPS])."""
    q = np.clip(np.asarray(p, dtype=float), EPS, 1 - EPS)
    return y * np.log(q) + (1 - y) * np.log(1 - q)


def log_likelihood(y: np.ndarray, p: np.ndarray) -> float:
    """Bernoulli log-likelihood of the outcomes under probabilities ``p`` (clipped to [EPS, 1 - EPS])."""
    return float(np.sum(row_log_likelihood(y, p)))


def composed(parent: Calibrator, outer: Platt) -> Calibrator:
    """The calibrator p = sigmoid(outer.a * logit(parent(margin)) + outer.b), as a stored calibrator: exact for a
    Platt parent (a Platt again, refits composed too); for an isotonic parent, its knots' probabilities mapped
    (exact at the knots, linear between them)."""
    if isinstance(parent, Platt):
        a, b = outer.a * parent.a, outer.a * parent.b + outer.b
        boot = tuple({"a": r["a"] * parent.a, "b": r["a"] * parent.b + r["b"]} for r in outer.bootstrap)
        return Platt(a, b, boot)
    if isinstance(parent, Isotonic):
        y = expit(outer.a * logit(np.asarray(parent.y)) + outer.b)
        return Isotonic(parent.x, tuple(float(v) for v in np.maximum.accumulate(y)))
    raise InputError(f"calibrator: update can recalibrate platt or isotonic calibrators, not {parent.method!r}")


def _matrix(model: TaskModel, X: pd.DataFrame) -> np.ndarray:
    return X[model.feature_names].to_numpy(dtype=float)


def _original(model: TaskModel, X: pd.DataFrame, y: np.ndarray, *_: object) -> TaskModel:
    return model


def _shifts_resampled(y: np.ndarray, p: np.ndarray, refits: int, seed: int, groups: np.ndarray) -> tuple[dict, ...]:
    """The intercept refitted on ``refits`` bootstrap resamples of whole infusions (``groups``), as Platt refits
    with slope 1: what (c)'s Platt refits are to its fit, so a (b) model states a probability interval too."""
    if not refits:
        return ()
    rng = np.random.default_rng(seed)
    codes = np.unique(np.asarray(groups), return_inverse=True)[1].ravel()
    n_groups = int(codes.max()) + 1
    weights = rng.multinomial(n_groups, np.full(n_groups, 1 / n_groups), size=refits).astype(float)[:, codes]
    shifts = calibration_intercept.weighted(y.astype(float), p, weights)
    return tuple({"a": 1.0, "b": float(b)} for b in shifts if np.isfinite(b))  # one-class resamples have none


def _intercept(
    model: TaskModel, X: pd.DataFrame, y: np.ndarray, groups: np.ndarray, config: TrainConfig, seed: int, refits: int
) -> TaskModel:
    """A new intercept on the logit of the original probability, slope fixed at 1 (an offset logistic fit)."""
    p = model.probability(_matrix(model, X))
    shift = calibration_intercept(y, p)
    if not np.isfinite(shift):
        raise InputError(f"model {model.key}: recalibration in the large is not estimable on these rows")
    outer = Platt(1.0, shift, _shifts_resampled(y, p, refits, seed, groups))
    return replace(model, calibrator=composed(model.calibrator, outer))


def _logistic(
    model: TaskModel, X: pd.DataFrame, y: np.ndarray, groups: np.ndarray, config: TrainConfig, seed: int, refits: int
) -> TaskModel:
    """Intercept and slope on the logit of the original probability, by the Platt fit ``recalibrate`` uses."""
    lp = logit(model.probability(_matrix(model, X)))
    outer = fit_calibrator(lp, y, "platt", n_boot=refits, seed=seed, groups=groups)
    assert isinstance(outer, Platt)  # the Platt method gives a Platt calibrator
    return replace(model, calibrator=composed(model.calibrator, outer))


def _continued(model: TaskModel, X: np.ndarray, y: np.ndarray, params: dict[str, float], seed: int) -> TaskModel:
    """The parent's booster with ``params['rounds']`` more trees fitted on these rows (the parent is not changed)."""
    dtrain = xgb.DMatrix(model_ready(X), label=y, missing=np.nan, feature_names=model.booster.feature_names, nthread=1)
    settings = REVISION_PARAMS | {"reg_lambda": params["reg_lambda"], "seed": seed}
    booster = xgb.train(settings, dtrain, num_boost_round=int(params["rounds"]), xgb_model=model.booster.copy())
    return replace(model, booster=booster)


def _revision(
    model: TaskModel, X: pd.DataFrame, y: np.ndarray, groups: np.ndarray, config: TrainConfig, seed: int, refits: int
) -> TaskModel:
    """Continue the booster: the grid point whose inner-fold margins, Platt-calibrated, give the lowest deviance;
    then continued on all these rows, with its calibrator fitted on those inner-fold margins."""
    values = _matrix(model, X)
    inner = list(
        StratifiedGroupKFold(config.tuning.inner_splits, shuffle=True, random_state=seed).split(values, y, groups)
    )
    best: tuple[float, dict[str, float], np.ndarray] | None = None
    for params in REVISION_GRID:
        margin = np.empty(len(y))
        for train, test in inner:
            margin[test] = _continued(model, values[train], y[train], params, seed).margin(values[test])
        deviance = -2 * log_likelihood(y, fit_calibrator(margin, y, "platt").transform(margin))
        if best is None or deviance < best[0]:
            best = (deviance, params, margin)
    assert best is not None  # the grid is not empty
    _, params, margin = best
    calibrator = fit_calibrator(margin, y, config.calibration, n_boot=refits, seed=seed, groups=groups)
    revised = _continued(model, values, y, params, seed)
    return replace(revised, calibrator=calibrator, metrics=model.metrics | {"revision": dict(params)})


def _refit(
    model: TaskModel, X: pd.DataFrame, y: np.ndarray, groups: np.ndarray, config: TrainConfig, seed: int, refits: int
) -> TaskModel:
    """XGBoost trained from scratch on these rows by ``training.estimators.fit_model`` (tuned, calibrated inside)."""
    fitted = fit_model(BUNDLE_MODEL, X[model.feature_names], y, config, seed, groups, calibration_boot=refits)
    return replace(model, booster=fitted.model.get_booster(), calibrator=fitted.calibrator)


FITTERS: dict[str, Fitter] = {
    "original": _original,
    "intercept": _intercept,
    "logistic": _logistic,
    "revision": _revision,
    "refit": _refit,
}


def fit_option(
    option: str,
    model: TaskModel,
    X: pd.DataFrame,
    y: np.ndarray,
    groups: np.ndarray,
    config: TrainConfig,
    seed: int,
    refits: int = 0,
) -> TaskModel:
    """``option`` fitted on these rows (``refits``: Platt refits on resamples behind the probability's interval)."""
    return FITTERS[option](model, X, y, groups, config, seed, refits)
