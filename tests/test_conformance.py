"""Every registered definition passes its conformance checks (tests/conformance.py); the cases come from the registries."""

from __future__ import annotations

import pytest

from crsrisk.bundle.calibration import CALIBRATORS
from conformance import Check, check_calibrator

_CALIBRATOR_CASES = [(f"{method}-{name}", check) for method in CALIBRATORS for name, check in check_calibrator(method)]


@pytest.mark.parametrize("check", [c for _, c in _CALIBRATOR_CASES], ids=[i for i, _ in _CALIBRATOR_CASES])
def test_calibrator_conformance(check: Check) -> None:
    check()
