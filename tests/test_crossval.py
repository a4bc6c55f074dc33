"""Outer splits: stratified, grouped by patient, repeated with different seeds, or one centre held out at a time."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crsrisk.training.config import CVConfig, TrainConfig
from crsrisk.training.crossval import outer_splits


@pytest.fixture()
def design() -> tuple[np.ndarray, pd.Series, pd.Series]:
    rng = np.random.default_rng(0)
    y = (rng.random(300) < 0.2).astype(int)
    return y, pd.Series([f"P{i}" for i in range(300)]), pd.Series(rng.choice(["A", "B", "C"], 300))


def test_repeated_kfold_covers_every_infusion_once_per_repeat(design) -> None:
    y, ids, centres = design
    splits = outer_splits(y, ids, centres, TrainConfig(cv=CVConfig(n_splits=5, n_repeats=2)))
    assert len(splits) == 10
    for repeat in (0, 1):
        tests = np.concatenate([s.test for s in splits if s.repeat == repeat])
        assert sorted(tests) == list(range(300))
    first = [set(s.test) for s in splits if s.repeat == 0]
    second = [set(s.test) for s in splits if s.repeat == 1]
    assert first != second  # a new shuffle per repeat
    assert all(abs(y[s.test].mean() - y.mean()) < 0.06 for s in splits)  # stratified


def test_leave_one_centre_out_holds_out_whole_centres(design) -> None:
    y, ids, centres = design
    splits = outer_splits(y, ids, centres, TrainConfig(cv=CVConfig(scheme="leave_one_centre_out")))
    assert len(splits) == 3
    for s in splits:
        assert centres.iloc[s.test].nunique() == 1
        assert centres.iloc[s.test].iloc[0] not in set(centres.iloc[s.train])
    with pytest.raises(ValueError, match="fewer than 2 centres"):
        outer_splits(y, ids, pd.Series(["A"] * 300), TrainConfig(cv=CVConfig(scheme="leave_one_centre_out")))


def test_stacked_landmark_rows_of_one_infusion_never_straddle_a_fold(design) -> None:
    y, ids, centres = design
    stacked = pd.Series(np.repeat(ids.to_numpy(), 4))  # one row per infusion per landmark, as a super-model has
    y4 = np.repeat(y, 4)
    for split in outer_splits(y4, stacked, pd.Series(np.repeat(centres.to_numpy(), 4)), TrainConfig()):
        assert not set(stacked.iloc[split.train]) & set(stacked.iloc[split.test])


def test_inner_tuning_folds_are_grouped_too() -> None:
    from sklearn.model_selection import StratifiedGroupKFold

    from crsrisk.training import estimators

    calls = []
    original = StratifiedGroupKFold.split

    def recording(self, X, y=None, groups=None):
        calls.append(groups)
        return original(self, X, y, groups)

    rng = np.random.default_rng(1)
    X = pd.DataFrame(rng.normal(size=(240, 3)), columns=["a", "b", "c"])
    y = np.tile([0, 0, 1, 0], 60)
    groups = np.repeat(np.arange(60), 4)
    StratifiedGroupKFold.split = recording
    try:
        estimators.fit_model("logistic", X, y, TrainConfig(), seed=0, groups=groups)
    finally:
        StratifiedGroupKFold.split = original
    assert calls and all(g is not None and np.array_equal(np.asarray(g), groups) for g in calls)
