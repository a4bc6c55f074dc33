"""Experiment configuration: what to train, how to validate, tune and calibrate (validated with pydantic)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from crsrisk.bundle.calibration import Method
from crsrisk.cohort.io import MAX_SETTINGS_BYTES, read_limited
from crsrisk.errors import InputError, unknown_key_message
from crsrisk.tasks.definitions import DEFAULT_TASKS

ModelName = Literal["logistic", "xgboost"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CVConfig(_Strict):
    """Outer validation: repeated stratified k-fold (grouped by patient) or leave-one-centre-out."""

    scheme: Literal["repeated_kfold", "leave_one_centre_out"] = "repeated_kfold"
    n_splits: int = Field(5, ge=2, le=20)
    n_repeats: int = Field(2, ge=1, le=20)


class TuningConfig(_Strict):
    """Random search inside each outer training fold (nested), scored by inner-fold AUROC."""

    n_iter: int = Field(8, ge=1, le=200)
    inner_splits: int = Field(3, ge=2, le=10)


class BootstrapConfig(_Strict):
    """Percentile bootstrap of the pooled out-of-fold predictions."""

    n_boot: int = Field(500, ge=50, le=10_000)


class TrainConfig(_Strict):
    """Everything that decides a training run; saved with the run so it can be repeated."""

    seed: int = 0
    tasks: list[str] = Field(default_factory=lambda: list(DEFAULT_TASKS))
    task_overrides: dict[str, dict[str, Any]] = {}
    models: list[ModelName] = ["logistic", "xgboost"]
    cv: CVConfig = CVConfig()
    tuning: TuningConfig = TuningConfig()
    calibration: Method = "platt"
    bootstrap: BootstrapConfig = BootstrapConfig()
    threshold: Literal["prevalence"] | float = "prevalence"
    decision_thresholds: tuple[float, float, float] = (0.02, 0.5, 0.02)
    xgboost_threads: int = Field(1, ge=1, le=64)  # per fit: fits run side by side instead (training/executor.py)
    workers: int | None = Field(None, ge=1, le=256)  # processes for the fits; None = the cores this process may use
    dask: str | None = None  # run the fits on a Dask cluster: a scheduler address (tcp://HOST:8786) or "local"


def load_config(path: str | Path | None, **overrides: Any) -> TrainConfig:
    """Read a YAML experiment file (or defaults), apply overrides, and validate every field."""
    data: dict[str, Any] = {}
    if path is not None:
        try:  # a bounded read that refuses FIFOs and devices without blocking (issue 14)
            loaded = yaml.safe_load(read_limited(path, MAX_SETTINGS_BYTES, "config"))
        except yaml.YAMLError as error:
            raise InputError(f"{path}: not valid YAML: {str(error).splitlines()[0]}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise InputError(f"{path}: expected a mapping of settings at the top level")
        data = dict(loaded or {})
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as error:
        problems = [f"- {'.'.join(map(str, e['loc']))}: {_message(e)} (got {e.get('input')!r})" for e in error.errors()]
        raise InputError("\n".join([f"config {path or '(defaults)'}: {len(problems)} problem(s)", *problems])) from None


def _message(error: Any) -> str:
    """pydantic's message, or for an unknown key the keys allowed in its section (``cv``, ``tuning``, ...)."""
    if error["type"] != "extra_forbidden":
        return str(error["msg"])
    section: Any = TrainConfig
    for part in error["loc"][:-1]:
        section = section.model_fields[part].annotation
    return unknown_key_message(section.model_fields, error["loc"][-1])


DEMO_CONFIG = TrainConfig(
    cv=CVConfig(n_splits=5, n_repeats=1),
    tuning=TuningConfig(n_iter=4, inner_splits=3),
    bootstrap=BootstrapConfig(n_boot=200),
)
"""What ``crsrisk demo`` trains with: the default design on a smaller budget, so it ends in minutes."""
