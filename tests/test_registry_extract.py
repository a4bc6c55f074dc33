"""A cohort shaped as real registry extracts are (no labs before the infusion, no temperature, no MCP-1): the
published scores whose inputs are all missing are "not computable" in train and evaluate, never an AUROC and
never beaten."""

from __future__ import annotations

from pathlib import Path

import pytest

from crsrisk.cohort.io import load_cohort, write_cohort
from crsrisk.cohort.validated import Cohort
from crsrisk.evaluation.external import evaluate_bundle
from crsrisk.training.run import train
from conftest import TINY

EXPECTED = {("severe_crs", "0h"): {"m_easix", "easix"}, ("severe_crs", "36h"): {"hay2017"}}


def _registry_extract(cohort: Cohort, out: Path) -> Cohort:
    measurements = cohort.measurements
    kept = measurements[
        (measurements["hours_since_infusion"] >= 0) & ~measurements["analyte"].isin(["temperature", "mcp1"])
    ]
    write_cohort(Cohort(cohort.patients, kept, cohort.events, dict(cohort.metadata)), out)
    return load_cohort(out)


@pytest.mark.slow
def test_scores_without_inputs_are_not_computable_in_train_and_evaluate(small_cohort: Cohort, tmp_path: Path) -> None:
    extract = _registry_extract(small_cohort, tmp_path / "extract")
    result = train(
        extract,
        task="severe_crs",
        config=TINY,
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        out=tmp_path / "run",
        show_progress=False,
        register=False,
    )
    evaluated = evaluate_bundle(extract, result.bundle_dir, n_boot=50).document
    for document in (result.metrics, evaluated):
        for (task, landmark), absent in EXPECTED.items():
            rows = [r for r in document["results"] if r["task"] == task and r["landmark"] == landmark]
            assert rows, (task, landmark)
            assert {r["model"] for r in rows}.isdisjoint(absent)  # never scored, so no AUROC and no CI
            for row in rows:
                assert absent <= set(row["not_computable"])
                assert row.get("best_published") not in absent
    comparison = (tmp_path / "run" / "comparison.md").read_text()
    assert "not computable" in comparison and "m_easix" in comparison
