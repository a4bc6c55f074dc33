"""The risk-band rule: cut-offs relative to the training event rate, read back from a bundle's cut-offs to explain
them, and never explained by the rule when they were set some other way."""

from __future__ import annotations

import numpy as np
import pytest

from crsrisk.bundle.bands import HIGH_CAP, relative_bands, training_rate


@pytest.mark.parametrize(("events", "n", "low", "high"), [(403, 1000, 0.2015, 0.806), (69, 1000, 0.0345, 0.138)])
def test_cutoffs_are_half_and_twice_the_training_rate_and_read_back(
    events: int, n: int, low: float, high: float
) -> None:
    y = np.r_[np.ones(events), np.zeros(n - events)]
    bands = relative_bands(y)
    assert bands == {"low": low, "high": high}
    assert training_rate(bands) == pytest.approx(events / n, abs=1e-4)


def test_a_common_outcome_is_high_from_the_cap_and_its_rate_still_reads_back() -> None:
    bands = relative_bands(np.r_[np.ones(6), np.zeros(4)])
    assert bands == {"low": 0.3, "high": HIGH_CAP}
    assert training_rate(bands) == pytest.approx(0.6)


def test_cutoffs_set_by_hand_are_not_explained_by_the_rule() -> None:
    assert training_rate({"low": 0.1, "high": 0.3}) is None
