"""The bundle as an MLflow pyfunc model (calibrated probabilities, not XGBoost's class labels).

Logged as a "model from code" (``pyfunc_entry.py``), so MLflow stores no pickled Python object: the served
model is this code plus the verified bundle. The only module of the bundle package that imports mlflow;
``crsrisk.scoring`` (the clinician path) never touches it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import infer_signature

import crsrisk
from crsrisk.errors import BundleIntegrityError

PIP_REQUIREMENTS = [f"crsrisk=={crsrisk.__version__}", "xgboost>=3.1", "pandas>=2.2", "numpy>=1.26"]


class CrsriskPyfunc(mlflow.pyfunc.PythonModel):
    """Scores rows of one task/landmark's features: probability, band and raw score (log-odds)."""

    def load_context(self, context: Any) -> None:
        """Load (and verify) the bundle shipped as the model's artifact; the model key comes from model_config."""
        from crsrisk.bundle.store import load_bundle

        self.key = context.model_config["key"]
        self.model = load_bundle(context.artifacts["bundle"]).models[self.key]

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        """Calibrated risk for each row (columns = the model's feature names; missing values allowed)."""
        missing = [c for c in self.model.feature_names if c not in model_input.columns]
        if missing:
            raise ValueError(f"model {self.key}: input lacks feature column(s) {missing[:10]}")
        values = model_input[self.model.feature_names].to_numpy(dtype=float)
        raw = self.model.booster.inplace_predict(values, predict_type="margin")
        probability = self.model.calibrator.transform(raw)
        return pd.DataFrame({"probability": probability, "band": self.model.band(probability),
                             "raw_score": raw})


def log_bundle_to_mlflow(bundle_dir: str | Path, task: str, landmark: Any, registered_model_name: str | None = None,
                         alias: str = "candidate") -> str:
    """Log the bundle as a pyfunc for one task/landmark in the active run; register it and set the alias."""
    from crsrisk.bundle.store import ENTRY_FILE, load_bundle

    bundle = load_bundle(bundle_dir)
    entry = bundle.path / ENTRY_FILE  # the bundle's own copy: load_bundle refused it unless the manifest pins it
    if not entry.is_file():
        raise BundleIntegrityError(f"{bundle.path}: no {ENTRY_FILE} in the bundle (made by an older crsrisk): "
                                   "save the bundle again before logging it to MLflow")
    model = next(m for m in bundle.for_task(task) if str(m.landmark) == str(landmark))
    example = pd.DataFrame(np.full((2, len(model.feature_names)), np.nan), columns=model.feature_names)
    example.iloc[0] = 0.0
    scorer = CrsriskPyfunc()
    scorer.key, scorer.model = model.key, model
    output = scorer.predict(None, example)
    info = mlflow.pyfunc.log_model(
        name=f"model_{task}", python_model=str(entry), model_config={"key": model.key},
        artifacts={"bundle": str(bundle.path)}, signature=infer_signature(example, output), input_example=example,
        pip_requirements=PIP_REQUIREMENTS, registered_model_name=registered_model_name)
    if registered_model_name:
        mlflow.MlflowClient().set_registered_model_alias(registered_model_name, alias,
                                                         str(info.registered_model_version))
    return info.model_uri
