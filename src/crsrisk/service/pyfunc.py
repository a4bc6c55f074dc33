"""The bundle as an MLflow pyfunc model (calibrated probabilities, not XGBoost's class labels).

Logged as a "model from code" (``pyfunc_entry.py``), so MLflow stores no pickled Python object: the served
model is this code plus the verified bundle. A serving adapter above the scoring path; ``crsrisk.scoring`` (the
clinician path) never imports mlflow.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature, infer_signature
from mlflow.pyfunc.model import PythonModel
from mlflow.protos.databricks_pb2 import INTERNAL_ERROR, INVALID_PARAMETER_VALUE, TEMPORARILY_UNAVAILABLE
from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema, TensorSpec

import crsrisk
from crsrisk.bundle.store import ENTRY_FILE, load_bundle
from crsrisk.bundle.trust import for_care
from crsrisk.errors import AuditLogError, BundleIntegrityError, CrsriskError
from crsrisk.scoring.patient import predict
from crsrisk.service.failures import internal_error_id

PIP_REQUIREMENTS = [f"crsrisk=={crsrisk.__version__}", "xgboost>=3.1", "pandas>=2.2", "numpy>=1.26"]


RECORD_COLUMN, NOW_COLUMN = "record", "now_hours"
_RESULT_KEYS = (
    "task",
    "landmark",
    "landmark_hours",
    "horizon_hours",
    "question",
    "probability",
    "band",
    "raw_score",
    "probability_interval",
    "model_key",
)


def _refuse(message: str) -> MlflowException:
    """An error ``mlflow models serve`` returns to the caller as a 400 with the cause in its message."""
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


def _record(value: Any, row: int) -> Mapping[str, Any]:
    """One row's patient record: a JSON object given as text (or as a mapping, from Python). Never a file path."""
    if isinstance(value, Mapping):
        return value
    if not isinstance(value, str):
        raise _refuse(
            f"row {row}, column {RECORD_COLUMN!r}: expected the patient record as a JSON object text, "
            f"got {type(value).__name__}"
        )
    try:
        data = json.loads(value)
    except ValueError as error:
        raise _refuse(f"row {row}, column {RECORD_COLUMN!r}: not valid JSON: {error}") from None
    if not isinstance(data, Mapping):
        raise _refuse(f"row {row}, column {RECORD_COLUMN!r}: expected a JSON object with patient, measurements, events")
    return data


class CrsriskPyfunc(PythonModel):
    """Scores either rows of one task/landmark's features (probability, band and raw score), or patient records
    (column ``record``, JSON text, with optional ``now_hours``) through ``crsrisk.predict`` on the whole bundle:
    one row per task, the same numbers as ``crsrisk serve``."""

    def load_context(self, context: Any) -> None:
        """Load (and verify) the bundle shipped as the model's artifact; the model key comes from model_config.
        A bundle not signed by a trusted key is refused here, at start, unless ``$CRSRISK_ALLOW_UNVERIFIED=1``."""
        self.key = context.model_config["key"]
        self.bundle = for_care(load_bundle(context.artifacts["bundle"]))
        self.model = self.bundle.models[self.key]

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        """Calibrated risk for each row: feature rows (missing values allowed), or patient records. Bad input is
        refused (``mlflow models serve``: 400), an audit log that cannot be appended to is 503, and anything else
        is a bug: 500 with an error id, its traceback logged under that id."""
        try:
            result = self._predict(model_input, params)
        except MlflowException:
            raise
        except AuditLogError as error:
            raise MlflowException(
                f"the audit log cannot be appended to: {error}", error_code=TEMPORARILY_UNAVAILABLE
            ) from None
        except CrsriskError as error:
            raise _refuse(str(error)) from None
        except Exception as error:
            raise MlflowException(
                f"internal error (a bug, not your input): quote error id {internal_error_id(error)}",
                error_code=INTERNAL_ERROR,
            ) from None
        bundle = getattr(self, "bundle", None)
        if bundle is not None and bundle.unverified_accepted:  # research use: every answer says so
            result["model_trust"] = bundle.trust
        return result

    def _predict(self, model_input: pd.DataFrame, params: dict | None) -> pd.DataFrame:
        """Feature rows scored by this task/landmark's model, or patient records through ``crsrisk.predict``."""
        if RECORD_COLUMN in model_input.columns:
            return self._predict_records(model_input, bool((params or {}).get("audit", True)))
        missing = [c for c in self.model.feature_names if c not in model_input.columns]
        if missing:
            raise _refuse(
                f"model {self.key}: input lacks feature column(s) {missing[:10]}; or send a patient record "
                f"in a {RECORD_COLUMN!r} column"
            )
        try:
            values = model_input[self.model.feature_names].to_numpy(dtype=float)
        except (TypeError, ValueError) as error:
            raise _refuse(f"model {self.key}: feature values must be numbers or null: {error}") from None
        raw = self.model.margin(values)
        probability = self.model.calibrator.transform(raw)
        return pd.DataFrame({"probability": probability, "band": self.model.band(probability), "raw_score": raw})

    def _predict_records(self, model_input: pd.DataFrame, audit: bool) -> pd.DataFrame:
        """``crsrisk.predict`` on each row's record, each audited like any prediction unless the caller passes
        ``params={"audit": False}``: one row per task scored, and one per task not applicable (with its reason)."""
        rows = []
        for i, (value, now) in enumerate(
            zip(model_input[RECORD_COLUMN], model_input.get(NOW_COLUMN, pd.Series([None] * len(model_input))))
        ):
            now = None if now is None or (isinstance(now, float) and math.isnan(now)) else now
            now = float(now) if isinstance(now, (np.integer, np.floating)) else now  # a pandas column's number
            try:
                result = predict(_record(value, i), model=self.bundle, now_hours=now, audit=audit)
            except AuditLogError:
                raise
            except CrsriskError as error:
                raise _refuse(f"row {i}: {error}") from None
            rows += [{"row": i, **{k: p[k] for k in _RESULT_KEYS if k in p}} for p in result.predictions]
            rows += [{"row": i, "task": n["task"], "reason": n["reason"]} for n in result.not_applicable]
            rows += [
                {"row": i, "task": n["task"], "reason": n.get("text", "already occurred")}
                for n in getattr(result, "already_occurred", [])
            ]
        return pd.DataFrame(rows)


def model_signature(model: Any, example: pd.DataFrame, output: pd.DataFrame) -> ModelSignature:
    """Every feature column optional (nulls allowed), plus the optional ``record`` and ``now_hours`` columns, so the
    served model takes feature rows or patient records."""
    columns: list[ColSpec | TensorSpec] = [ColSpec("double", name, required=False) for name in model.feature_names]
    columns += [ColSpec("string", RECORD_COLUMN, required=False), ColSpec("double", NOW_COLUMN, required=False)]
    return ModelSignature(
        inputs=Schema(columns),
        outputs=infer_signature(example, output).outputs,
        params=ParamSchema([ParamSpec("audit", "boolean", True)]),
    )


def log_bundle_to_mlflow(
    bundle_dir: str | Path, task: str, landmark: Any, registered_model_name: str | None = None, alias: str = "candidate"
) -> str:
    """Log the bundle as a pyfunc for one task/landmark in the active run; register it and set the alias."""
    bundle = load_bundle(bundle_dir)
    entry = bundle.path / ENTRY_FILE  # the bundle's own copy: load_bundle refused it unless the manifest pins it
    if not entry.is_file():
        raise BundleIntegrityError(
            f"{bundle.path}: no {ENTRY_FILE} in the bundle (made by an older crsrisk): "
            "save the bundle again before logging it to MLflow"
        )
    model = next(m for m in bundle.for_task(task) if str(m.landmark) == str(landmark))
    example = pd.DataFrame(np.full((2, len(model.feature_names)), np.nan), columns=model.feature_names)
    example.iloc[0] = 0.0
    scorer = CrsriskPyfunc()
    scorer.key, scorer.model = model.key, model
    output = scorer.predict(None, example)
    info = mlflow.pyfunc.log_model(
        name=f"model_{task}",
        python_model=str(entry),
        model_config={"key": model.key},
        artifacts={"bundle": str(bundle.path)},
        signature=model_signature(model, example, output),
        input_example=example,
        pip_requirements=PIP_REQUIREMENTS,
        registered_model_name=registered_model_name,
    )
    if registered_model_name:
        mlflow.MlflowClient().set_registered_model_alias(
            registered_model_name, alias, str(info.registered_model_version)
        )
    return info.model_uri
