"""Where runs go: MLflow 3 keeps runs only in a database or on a tracking server, and refuses its retired file
store at the first call (an MlflowException after the work was done). crsrisk refuses such a URI as bad input,
naming it, before anything is read or written."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from crsrisk.cli import app
from crsrisk.errors import InputError
from crsrisk.training.tracking import DEFAULT_TRACKING_URI, tracking_store


@pytest.mark.parametrize(
    "uri",
    ["sqlite:///runs/mlflow.db", "postgresql+psycopg2://crsrisk@db/mlflow", "https://mlflow.example.org", "databricks"],
)
def test_a_database_or_a_server_is_kept_as_given(uri: str) -> None:
    assert tracking_store(uri) == uri


def test_no_store_given_is_mlflows_own_sqlite_default() -> None:
    assert tracking_store(None) == DEFAULT_TRACKING_URI == "sqlite:///mlflow.db"


@pytest.mark.parametrize("uri", ["file:///tmp/mlruns", "/tmp/mlruns", "mlruns", "ftp://host/runs"])
def test_a_folder_or_file_store_is_refused_naming_it_and_what_works(uri: str) -> None:
    with pytest.raises(InputError) as refused:
        tracking_store(uri)
    message = str(refused.value)
    assert message.startswith(f"tracking_uri '{uri}'") and "sqlite:///" in message and "http" in message


def test_the_demo_refuses_a_file_store_before_writing_anything(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    done = CliRunner().invoke(app, ["demo", "--out", str(out), "--tracking-uri", f"file://{tmp_path}/mlruns"])
    assert done.exit_code == 2, done.output
    assert "--tracking-uri" in done.output and "not in a folder or file:// store" in " ".join(done.output.split())
    assert not out.exists() and not (tmp_path / "mlruns").exists()
