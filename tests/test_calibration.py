"""Calibrators map margins to probabilities and survive a JSON round trip unchanged."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from crsrisk.bundle.calibration import Calibrator, fit_calibrator


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_fitted_calibrator_recovers_true_probabilities(method: str) -> None:
    rng = np.random.default_rng(0)
    margin = rng.normal(0, 2, 20_000)
    truth = 1 / (1 + np.exp(-(0.5 * margin - 1.0)))  # an over-confident score: the true slope is 0.5
    y = rng.random(margin.size) < truth
    calibrator = fit_calibrator(margin, y, method)
    grid = np.linspace(-4, 4, 9)
    expected = 1 / (1 + np.exp(-(0.5 * grid - 1.0)))
    assert np.abs(calibrator.transform(grid) - expected).max() < 0.06
    if method == "platt":
        assert calibrator.params["a"] == pytest.approx(0.5, abs=0.05)
        assert calibrator.params["b"] == pytest.approx(-1.0, abs=0.08)


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_json_round_trip_is_exact(method: str) -> None:
    rng = np.random.default_rng(1)
    margin = rng.normal(size=500)
    calibrator = fit_calibrator(margin, rng.random(500) < 0.3, method)
    again = Calibrator.from_dict(json.loads(json.dumps(calibrator.to_dict())))
    np.testing.assert_array_equal(again.transform(margin), calibrator.transform(margin))


def test_malformed_calibrator_is_refused() -> None:
    with pytest.raises(ValueError, match="calibrator"):
        Calibrator.from_dict({"method": "platt", "params": {"a": 1.0}})
    with pytest.raises(ValueError, match="calibration method"):
        fit_calibrator(np.zeros(4), np.array([0, 1, 0, 1]), "beta")  # type: ignore[arg-type]


_numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**400), 10**400),
    st.booleans(),
    st.text(max_size=3),
    st.none(),
)


def _ordered_isotonic(n: int) -> st.SearchStrategy:
    """Isotonic tables of n points with x and y sorted (y may stray outside [0, 1]): mostly sound ones."""
    return st.fixed_dictionaries(
        {
            "method": st.just("isotonic"),
            "params": st.fixed_dictionaries(
                {
                    "x": st.lists(st.floats(-1e6, 1e6), min_size=n, max_size=n, unique=True).map(sorted),
                    "y": st.lists(st.floats(-0.1, 1.1), min_size=n, max_size=n).map(sorted),
                }
            ),
        }
    )


@settings(max_examples=300, deadline=None)
@example(data={"method": "isotonic", "params": {"x": [-745909.0, 8.917360380440835e-227], "y": [0.0, 0.1015625]}})
@given(
    data=st.one_of(
        st.fixed_dictionaries(
            {"method": st.just("platt"), "params": st.fixed_dictionaries({"a": _numbers, "b": _numbers})}
        ),
        st.integers(1, 6).flatmap(_ordered_isotonic),
        st.fixed_dictionaries(
            {
                "method": st.just("isotonic"),
                "params": st.fixed_dictionaries(
                    {"x": st.lists(_numbers, max_size=5), "y": st.lists(_numbers, max_size=5)}
                ),
            }
        ),
        st.recursive(
            _numbers,
            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
            max_leaves=8,
        ),
    )
)
def test_a_stored_calibrator_is_sound_or_refused(data) -> None:
    try:
        calibrator = Calibrator.from_dict(data)
    except ValueError as error:
        assert str(error).startswith("calibrator")
        return
    margins = np.linspace(-50, 50, 201)
    with np.errstate(over="ignore"):  # a finite but huge Platt slope overflows to +-inf, which expit maps to 0 or 1
        probability = calibrator.transform(margins)
    assert np.all(np.isfinite(probability)) and np.all((probability >= 0) & (probability <= 1))
    if calibrator.method == "isotonic":
        assert np.all(np.diff(probability) >= -1e-12)  # np.interp's rounding near a knot, nothing more


def test_bootstrap_refits_give_an_interval_that_narrows_with_more_data() -> None:
    rng = np.random.default_rng(1)
    widths = []
    for n in (300, 3000):
        margin = rng.normal(0, 2, n)
        y = rng.random(n) < 1 / (1 + np.exp(-(0.5 * margin - 1.0)))
        calibrator = fit_calibrator(margin, y, "platt", n_boot=200, seed=2)
        assert len(calibrator.bootstrap) == 200
        low, high = calibrator.interval(1.0)
        assert low < float(calibrator.transform(1.0)) < high
        widths.append(high - low)
        assert Calibrator.from_dict(json.loads(json.dumps(calibrator.to_dict()))) == calibrator
    assert widths[1] < widths[0] / 2  # ~1/sqrt(n): ten times the data, about a third of the width
    assert fit_calibrator(margin, y, "platt").interval(1.0) is None
    assert "bootstrap" not in fit_calibrator(margin, y, "platt").to_dict()  # old bundles keep their bytes


def test_rows_of_one_infusion_are_resampled_together_so_repeats_do_not_narrow_the_interval() -> None:
    # A super-model's calibration rows: each infusion at ten landmarks, nearly the same margin and one outcome.
    rng = np.random.default_rng(3)
    margin = rng.normal(0, 2, 300)
    y = rng.random(300) < 1 / (1 + np.exp(-(0.5 * margin - 1.0)))
    repeated, outcome = np.repeat(margin, 10) + rng.normal(0, 0.01, 3000), np.repeat(y, 10)
    infusion = np.repeat(np.arange(300), 10)

    def width(calibrator: Calibrator) -> float:
        low, high = calibrator.interval(1.0)
        return high - low

    alone = width(fit_calibrator(margin, y, "platt", n_boot=300, seed=4))
    by_row = width(fit_calibrator(repeated, outcome, "platt", n_boot=300, seed=4))
    by_infusion = width(fit_calibrator(repeated, outcome, "platt", n_boot=300, seed=4, groups=infusion))
    assert by_row < alone / 2  # rows resampled one by one: ten copies look like ten times the data
    assert 0.75 < by_infusion / alone < 1.33  # whole infusions: as wide as the 300 infusions warrant
    assert fit_calibrator(margin, y, "platt", n_boot=50, seed=5) == fit_calibrator(
        margin, y, "platt", n_boot=50, seed=5, groups=np.arange(300)
    )  # one row per infusion: the same refits
