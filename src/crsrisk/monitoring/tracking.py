"""The MLflow edge of monitoring: one run per ``crsrisk monitor`` with each period's figures as stepped metrics,
the report as artifacts, and a link both ways to the registered model versions of the monitored bundles (the run
is tagged with ``NAME/VERSION`` of each, and each version with the run's id and flag count)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable, Mapping

import mlflow
from mlflow.entities import Metric, Param, RunTag

from crsrisk.bundle.store import Bundle
from crsrisk.training.tracking import _quiet_mlflow, tracking_store

EXPERIMENT = "crsrisk-monitoring"
STEPPED = ("oe", "calibration_intercept", "calibration_slope", "auroc")
DRIFT = ("psi_max", "missing_change_max", "outside_population_share")


def registered_versions(client: mlflow.MlflowClient, bundles: Iterable[Bundle]) -> list[tuple[str, str]]:
    """The registered versions (name, version) logged from the bundles' training runs: a version whose run is the
    bundle's run or nested in it (``crsrisk train`` registers each model in a nested run)."""
    runs = {b.metadata.mlflow_run_id for b in bundles if b.metadata.mlflow_run_id}
    if not runs:
        return []
    found = []
    for version in client.search_model_versions("name LIKE 'crsrisk-%'"):
        if not version.run_id:
            continue
        if version.run_id in runs:
            found.append((version.name, str(version.version)))
            continue
        try:
            parent = client.get_run(version.run_id).data.tags.get("mlflow.parentRunId")
        except mlflow.exceptions.MlflowException:
            continue
        if parent in runs:
            found.append((version.name, str(version.version)))
    return sorted(set(found))


def _metrics(document: Mapping[str, Any]) -> list[Metric]:
    out = []
    for period in document["periods"]:
        step = int(period["index"])
        out.append(Metric("flags", float(len(period["flags"])), 0, step))
        for group in period["groups"]:
            prefix = f"{group['model_sha256'][:8]}/{group['task']}/{group['landmark']}"
            out.append(Metric(f"{prefix}/volume", float(group["volume"]), 0, step))
            for name in STEPPED:
                value = (group["metrics"].get(name) or {}).get("value")
                if value is not None and value == value:
                    out.append(Metric(f"{prefix}/{name}", float(value), 0, step))
            for name in DRIFT:
                value = (group.get("drift") or {}).get(name)
                if value is not None and value == value:
                    out.append(Metric(f"{prefix}/{name}", float(value), 0, step))
    return out


def log_monitoring(
    tracking_uri: str,
    document: Mapping[str, Any],
    paths: Mapping[str, Path],
    bundles: Iterable[Bundle],
    model_uris: Iterable[str] = (),
) -> tuple[str, list[tuple[str, str]]]:
    """Log the monitoring run; return its id and the registered versions it is linked to (those ``model_uris``
    name, and those registered from the bundles' training runs)."""
    _quiet_mlflow()
    bundles = list(bundles)
    client = mlflow.MlflowClient(tracking_uri=tracking_store(tracking_uri))
    versions = [v for uri in model_uris if (v := uri_version(client, uri)) is not None]
    experiment = client.get_experiment_by_name(EXPERIMENT)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(EXPERIMENT)
    linked = sorted(set(versions) | set(registered_versions(client, bundles)))
    shas = sorted({m["model_sha256"] for m in document["models"]})
    tags = {
        "kind": "monitoring",
        "model_sha256": ",".join(shas)[:5000],
        "registered_model_versions": ",".join(f"{n}/{v}" for n, v in linked)[:5000] or "none",
        "synthetic_outcomes": str(document["synthetic_outcomes"]).lower(),
        "flags": str(len(document["flags"])),
    }
    run = client.create_run(experiment_id, run_name=f"monitor {Path(document['audit_log']['path']).name}", tags=tags)
    run_id = run.info.run_id
    plan_text = json.dumps(document["plan"], sort_keys=True)
    params = {
        "audit_log": document["audit_log"]["path"],
        "audit_log_head": document["audit_log"]["head"] or "",
        "outcomes_fingerprint": document["outcomes"]["fingerprint"],
        "period": document["period"],
        "plan_sha256": hashlib.sha256(plan_text.encode()).hexdigest(),
        "predictions": document["volume"],
    }
    metrics = _metrics(document)
    client.log_batch(
        run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()], tags=[RunTag("plan", plan_text[:5000])]
    )
    for start in range(0, len(metrics), 900):  # MLflow accepts at most 1000 metrics per batch
        client.log_batch(run_id, metrics=metrics[start : start + 900])
    for name, path in paths.items():
        client.log_artifact(run_id, str(path), "monitoring" if name in ("json", "html") else "monitoring/plots")
    for name, version in linked:
        client.set_model_version_tag(name, version, "monitoring_run_id", run_id)
        client.set_model_version_tag(name, version, "monitoring_flags", str(len(document["flags"])))
    client.set_terminated(run_id)
    return run_id, linked


def uri_version(client: mlflow.MlflowClient, uri: str) -> tuple[str, str] | None:
    """The registered version a ``models:/NAME/VERSION`` or ``models:/NAME@ALIAS`` URI names (None otherwise)."""
    if not uri.startswith("models:/"):
        return None
    name_part = uri[len("models:/") :].strip("/")
    if "@" in name_part:
        name, alias = name_part.split("@", 1)
        return name, str(client.get_model_version_by_alias(name, alias).version)
    name, _, version = name_part.rpartition("/")
    return (name, version) if name and version.isdigit() else None
