"""A registered model answers REST requests through `mlflow models serve` on localhost."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from crsrisk.bundle import load_bundle
from crsrisk.features import LandmarkFeatures


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_served_model_returns_the_bundles_probabilities(trained, small_cohort) -> None:
    _, uri, result = trained
    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "models", "serve", "-m",
                               "models:/crsrisk-severe_crs@candidate", "--env-manager", "local", "-h", "127.0.0.1",
                               "-p", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2)
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                assert server.poll() is None, server.stderr.read().decode()[-2000:]
                time.sleep(1)
        else:
            pytest.fail("mlflow models serve did not answer /ping within 120 s")
        model = load_bundle(result.bundle_dir).models["severe_crs__36h"]
        X = LandmarkFeatures(task="severe_crs", landmark=36.0).fit_transform(small_cohort).iloc[:5]
        payload = {"dataframe_split": {"columns": list(X.columns),
                                       "data": [[None if np.isnan(v) else v for v in row] for row in X.to_numpy()]}}
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=json.dumps(payload).encode(),
                                         headers={"Content-Type": "application/json"})
        answer = json.loads(urllib.request.urlopen(request, timeout=30).read())
        served = [row["probability"] for row in answer["predictions"]]
        expected = model.calibrator.transform(model.booster.inplace_predict(X.to_numpy(), predict_type="margin"))
        np.testing.assert_allclose(served, expected, rtol=1e-6)
    finally:
        server.terminate()
        server.wait(30)
