"""Regression tests of issue 22 part 3's MLflow anchor: ``crsrisk serve`` of a registered model tags the served
model version with the audit log's head, in a real SQLite MLflow store; a tag that cannot be written loses no
record and refuses no answer."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient

from crsrisk.audit import log_head, parse_head, verify_log
from crsrisk.service.anchor import TAG, VersionTag
from crsrisk.service.app import create_app
from tests_support import patient_record


@pytest.fixture()
def registry(small_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MlflowClient:
    """A SQLite store in which version 1 of ``crsrisk-test`` (alias ``serving``) is the session's bundle."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    client = MlflowClient(tracking_uri=uri)
    client.create_registered_model("crsrisk-test")
    version = client.create_model_version("crsrisk-test", source=str(small_bundle))
    client.set_registered_model_alias("crsrisk-test", "serving", version.version)
    yield client
    mlflow.set_tracking_uri(None)  # back to the default, as set before the test


def test_registered_model_uris_name_their_version(registry: MlflowClient) -> None:
    uri = mlflow.get_tracking_uri()
    assert VersionTag.for_model("models:/crsrisk-test@serving") == VersionTag("crsrisk-test", "1", uri)
    assert VersionTag.for_model("models:/crsrisk-test/1") == VersionTag("crsrisk-test", "1", uri)
    assert VersionTag.for_model("models:/crsrisk-test@missing") is None  # warned, no tag: serving goes on
    assert VersionTag.for_model("/some/bundle/folder") is None and VersionTag.for_model(None) is None


def test_regression_serving_tags_the_model_version_with_the_audit_head(
    registry: MlflowClient, small_cohort, tmp_path: Path
) -> None:
    log = tmp_path / "audit" / "predictions.jsonl"
    client = TestClient(create_app("models:/crsrisk-test@serving", audit_log=log))
    record = patient_record(small_cohort, small_cohort.patients["patient_id"].iloc[0])
    body = json.loads(json.dumps(record, default=str)) | {"now_hours": 40}
    for _ in range(2):
        assert client.post("/predict", json=body).status_code == 200
    seq, digest = log_head(log)
    assert (
        verify_log(log).n_records == 2
        and registry.get_model_version("crsrisk-test", "1").tags[TAG] == f"{seq}:{digest}"
    )
    assert verify_log(log, expect_head=parse_head(registry.get_model_version("crsrisk-test", "1").tags[TAG])).ok

    registry.delete_registered_model("crsrisk-test")  # the tag can no longer be written
    assert client.post("/predict", json=body).status_code == 200
    kept = verify_log(log)
    assert kept.ok and kept.n_records == 3 and kept.head[0] == seq + 1  # the record was kept


def test_a_folder_model_is_served_without_an_mlflow_tag(small_bundle: Path, tmp_path: Path) -> None:
    app = create_app(small_bundle, audit_log=tmp_path / "log.jsonl")
    assert not any(getattr(m, "kwargs", {}).get("dispatch") for m in app.user_middleware)
