"""Conformance checks in the style of scikit-learn's ``parametrize_with_checks``: every registered definition is
held to the same contract, so a new one is covered by adding it to its registry."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from crsrisk.bundle.calibration import CALIBRATORS, Calibrator, fit_calibrator
from crsrisk.errors import InputError

Check = Callable[[], None]


def _fitted(method: str) -> Calibrator:
    """A calibrator of ``method`` fitted on a fixed, noisy sample."""
    rng = np.random.default_rng(0)
    margin = rng.normal(0, 2, 400)
    return fit_calibrator(margin, rng.random(400) < 1 / (1 + np.exp(-(0.7 * margin - 0.5))), method)


def _monotone(method: str) -> None:
    """Probabilities never fall as the margin rises, and stay in [0, 1]."""
    probability = _fitted(method).transform(np.linspace(-20, 20, 401))
    assert np.all(np.diff(probability) >= 0) and np.all((probability >= 0) & (probability <= 1))


def _round_trip(method: str) -> None:
    """to_dict -> JSON -> from_dict gives the same calibrator and bit-identical outputs."""
    calibrator = _fitted(method)
    again = Calibrator.from_dict(json.loads(json.dumps(calibrator.to_dict())))
    margins = np.linspace(-10, 10, 101)
    assert again == calibrator and type(again) is CALIBRATORS[method]
    np.testing.assert_array_equal(again.transform(margins), calibrator.transform(margins))


def _refuses_bad_parameters(method: str) -> None:
    """Each parameter replaced by NaN, text or a bool is refused with the package's InputError naming the calibrator."""
    stored = _fitted(method).to_dict()
    for name, value in stored["params"].items():
        for bad in (float("nan"), "1", True, [float("nan")] if isinstance(value, list) else None):
            broken = stored | {
                "params": stored["params"] | {name: [bad] * len(value) if isinstance(value, list) else bad}
            }
            with pytest.raises(InputError, match="^calibrator"):
                Calibrator.from_dict(broken)
    params = stored["params"]
    if all(isinstance(v, list) and len(v) > 1 for v in params.values()):  # knots: reversed order is refused
        with pytest.raises(InputError, match="^calibrator"):
            Calibrator.from_dict(stored | {"params": {k: v[::-1] for k, v in params.items()}})


def check_calibrator(method: str) -> Iterator[tuple[str, Check]]:
    """The named checks every registered calibration method must pass."""
    for check in (_monotone, _round_trip, _refuses_bad_parameters):
        yield check.__name__.lstrip("_"), lambda check=check: check(method)
