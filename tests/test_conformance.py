"""Every registered definition passes its conformance checks (tests/conformance.py); the cases come from the registries,
so a new calibrator, published score, model family, task or landmark kind is covered by adding it to its registry."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, get_args

import pytest

from crsrisk.bundle.calibration import CALIBRATORS
from crsrisk.bundle.format import BUNDLE_MODEL
from crsrisk.evaluation.published import BASELINES
from crsrisk.landmarks import LANDMARK_KINDS
from crsrisk.tasks import DEFAULT_TASKS
from crsrisk.training.config import ModelName
from crsrisk.training.families import FAMILIES
from conformance import (
    Check,
    check_calibrator,
    check_family,
    check_landmark,
    check_published_score,
    check_task,
)


def _cases(registry: Iterable[Any], checks: Callable[[Any], Iterator[tuple[str, Check]]]) -> Any:
    """One pytest case per (registered entry, named check), with readable ids."""
    cases = [
        pytest.param(check, id=f"{getattr(entry, '__name__', entry)}-{name}")
        for entry in registry
        for name, check in checks(entry)
    ]
    return pytest.mark.parametrize("check", cases)


@_cases(CALIBRATORS, check_calibrator)
def test_calibrator_conformance(check: Check) -> None:
    check()


@_cases(BASELINES, check_published_score)
def test_published_score_conformance(check: Check) -> None:
    check()


@_cases(FAMILIES, check_family)
def test_model_family_conformance(check: Check) -> None:
    check()


@_cases(DEFAULT_TASKS, check_task)
def test_task_conformance(check: Check) -> None:
    check()


@_cases(LANDMARK_KINDS, check_landmark)
def test_landmark_conformance(check: Check) -> None:
    check()


def test_the_configurable_families_are_the_registered_ones() -> None:
    """The experiment file's model names, the family registry and the bundle's family agree."""
    assert set(get_args(ModelName)) == set(FAMILIES) and BUNDLE_MODEL in FAMILIES
