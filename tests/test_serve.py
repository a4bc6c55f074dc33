"""A registered model answers REST requests through `mlflow models serve` on localhost: feature rows and patient
records; every landmark is registered, described and tagged synthetic."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from crsrisk.bundle import load_bundle
from crsrisk.tasks import LandmarkFeatures
from crsrisk.scoring import predict
from crsrisk.service.local import free_port, local_server
from crsrisk.training.tracking import registered_name
from tests_support import mlflow_serve_command, venv_env

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "patient.json"


@pytest.mark.slow
def test_served_model_returns_the_bundles_probabilities(trained, small_cohort, tmp_path: Path) -> None:
    _, uri, result = trained
    port = free_port()
    env = venv_env(MLFLOW_TRACKING_URI=uri)
    env.pop("CRSRISK_AUDIT_LOG", None)
    command = mlflow_serve_command("models:/crsrisk-severe_crs@candidate", port)
    with local_server(command, f"http://127.0.0.1:{port}/ping", env=env, timeout=120):
        model = load_bundle(result.bundle_dir).models["severe_crs__36h"]
        X = LandmarkFeatures(task="severe_crs", landmark=36.0).fit_transform(small_cohort).iloc[:5]
        answer = invoke(
            port,
            {
                "dataframe_split": {
                    "columns": list(X.columns),
                    "data": [[None if np.isnan(v) else v for v in row] for row in X.to_numpy()],
                }
            },
        )
        served = [row["probability"] for row in answer["predictions"]]
        np.testing.assert_allclose(served, model.probability(X.to_numpy()), rtol=1e-6)

        # regression: a feature beyond float32's range (XGBoost refuses it) is scored as the largest float32 is,
        # through TaskModel.margin like every other path, not refused or answered with a 500
        beyond = X.iloc[:1].to_numpy().copy()
        beyond[0, 0] = 1e39
        answer = invoke(
            port,
            {
                "dataframe_split": {
                    "columns": list(X.columns),
                    "data": [[float(v) if np.isfinite(v) else None for v in beyond[0]]],
                }
            },
        )
        largest = beyond.copy()
        largest[0, 0] = float(np.finfo(np.float32).max)
        assert answer["predictions"][0]["probability"] == pytest.approx(float(model.probability(largest)[0]), rel=1e-6)

        # the same patient record crsrisk serve takes, in a 'record' column: the same numbers as crsrisk.predict
        record = EXAMPLE.read_text()
        answer = invoke(port, {"dataframe_records": [{"record": record, "now_hours": 40}]})
        # a task not scored is a row with its reason (and, in the frame's float column, no probability: NaN)
        said = {row["task"]: row for row in answer["predictions"] if isinstance(row.get("reason"), str)}
        served = {row["task"]: row["probability"] for row in answer["predictions"] if row["task"] not in said}
        expected = predict(json.loads(record), model=result.bundle_dir, now_hours=40, audit=False)
        assert served == {p["task"]: p["probability"] for p in expected.predictions}
        assert {task: row["reason"] for task, row in said.items()} == {
            n["task"]: n["reason"] for n in expected.not_applicable
        } | {o["task"]: o.get("text", "already occurred") for o in expected.already_occurred}

        bad = json.loads(record)
        bad["patient"]["age_years"] = "-3"
        with pytest.raises(urllib.error.HTTPError) as refused:
            invoke(port, {"dataframe_records": [{"record": json.dumps(bad)}]})
        assert refused.value.code == 400
        message = json.loads(refused.value.read())["message"]
        assert "age_years" in message and "-3" in message


@pytest.mark.slow
def test_every_landmark_is_registered_with_description_and_synthetic_tag(trained) -> None:
    _, uri, result = trained
    client = MlflowClient(tracking_uri=uri)
    bundle = load_bundle(result.bundle_dir)
    for model in bundle.models.values():
        name = registered_name(model.task, model.landmark)
        version = client.get_model_version_by_alias(name, "candidate")
        assert version.tags["synthetic"] == "true" and model.task in version.description
        assert "not for clinical use" in version.description
    assert client.get_model_version_by_alias("crsrisk-severe_crs", "candidate").tags["landmark"] == "36h"


def invoke(port: int, payload: dict) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/invocations",
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
    )
    return json.loads(urllib.request.urlopen(request, timeout=60).read())
