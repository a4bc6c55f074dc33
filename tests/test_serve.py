"""A registered model answers REST requests through `mlflow models serve` on localhost."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from crsrisk.bundle import load_bundle
from crsrisk.features import LandmarkFeatures
from tests_support import served_probabilities


@pytest.mark.slow
def test_served_model_returns_the_bundles_probabilities(trained, small_cohort, tmp_path: Path) -> None:
    _, uri, result = trained
    model = load_bundle(result.bundle_dir).models["severe_crs__36h"]
    X = LandmarkFeatures(task="severe_crs", landmark=36.0).fit_transform(small_cohort).iloc[:5]
    served = served_probabilities(uri, "models:/crsrisk-severe_crs@candidate", X, tmp_path / "serve.log")
    expected = model.calibrator.transform(model.booster.inplace_predict(X.to_numpy(), predict_type="margin"))
    np.testing.assert_allclose(served, expected, rtol=1e-6)
