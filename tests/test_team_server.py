"""A team's tracking server: `mlflow server` on PostgreSQL with proxied artifacts, trained into and served from.

The PostgreSQL cluster is a throw-away one (``initdb`` in a temporary folder, loopback only, a free port), so
nothing global is touched; it needs Debian's ``postgresql`` package (``scripts/test.sh`` installs it as root).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import mlflow
import numpy as np
import pytest
import yaml

import crsrisk
from crsrisk.bundle import load_bundle
from crsrisk.tasks import LandmarkFeatures
from crsrisk.service.local import free_port, local_server
from tests_support import patient_record, served_probabilities, venv_env
from conftest import TINY

DATABASE, ROLE = "mlflow", "crsrisk"


def _postgres_bin() -> Path | None:
    """The newest PostgreSQL server binaries of Debian's packages, if installed."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


def _as_cluster_owner() -> list[str]:
    """PostgreSQL refuses to run as root: as root, run its tools as the ``postgres`` user the package creates."""
    if os.geteuid() != 0:
        return []
    if shutil.which("runuser") is None:
        pytest.skip("running as root without runuser: cannot start PostgreSQL as the postgres user")
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("running as root and there is no postgres user (install Debian's postgresql package)")
    return ["runuser", "-u", "postgres", "--"]


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A throw-away PostgreSQL cluster on a free loopback port with an ``mlflow`` database; removed afterwards."""
    binaries = _postgres_bin()
    if binaries is None:
        pytest.skip(
            "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin "
            "(apt-get install postgresql; scripts/test.sh does so when run as root)"
        )
    owner = _as_cluster_owner()
    folder = Path(tempfile.mkdtemp(prefix="crsrisk-pg-"))  # short: the socket path must stay under 107 bytes
    if owner:
        shutil.chown(folder, "postgres")
    port, data = free_port(), folder / "data"

    def run(*command: object) -> None:
        subprocess.run([*owner, *command], check=True, capture_output=True, timeout=120)

    try:
        run(binaries / "initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8")
        run(
            binaries / "pg_ctl",
            "-D",
            data,
            "-l",
            folder / "server.log",
            "-w",
            "-o",
            f"-p {port} -k {folder} -c listen_addresses=127.0.0.1",
            "start",
        )
        try:
            psql = [binaries / "psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-v", "ON_ERROR_STOP=1"]
            run(*psql, "-c", f"CREATE ROLE {ROLE} LOGIN", "-c", f"CREATE DATABASE {DATABASE} OWNER {ROLE}")
            yield f"postgresql+psycopg://{ROLE}@127.0.0.1:{port}/{DATABASE}"
            run(*psql, "-c", f"DROP DATABASE {DATABASE} WITH (FORCE)")
        finally:
            run(binaries / "pg_ctl", "-D", data, "-m", "fast", "-w", "stop")
    except subprocess.CalledProcessError as error:
        raise AssertionError(
            f"{error.cmd[len(owner)]} failed: {error.stderr.decode(errors='replace')[-2000:]}"
        ) from error
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def team_server(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``mlflow server`` on the PostgreSQL store, serving artifacts from a shared folder; stopped afterwards."""
    folder = tmp_path_factory.mktemp("team-server")
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        postgres_url,
        "--artifacts-destination",
        str(folder / "artifacts"),
        "--serve-artifacts",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    url = f"http://127.0.0.1:{port}"
    with local_server(command, f"{url}/health", env=venv_env(), timeout=180, log=folder / "server.log"):
        yield url


@pytest.mark.slow
def test_train_register_load_by_alias_score_and_serve_through_a_team_server(
    team_server: str, small_cohort_dir: Path, small_cohort, tmp_path: Path
) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY.model_dump(mode="json")))
    env = venv_env()
    env.pop("MLFLOW_TRACKING_URI", None)  # the option alone must send everything to the server
    trained = subprocess.run(
        [
            sys.executable,
            "-m",
            "crsrisk.cli",
            "train",
            str(small_cohort_dir),
            "--task",
            "severe_crs",
            "--config",
            str(config),
            "--tracking-uri",
            team_server,
            "--out",
            str(tmp_path / "run"),
            "--no-progress",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert f"browse: {team_server}" in trained.stdout and "View run" not in trained.stdout
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlruns").exists()  # nothing stored locally
    local = load_bundle(tmp_path / "run" / "model")
    assert local.metadata.mlflow_tracking_uri == team_server and local.metadata.mlflow_tracking_store == "server"

    client = mlflow.MlflowClient(tracking_uri=team_server)
    version = client.get_model_version_by_alias("crsrisk-severe_crs", "candidate")
    registration = client.get_run(version.run_id)
    assert registration.data.tags["kind"] == "registration" and registration.data.tags["task"] == "severe_crs"
    assert registration.info.artifact_uri.startswith("mlflow-artifacts:")  # stored through the server's proxy

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(team_server)  # what MLFLOW_TRACKING_URI does for a team member's session
    try:
        bundle = crsrisk.load_model("models:/crsrisk-severe_crs@candidate")
    finally:
        mlflow.set_tracking_uri(previous)
    assert bundle.digest == local.digest  # the very bundle training wrote, through the server's artifact proxy
    patient = patient_record(small_cohort, str(small_cohort.patients["patient_id"].iloc[0]))
    remote = crsrisk.predict(patient, model=bundle, now_hours=40, audit=False).to_dict()["predictions"]
    here = crsrisk.predict(patient, model=local, now_hours=40, audit=False).to_dict()["predictions"]
    assert remote and [p["probability"] for p in remote] == [p["probability"] for p in here]
    assert 0.0 < remote[0]["probability"] < 1.0

    model = local.models["severe_crs__36h"]
    X = LandmarkFeatures(task="severe_crs", landmark=36.0).fit_transform(small_cohort).iloc[:5]
    served = served_probabilities(team_server, "models:/crsrisk-severe_crs@candidate", X, tmp_path / "serve.log")
    expected = model.calibrator.transform(model.booster.inplace_predict(X.to_numpy(), predict_type="margin"))
    np.testing.assert_allclose(served, expected, rtol=1e-6)

    audited = subprocess.run(
        [
            sys.executable,
            "-m",
            "crsrisk.cli",
            "audit",
            "--model",
            str(tmp_path / "run" / "model"),
            "--cohort",
            str(small_cohort_dir),
            "--out",
            str(tmp_path / "card"),
            "--n-boot",
            "50",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert audited.returncode == 0, audited.stderr[-3000:]
    run_id = local.metadata.mlflow_run_id
    assert f"logged to MLflow run {run_id} ({team_server})" in " ".join(audited.stdout.split())
    assert [a.path for a in client.list_artifacts(run_id, "model_card")] == ["model_card/model_card.html"]


@pytest.mark.parametrize(
    "uri, recorded",
    [
        ("sqlite:///mlflow.db", None),
        ("sqlite:////tmp/crsrisk-default-x/mlflow.db", None),
        ("file:///home/me/mlruns", None),
        ("/home/me/mlruns", None),
        ("", None),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("https://alice:s3cret@mlflow.example.org/", "https://alice@mlflow.example.org/"),
        (
            "postgresql+psycopg://mlflow:pw@db.example.org:5432/mlflow",
            "postgresql+psycopg://mlflow@db.example.org:5432/mlflow",
        ),
    ],
)
def test_a_bundle_names_only_a_tracking_store_others_can_reach_and_never_its_password(uri: str, recorded) -> None:
    from crsrisk.training.artifacts import shared_tracking_uri

    assert shared_tracking_uri(uri) == recorded


@pytest.mark.slow
def test_audit_of_a_bundle_trained_on_a_local_store_says_so_and_creates_no_store(
    trained, small_cohort_dir: Path, tmp_path: Path
) -> None:
    _, uri, result = trained
    metadata = load_bundle(result.bundle_dir).metadata
    assert metadata.mlflow_tracking_uri is None and metadata.mlflow_tracking_store == "local"
    command = [
        sys.executable,
        "-m",
        "crsrisk.cli",
        "audit",
        "--model",
        str(result.bundle_dir),
        "--cohort",
        str(small_cohort_dir),
        "--out",
        str(tmp_path / "card"),
        "--n-boot",
        "50",
    ]
    audited = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert audited.returncode == 0, audited.stderr[-3000:]
    said = " ".join(audited.stdout.split())
    assert f"MLflow run {result.run_id} was tracked in a local store on the machine that trained it" in said
    assert "pass --tracking-uri" in said and not (tmp_path / "mlflow.db").exists()
    assert "model card, " in said and ": 1/5 evaluating" in said and ": 5/5 SHAP" in said  # progress as it builds
    again = subprocess.run([*command, "--tracking-uri", uri], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert f"logged to MLflow run {result.run_id} ({uri})" in " ".join(again.stdout.split()), again.stderr[-3000:]
    store = Path(uri.removeprefix("sqlite:///"))  # run where the run was tracked: its mlflow.db is found there
    here = subprocess.run(command, cwd=store.parent, capture_output=True, text=True, timeout=600)
    assert f"logged to MLflow run {result.run_id} (sqlite:///{store.resolve()})" in " ".join(here.stdout.split())
