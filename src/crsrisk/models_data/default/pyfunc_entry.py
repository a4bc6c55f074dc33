"""MLflow "model from code" entry point: the served crsrisk model (see pyfunc.py)."""

import mlflow

from crsrisk.bundle.pyfunc import CrsriskPyfunc

mlflow.models.set_model(CrsriskPyfunc())
