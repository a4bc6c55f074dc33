"""Outer cross-validation: every model and published score predicts each infusion from folds that never saw it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import LeaveOneGroupOut, StratifiedGroupKFold

from crsrisk.bundle.format import BUNDLE_MODEL
from crsrisk.errors import InputError
from crsrisk.evaluation.published import PublishedScore
from crsrisk.training.config import TrainConfig
from crsrisk.training.estimators import FittedModel, fit_model


@dataclass(frozen=True)
class Split:
    """One outer fold: which repeat it belongs to and the row positions it trains and tests on."""

    repeat: int
    fold: int
    train: np.ndarray
    test: np.ndarray


class TooFewEvents(InputError):
    """A task/landmark whose events (or non-events) are too few for the configured folds: skipped, not trained.
    ``fact`` says what was too few, ``change`` where to change what (both in the message)."""

    def __init__(self, fact: str, change: str = "") -> None:
        super().__init__(f"{fact}; {change}" if change else fact)
        self.fact, self.change = fact, change


def _class_groups(y: np.ndarray, groups: np.ndarray) -> tuple[int, int]:
    """Infusions with an event row, and infusions with a non-event row (a super-model has several rows each)."""
    return int(np.unique(groups[y == 1]).size), int(np.unique(groups[y == 0]).size)


def check_events(y: np.ndarray, splits: list[Split], config: TrainConfig, groups: np.ndarray | None = None) -> None:
    """Every outer training fold must hold events and non-events of at least ``inner_splits`` infusions, so that
    every (grouped) inner fold can be tuned, scored and calibrated; raise ``TooFewEvents`` saying what to change
    otherwise."""
    groups = np.arange(len(y)) if groups is None else np.asarray(groups)
    need = config.tuning.inner_splits
    fewest = min(min(_class_groups(y[s.train], groups[s.train])) for s in splits)
    if fewest < need:
        events, others = _class_groups(y, groups)
        raise TooFewEvents(
            f"events in {events} and non-events in {others} infusions: an outer training fold holds "
            f"only {fewest} infusions of a class, fewer than tuning.inner_splits={need}",
            "collect more data, or lower tuning.inner_splits (or cv.n_splits) in the experiment file",
        )


def outer_splits(y: np.ndarray, patient_ids: pd.Series, centres: pd.Series, config: TrainConfig) -> list[Split]:
    """Repeated stratified k-fold grouped by patient, or leave-one-centre-out, as the config says."""
    if config.cv.scheme == "leave_one_centre_out":
        groups = centres.fillna("(none)").to_numpy()
        if len(set(groups)) < 2:
            raise InputError("cv.scheme leave_one_centre_out: the cohort has fewer than 2 centres")
        return [Split(0, k, tr, te) for k, (tr, te) in enumerate(LeaveOneGroupOut().split(y, y, groups))]
    events, others = _class_groups(y, patient_ids.to_numpy())
    if min(events, others) < config.cv.n_splits:
        raise TooFewEvents(
            f"events in {events} and non-events in {others} infusions: fewer than "
            f"cv.n_splits={config.cv.n_splits} infusions of a class",
            "collect more data, or lower cv.n_splits in the experiment file",
        )
    splits = []
    for repeat in range(config.cv.n_repeats):
        folds = StratifiedGroupKFold(config.cv.n_splits, shuffle=True, random_state=config.seed + repeat)
        for k, (tr, te) in enumerate(folds.split(np.zeros(len(y)), y, patient_ids.to_numpy())):
            splits.append(Split(repeat, k, tr, te))
    return splits


def _candidates(config: TrainConfig, baselines: list[str]) -> Iterator[str]:
    yield from config.models
    yield from baselines


def fold_importance(fitted: FittedModel, X_test: pd.DataFrame) -> pd.Series | None:
    """Mean |contribution| per feature of one fold's model on its own test part (None for a family without
    exact contributions)."""
    contributions = fitted.family.contributions(fitted.model, X_test)
    return None if contributions is None else pd.Series(np.abs(contributions).mean(axis=0), index=X_test.columns)


def fold_predictions(
    X: pd.DataFrame, y: np.ndarray, groups: np.ndarray, split: Split, config: TrainConfig, baselines: list[str]
) -> tuple[pd.DataFrame, pd.Series | None]:
    """One outer fold: every model and published score fitted on its training part only, predicting its test part.

    Returns predictions (columns model, repeat, fold, row = position in X, probability) and the importance of the
    fold's model of the bundle's family (None when that family is not trained). A job of its own: ``training.executor`` runs the folds side by side.
    """
    X_train, y_train, X_test = X.iloc[split.train], y[split.train], X.iloc[split.test]
    seed = config.seed + 1000 * split.repeat + split.fold
    frames, importance = [], None
    for name in _candidates(config, baselines):
        if name in config.models:
            fitted = fit_model(name, X_train, y_train, config, seed, groups[split.train])
            probability = fitted.predict_proba(X_test)
            if name == BUNDLE_MODEL:
                importance = fold_importance(fitted, X_test)
                importance = None if importance is None else importance.rename(f"{split.repeat}.{split.fold}")
        else:
            probability = clone(PublishedScore(name)).fit(X_train, y_train).predict_proba(X_test)[:, 1]
        frames.append(
            pd.DataFrame(
                {
                    "model": name,
                    "repeat": split.repeat,
                    "fold": split.fold,
                    "row": split.test,
                    "probability": probability,
                }
            )
        )
    return pd.concat(frames, ignore_index=True), importance


def combine_folds(results: list[tuple[pd.DataFrame, pd.Series | None]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """All folds' predictions in one frame, and their importances one row per fold (in split order)."""
    return (
        pd.concat([frame for frame, _ in results], ignore_index=True),
        pd.DataFrame([imp for _, imp in results if imp is not None]),
    )
