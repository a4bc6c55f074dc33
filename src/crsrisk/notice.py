"""The one home of what crsrisk says about its own status (not for clinical use; a synthetic model; in-sample
figures), decided from the model's identity and given in the forms the surfaces need: a line, a label, a banner."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from crsrisk.bundle.metadata import SYNTHETIC_DEFAULT

GENERAL = "Research software, not for clinical use."  # where no model is known yet (CLI help, server start)
_SYNTHETIC = "SYNTHETIC model, not for clinical use."
IN_SAMPLE = "this is the cohort the model was trained on: its figures are in-sample, not an external validation"


def is_synthetic(model: Mapping[str, Any]) -> bool:
    """A model identity's synthetic flag (``ModelIdentity.to_dict()``, ``PredictionResult.model``); an identity
    silent about it is synthetic, as a bundle is."""
    return bool(model.get("synthetic", SYNTHETIC_DEFAULT))


def line(synthetic: bool) -> str:
    """One line for a footer, a caption or a registry description."""
    return _SYNTHETIC if synthetic else GENERAL


def label(synthetic: bool) -> str:
    """A short label naming the software and its status (a CDS card's source)."""
    return f"crsrisk ({line(synthetic).rstrip('.')})"


def banner(synthetic: bool) -> str:
    """The sentence that heads a page, a report or an answer: the line, and why its numbers are not evidence."""
    why = (
        "trained on simulated patients; its probabilities are not clinical evidence"
        if synthetic
        else "not validated for clinical decisions"
    )
    return f"{line(synthetic).rstrip('.')}: {why}."


def disclaimer(synthetic: bool, cohort_synthetic: bool = False) -> str:
    """What a document of results on a cohort says first: the model's banner, and whether that cohort is
    synthetic (a real model scored on simulated patients is a demonstration too)."""
    cohort = " The cohort is SYNTHETIC: these figures are a demonstration, not clinical evidence."
    return banner(synthetic) + (cohort if cohort_synthetic else "")


def in_sample() -> str:
    """What every result on the model's own training cohort says (``same_cohort_as_training`` decides when)."""
    return f"In-sample: {IN_SAMPLE}."
