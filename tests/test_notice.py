"""Every surface says the model's status in the words of its one home, ``crsrisk.notice``: a synthetic bundle is
called SYNTHETIC everywhere, a bundle trained on real data nowhere."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner
from xgboost import XGBClassifier

from crsrisk import notice
from crsrisk.bundle.calibration import Calibrator, fit_calibrator
from crsrisk.cli import app
from crsrisk.cohort.validated import Cohort
from crsrisk.monitoring.report import html_report
from crsrisk.reporting.figures import status
from crsrisk.scoring import load_model, predict
from crsrisk.service import cds_hooks
from crsrisk.service.app import create_app
from crsrisk.service.status import warning
from crsrisk.tasks import DEFAULT_TASKS
from crsrisk.training.artifacts import metrics_document
from crsrisk.training.config import TrainConfig
from tests_support import fitted_bundle

EXAMPLE = Path(__file__).resolve().parents[1] / "src" / "crsrisk" / "service" / "example_patient.json"


def _fit(X: pd.DataFrame, y: np.ndarray) -> tuple[Any, Calibrator]:
    fitted = XGBClassifier(n_estimators=10, max_depth=2, n_jobs=1, random_state=0).fit(X, y)
    return fitted.get_booster(), fit_calibrator(fitted.predict(X, output_margin=True), y, "platt")


def _cohort(cohort: Cohort, synthetic: bool) -> Cohort:
    return dataclasses.replace(cohort, metadata=cohort.metadata | {"synthetic": synthetic})


def _last_paragraph(output: str) -> str:
    """The CLI's closing line, wrapped or not: its last unindented line and the indented lines that continue it."""
    lines = output.rstrip().splitlines()
    start = max(i for i, line in enumerate(lines) if not line.startswith(" "))
    return " ".join(" ".join(lines[start:]).split())


def _monitoring(synthetic_models: bool, synthetic_outcomes: bool) -> str:
    document = {
        "audit_log": {"path": "audit.jsonl", "verified": None, "chain_problems": []},
        "flags": [],
        "notes": [],
        "synthetic_models": synthetic_models,
        "synthetic_outcomes": synthetic_outcomes,
        "volume": 0,
        "outcomes": {"source": "outcomes", "infusions": 0},
        "period": "month",
        "pseudonym_key": "key",
        "periods": [],
    }
    return html_report(document, {})


def surfaces(folder: Path, cohort: Cohort) -> dict[str, str]:
    """What every surface says of the model in ``folder`` (trained on ``cohort``) about its status."""
    bundle = load_model(folder)
    identity = bundle.identity.to_dict()
    result = predict(EXAMPLE, model=bundle, now_hours=30, audit=False)
    cards = cds_hooks.cards(result, "http://host/", None)
    api = TestClient(create_app(bundle, audit=False))
    cli = CliRunner().invoke(app, ["predict", str(EXAMPLE), "--model", str(folder), "--no-audit"])
    assert cli.exit_code == 0, cli.output
    return {
        "figure caption": status(identity),
        "service answer": warning(identity),
        "CDS discovery": cds_hooks.discovery(identity)["services"][0]["description"],
        "CDS card source": cards[0]["source"]["label"],
        "CDS card detail": cards[0]["detail"],
        "API description": api.get("/openapi.json").json()["info"]["description"],
        "bedside page": api.get("/").text,
        "CLI footer": _last_paragraph(cli.output),
        "training metrics": metrics_document(cohort, TrainConfig(), {}, [], "run", {})["disclaimer"],
        "monitoring report": _monitoring(bundle.metadata.synthetic, cohort.synthetic),
    }


@pytest.fixture(scope="module")
def bundles(small_cohort: Cohort, tmp_path_factory: pytest.TempPathFactory) -> dict[bool, tuple[Path, Cohort]]:
    """One small bundle per status, each from the small cohort marked that way."""
    out = {}
    for synthetic in (True, False):
        cohort = _cohort(small_cohort, synthetic)
        folder = tmp_path_factory.mktemp("notice") / "model"
        fitted_bundle(cohort, folder, [DEFAULT_TASKS["severe_crs"]], _fit, cohort.fingerprint(), synthetic=synthetic)
        out[synthetic] = folder, cohort
    return out


def test_every_surface_of_a_synthetic_model_says_the_notices_sentence(bundles) -> None:
    said = surfaces(*bundles[True])
    sentence = notice.line(True).rstrip(".")
    assert sentence == "SYNTHETIC model, not for clinical use"
    assert not [name for name, text in said.items() if sentence not in text]
    assert notice.banner(True) in said["service answer"] and notice.banner(True) in said["bedside page"]
    assert said["CDS card source"] == "crsrisk (SYNTHETIC model, not for clinical use)"
    assert "The cohort is SYNTHETIC" in said["monitoring report"]


def test_a_model_trained_on_real_data_is_never_called_synthetic(bundles) -> None:
    said = surfaces(*bundles[False])
    assert not [name for name, text in said.items() if "SYNTHETIC" in text]
    assert not [name for name, text in said.items() if "Research software, not for clinical use" not in text]
    assert said["CDS card source"] == "crsrisk (Research software, not for clinical use)"


def test_results_on_a_synthetic_cohort_say_so_whatever_the_model() -> None:
    assert notice.disclaimer(False, cohort_synthetic=True).startswith("Research software, not for clinical use:")
    assert "The cohort is SYNTHETIC" in notice.disclaimer(False, cohort_synthetic=True)
    assert "SYNTHETIC" not in notice.disclaimer(False)
