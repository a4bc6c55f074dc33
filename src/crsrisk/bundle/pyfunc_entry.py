"""MLflow "model from code" entry point: the served crsrisk model (see crsrisk/service/pyfunc.py)."""

import mlflow

from crsrisk.service.pyfunc import CrsriskPyfunc

mlflow.models.set_model(CrsriskPyfunc())
