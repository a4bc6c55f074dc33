"""Training end to end on a real MLflow SQLite store: metrics.json, runs, artifacts, registry, determinism."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from crsrisk.training.config import TrainConfig
from crsrisk.training.run import train
from tests_support import DEFAULT_MODELS


@pytest.mark.slow
def test_metrics_json_has_the_documented_shape(trained) -> None:
    work, _, result = trained
    document = json.loads((work / "run" / "metrics.json").read_text())
    assert document["cohort"]["synthetic"] is True and len(document["cohort"]["fingerprint"]) == 64
    assert document["cohort"]["size"] == 400
    combos = {(r["task"], r["landmark_hours"], r["model"]) for r in document["results"]}
    assert {
        ("severe_crs", 36.0, "xgboost"),
        ("severe_crs", 36.0, "logistic"),
        ("severe_crs", 36.0, "hay2017"),
        ("severe_crs", 36.0, "teachey2016"),
        ("severe_crs", 0.0, "m_easix"),
        ("icans", 36.0, "gust2017"),
        ("toci_refractory", None, "toci_simple"),
        ("severe_crs", 36.0, "generator_ceiling"),
    } <= combos
    for row in document["results"]:
        for name in ("auroc", "auprc", "brier", "calibration_slope", "calibration_intercept", "sensitivity"):
            metric = row["metrics"][name]
            assert set(metric) == {"value", "ci_low", "ci_high"}
        auroc = row["metrics"]["auroc"]
        assert auroc["ci_low"] <= auroc["value"] <= auroc["ci_high"]
    models = [r for r in document["results"] if r["kind"] == "model" and r["task"] == "severe_crs"]
    assert all("beats_best_published" in r for r in models)
    assert document["tasks"]["toci_refractory"]["rule_version"] == "toci-refractory-v1"
    assert (work / "run" / "plots" / "severe_crs_36h_calibration.png").stat().st_size > 5000
    assert (work / "run" / "model" / "manifest.json").exists()


@pytest.mark.slow
def test_dynamic_super_models_are_evaluated_pooled_and_at_every_grid_landmark(trained) -> None:
    work, _, result = trained
    rows = [r for r in result.metrics["results"] if r["task"] == "severe_crs_dynamic"]
    pooled = [r for r in rows if r["scope"] == "pooled"]
    assert {r["model"] for r in pooled} >= {"xgboost", "logistic", "m_easix", "easix", "teachey2016"}
    assert all(
        r["landmark"] == "every12h_0-168h" and r["landmark_hours"] is None and r["horizon_hours"] == 48 for r in pooled
    )
    at = {(r["landmark_hours"], r["model"]): r for r in rows if r["scope"] == "landmark"}
    hours = sorted({h for h, _ in at})
    assert len(hours) >= 8 and set(hours) <= set(float(h) for h in range(0, 169, 12))
    assert all(r["horizon_hours"] == 48 and r["model_landmark"] == "every12h_0-168h" for r in at.values())
    # Cytokine scores have no inputs before infusion: "not computable" there, never an AUROC of 0.5.
    if 0.0 in hours:
        assert (0.0, "teachey2016") not in at and at[(0.0, "xgboost")]["not_computable"] == ["teachey2016"]
    assert (36.0, "teachey2016") in at
    # The per-landmark rows together hold every labelled row of the pooled evaluation that had both classes.
    counts = result.metrics["landmark_counts"]["severe_crs_dynamic__every12h_0-168h"]
    assert sum(c["labelled"] for c in counts) == next(r for r in pooled if r["model"] == "xgboost")["n"]
    assert (work / "run" / "plots" / "severe_crs_dynamic_every12h_0-168h_by_landmark.png").stat().st_size > 5000
    model = result.bundle_dir / "severe_crs_dynamic__every12h_0-168h" / "booster.json"
    assert model.exists()


@pytest.mark.slow
def test_mlflow_holds_runs_artifacts_and_registered_models(trained) -> None:
    _, uri, result = trained
    client = MlflowClient(tracking_uri=uri)
    parent = client.get_run(result.run_id)
    assert parent.data.tags["synthetic"] == "true" and len(parent.data.tags["cohort_fingerprint"]) == 64
    assert parent.data.tags["git_commit"] and parent.data.tags["version.xgboost"]
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{result.run_id}'"
    )
    evaluations = [c for c in children if c.data.tags["kind"] != "registration"]
    own = [r for r in result.metrics["results"] if "model_landmark" not in r]  # per-grid-landmark rows are steps
    assert len(evaluations) == len(own)
    dynamic = next(
        c for c in evaluations if c.data.params["model"] == "xgboost" and c.data.params["task"] == "icans_dynamic"
    )
    steps = client.get_metric_history(dynamic.info.run_id, "auroc_by_landmark")
    assert len(steps) >= 5 and all(s.step % 12 == 0 for s in steps)
    child = next(c for c in evaluations if c.data.params["model"] == "xgboost")
    assert 0.5 < child.data.metrics["auroc"] <= 1 and "auroc_ci_low" in child.data.metrics
    assert {a.path for a in client.list_artifacts(child.info.run_id, "plots")} >= {"plots/roc.png"}
    registrations = {c.data.tags["model_key"]: c.info.run_id for c in children if c.data.tags["kind"] == "registration"}
    for task in ("severe_crs", "icans", "toci_refractory"):
        version = client.get_model_version_by_alias(f"crsrisk-{task}", "candidate")
        assert version.version and version.run_id == registrations[f"{task}__{version.tags['landmark']}"]
    info = mlflow.models.get_model_info("models:/crsrisk-severe_crs@candidate")
    assert info.signature is not None and info.signature.inputs is not None


@pytest.mark.slow
def test_same_data_config_and_seed_give_the_same_metrics(small_cohort_dir: Path, trained, tmp_path: Path) -> None:
    _, _, first = trained
    config = TrainConfig.model_validate(first.metrics["config"])
    again = train(
        small_cohort_dir,
        task="severe_crs",
        config=config,
        tracking_uri=f"sqlite:///{tmp_path / 'm.db'}",
        out=tmp_path / "run",
        show_progress=False,
        register=False,
    )
    before = {
        (r["task"], r["landmark"], r["model"]): r["metrics"]
        for r in first.metrics["results"]
        if r["task"] == "severe_crs"
    }
    after = {(r["task"], r["landmark"], r["model"]): r["metrics"] for r in again.metrics["results"]}
    assert before == after


def test_bad_config_and_missing_cohort_fail_cleanly(tmp_path: Path) -> None:
    from crsrisk.errors import CohortValidationError

    with pytest.raises(CohortValidationError, match="not a folder"):
        train(tmp_path / "nowhere", tracking_uri=f"sqlite:///{tmp_path / 'm.db'}", out=tmp_path / "o")
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_tasks_with_too_few_events_are_skipped_and_said_not_crashed(small_cohort, tmp_path: Path) -> None:
    from conftest import TINY

    from crsrisk.training.config import TuningConfig
    from crsrisk.training.crossval import TooFewEvents

    # 30 infusions: 7 severe CRS and 7 refractory events, 11-12 ICANS; 3 outer folds, 5 inner folds
    config = TINY.model_copy(update={"tuning": TuningConfig(n_iter=2, inner_splits=5)})
    few = small_cohort.subset(small_cohort.patients["patient_id"].iloc[:30])
    result = train(
        few,
        config=config,
        tracking_uri=f"sqlite:///{tmp_path / 'm.db'}",
        out=tmp_path / "run",
        show_progress=False,
        register=False,
    )
    trained = {(r["task"], r["landmark"]) for r in result.metrics["results"]}
    skipped = {(s["task"], s["landmark"]): s for s in result.metrics["skipped"]}
    assert skipped and trained and not trained & set(skipped)
    assert trained | set(skipped) == DEFAULT_MODELS | {
        (r["task"], r["landmark"]) for r in result.metrics["results"] if "model_landmark" in r
    }
    assert all(
        "fewer than tuning.inner_splits=5" in s["reason"] or "fewer than cv.n_splits" in s["reason"]
        for s in skipped.values()
    )
    assert ("icans", "0h") in trained and ("toci_refractory", "first_tocilizumab") in skipped
    assert "not trained" in (tmp_path / "run" / "comparison.md").read_text()
    with pytest.raises(TooFewEvents, match="no task and landmark could be trained"):
        train(
            small_cohort.subset(small_cohort.patients["patient_id"].iloc[:6]),
            config=config,
            tracking_uri=f"sqlite:///{tmp_path / 'm.db'}",
            out=tmp_path / "run2",
            show_progress=False,
            register=False,
        )


def _kill_a_worker_when_running(address: str, ready) -> None:
    """Once the cluster's workers are busy, kill one worker process outright (as a lost machine would be)."""
    import os
    import signal
    import time

    from distributed import Client

    with Client(address) as client:
        deadline = time.time() + 120
        while time.time() < deadline:
            busy = [w for w, n in client.processing().items() if n]
            if busy:
                time.sleep(1.0)
                pid = client.run(os.getpid, workers=[busy[0]])[busy[0]]
                os.kill(pid, signal.SIGKILL)
                ready.append(pid)
                return
            time.sleep(0.2)


@pytest.mark.slow
def test_dask_cluster_gives_the_serial_numbers_even_when_a_worker_dies(small_cohort, tmp_path: Path) -> None:
    import threading

    from conftest import TINY
    from distributed import LocalCluster

    cohort = small_cohort.subset(small_cohort.patients["patient_id"].iloc[:160])
    config = TINY.model_copy(update={"tasks": ["severe_crs"], "workers": 1})
    serial = train(
        cohort,
        config=config,
        tracking_uri=f"sqlite:///{tmp_path / 's.db'}",
        out=tmp_path / "serial",
        show_progress=False,
        register=False,
    )
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        killed: list[int] = []
        killer = threading.Thread(target=_kill_a_worker_when_running, args=(cluster.scheduler_address, killed))
        killer.start()
        on_dask = train(
            cohort,
            config=config.model_copy(update={"dask": cluster.scheduler_address}),
            tracking_uri=f"sqlite:///{tmp_path / 'd.db'}",
            out=tmp_path / "dask",
            show_progress=False,
            register=False,
        )
        killer.join()
    assert killed, "no worker was killed: the test did not exercise a lost worker"
    # JSON text compares NaN (an undefined metric) equal to itself, and every other number to the last bit.
    assert json.dumps(on_dask.metrics["results"], sort_keys=True) == json.dumps(
        serial.metrics["results"], sort_keys=True
    )


@pytest.mark.slow
def test_a_second_run_that_moves_a_registry_alias_says_so(small_cohort, tmp_path: Path) -> None:
    from conftest import TINY

    cohort = small_cohort.subset(small_cohort.patients["patient_id"].iloc[:160])
    config = TINY.model_copy(update={"tasks": ["severe_crs"]})
    uri = f"sqlite:///{tmp_path / 'registry.db'}"
    first = train(cohort, config=config, tracking_uri=uri, out=tmp_path / "one", show_progress=False)
    second = train(cohort, config=config, tracking_uri=uri, out=tmp_path / "two", show_progress=False)
    assert first.repointed == []
    assert "crsrisk-severe_crs-36h@candidate re-pointed from version 1 to 2" in second.repointed
    assert "crsrisk-severe_crs@candidate re-pointed from version 1 to 2" in second.repointed


def test_too_few_events_names_the_infusions_cut_short(small_cohort) -> None:
    from crsrisk.cohort.validated import Cohort
    from crsrisk.tasks import tasks_from_config
    from crsrisk.training.config import TrainConfig
    from crsrisk.training.run import plan_training

    few = small_cohort.subset(small_cohort.patients["patient_id"].iloc[:12])
    short = Cohort(few.patients.assign(followup_hours=100.0), few.measurements, few.events, few.metadata)
    planned, skipped = plan_training(short, tasks_from_config({"tasks": {"severe_crs": {}}}), TrainConfig())
    assert not planned and len(skipped) == 2
    first = sorted(short.patients["patient_id"])[0]
    assert "excluded because follow-up ended before the outcome window closed" in skipped[0]["reason"]
    assert first in skipped[0]["reason"] and "horizon_hours" in skipped[0]["change"]  # what, then where to change
