"""The MLflow edge of training: runs, params, metrics, artifacts, tags. Nothing else in training imports mlflow."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence
from urllib.parse import urlsplit

import mlflow
from mlflow.entities import Metric
from matplotlib.figure import Figure

import crsrisk
from crsrisk import notice
from crsrisk.errors import InputError, shown
from crsrisk.service.pyfunc import log_bundle_to_mlflow

EXPERIMENT = "crsrisk"
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"  # MLflow 3's own default: a real, transactional store
# Stores MLflow 3 keeps runs in: databases (SQLAlchemy URIs, a driver after "+") and tracking servers. A folder or a
# file:// URI is MLflow's retired file store, which it refuses at the first call.
TRACKING_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql", "http", "https", "databricks")
_VERSIONED = ("scikit-learn", "xgboost", "shap", "pandas", "numpy", "mlflow")


def package_versions() -> dict[str, str]:
    """Versions of crsrisk and the stack, recorded with every run so results can be reproduced."""
    versions = {"crsrisk": crsrisk.__version__}
    for name in _VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_commit() -> str:
    """The commit of the crsrisk source tree (``+dirty`` when it has uncommitted changes), or ``unknown``."""
    source = Path(crsrisk.__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=source,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def tracking_store(uri: str | None) -> str:
    """The MLflow tracking URI runs go to: ``uri``, else the local SQLite default. InputError naming
    ``tracking_uri`` for anything MLflow 3 keeps no runs in (a folder, a ``file://`` URI), before any work."""
    chosen = uri or DEFAULT_TRACKING_URI
    scheme = urlsplit(chosen).scheme or chosen  # a bare "databricks" is MLflow's own name for that server
    if scheme.split("+")[0].lower() not in TRACKING_SCHEMES:
        raise InputError(
            f"tracking_uri {shown(chosen)}: MLflow 3 keeps runs only in a database (sqlite:///PATH/mlflow.db, "
            "postgresql://...) or on a tracking server (http(s)://HOST:PORT), not in a folder or file:// store"
        )
    return chosen


def _quiet_mlflow() -> None:
    """Silence MLflow's informational chatter (alembic migrations, run links, download bars) at its source."""
    for name in ("mlflow", "alembic", "alembic.runtime.migration"):
        logging.getLogger(name).setLevel(logging.WARNING)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # "View run at" lines for a server


@contextlib.contextmanager
def parent_run(tracking_uri: str, run_name: str, tags: Mapping[str, str], params: Mapping[str, Any]) -> Iterator[str]:
    """One MLflow run per ``train`` call, in ``tracking_uri`` (``tracking_store``'s answer, which ``train`` asked
    before any work); yields its run id. Nested runs go inside."""
    _quiet_mlflow()
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(EXPERIMENT)
    with mlflow.start_run(run_name=run_name, tags=dict(tags)) as run:
        mlflow.log_params(dict(params))
        yield run.info.run_id


def log_child(
    run_name: str,
    params: Mapping[str, Any],
    metrics: Mapping[str, float],
    tags: Mapping[str, str],
    figures: Mapping[str, Figure] | None = None,
    artifacts: Mapping[str, Any] | None = None,
    stepped: Mapping[str, Mapping[float, float]] | None = None,
) -> str:
    """A nested run for one task/landmark/model with its metrics, plots and JSON artifacts; ``stepped`` metrics
    (a landmark grid's per-hour AUROC, ...) are logged with the landmark hour as MLflow's step, in one batch."""
    with mlflow.start_run(run_name=run_name, nested=True, tags=dict(tags)) as run:
        if params:
            mlflow.log_params({k: _param(v) for k, v in params.items()})
        finite = {k: float(v) for k, v in metrics.items() if v is not None and v == v}
        if finite:
            mlflow.log_metrics(finite)
        series = [
            Metric(name, float(v), 0, int(round(step)))
            for name, values in (stepped or {}).items()
            for step, v in values.items()
            if v is not None and v == v
        ]
        if series:
            mlflow.MlflowClient().log_batch(run.info.run_id, metrics=series)
        for name, figure in (figures or {}).items():
            mlflow.log_figure(figure, f"plots/{name}.png")
        for name, content in (artifacts or {}).items():
            mlflow.log_dict(content, name)
        return run.info.run_id


def log_artifact_dir(path: Path, artifact_path: str) -> None:
    """Copy a folder (metrics, config, plots) into the active run's artifacts."""
    mlflow.log_artifacts(str(path), artifact_path)


def _param(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:6000]


def registered_name(task: str, landmark: Any) -> str:
    """The registry name of one task's model at one landmark, e.g. ``crsrisk-severe_crs-36h``."""
    return f"crsrisk-{task}-{landmark.label}"


def _describe_version(client: mlflow.MlflowClient, name: str, version: str, model: Any, synthetic: bool) -> None:
    """Say on the registered version what it answers, what it takes, and whether it is synthetic."""
    client.update_model_version(
        name,
        version,
        description=(
            f"crsrisk {model.task} at landmark {model.landmark.label}: {model.definition.description}. "
            f"Input: this model's feature rows, or patient records (column 'record', JSON; optional 'now_hours') "
            f"scored by the whole bundle. {notice.banner(synthetic)}"
        ),
    )
    client.set_model_version_tag(name, version, "synthetic", str(synthetic).lower())
    client.set_model_version_tag(name, version, "landmark", model.landmark.label)


def register_models(
    bundle_dir: Path, models: Sequence[Any], synthetic: bool = True
) -> tuple[dict[str, str], list[str]]:
    """Log the bundle as a pyfunc model per task and landmark, each in a nested run of its own (a run's params
    cannot change, and each logged model records its own config), and register it as
    ``crsrisk-<task>-<landmark>@candidate``; each task's latest landmark is also ``crsrisk-<task>@candidate``.
    Every version carries a description and a ``synthetic`` tag. MLflow's progress lines are kept back and shown
    only if something fails. Returns the model URIs and one sentence per alias that now points elsewhere (a
    registry others read from must never change under them silently)."""
    latest = {model.task: model for model in models}  # landmarks come in order: the last one wins
    client = mlflow.MlflowClient()
    uris: dict[str, str] = {}
    names = [registered_name(m.task, m.landmark) for m in models] + [f"crsrisk-{task}" for task in latest]
    before = {name: _alias_version(client, name) for name in names}
    for model in models:
        name = registered_name(model.task, model.landmark)
        chatter = io.StringIO()
        try:
            with (
                mlflow.start_run(
                    run_name=f"register {name}",
                    nested=True,
                    tags={"kind": "registration", "task": model.task, "model_key": model.key},
                ),
                contextlib.redirect_stderr(chatter),
                contextlib.redirect_stdout(chatter),
            ):
                uris[name] = log_bundle_to_mlflow(
                    bundle_dir, model.task, model.landmark, registered_model_name=name, alias="candidate"
                )
                names = [name] + ([f"crsrisk-{model.task}"] if latest[model.task] is model else [])
                for registered in names:
                    if registered != name:
                        version = mlflow.register_model(uris[name], registered).version
                        client.set_registered_model_alias(registered, "candidate", str(version))
                        uris[registered] = uris[name]
                    version = client.get_model_version_by_alias(registered, "candidate").version
                    _describe_version(client, registered, str(version), model, synthetic)
        except BaseException:
            sys.stderr.write(chatter.getvalue())
            raise
    moved = [
        f"{name}@candidate re-pointed from version {before[name]} to {after}"
        for name in names
        if before[name] is not None and (after := _alias_version(client, name)) != before[name]
    ]
    return uris, moved


def _alias_version(client: Any, name: str) -> str | None:
    """The version ``name@candidate`` points at, or None when the model or the alias does not exist yet."""
    try:
        return str(client.get_model_version_by_alias(name, "candidate").version)
    except mlflow.exceptions.MlflowException:
        return None


def local_tracking_store() -> str | None:
    """The default local store (``./mlflow.db``, where ``crsrisk train`` tracks unless told otherwise) when it
    exists in this folder, as an absolute URI; else None (opening a missing SQLite store would create an empty one)."""
    database = Path(DEFAULT_TRACKING_URI.removeprefix("sqlite:///"))
    return f"sqlite:///{database.resolve()}" if database.is_file() else None


def log_report(tracking_uri: str, run_id: str, path: Path) -> str:
    """Attach a report to an existing run; say plainly where it looked when that run is not there."""
    _quiet_mlflow()
    client = mlflow.MlflowClient(tracking_uri=tracking_store(tracking_uri))
    try:
        client.get_run(run_id)
    except mlflow.exceptions.MlflowException as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        return f"run {run_id} not found in {tracking_uri} ({reason}): report not logged (give the tracking URI the run was logged to)"
    client.log_artifact(run_id, str(path), "model_card")
    return f"logged to MLflow run {run_id} ({tracking_uri}) under model_card/"
