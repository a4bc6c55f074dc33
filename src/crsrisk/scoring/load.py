"""Loading a bundle for scoring (refused unless a trusted key signed it) or for research: a folder, an MLflow
``models:/`` URI, or the shipped default. The trust policy itself is ``crsrisk.bundle.trust``'s."""

from __future__ import annotations

import os
from pathlib import Path


from crsrisk.bundle.store import Bundle, load_bundle
from crsrisk.bundle.trust import for_care, for_research


DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "models_data" / "default"


def load_model(model: str | os.PathLike | Bundle | None = None, allow_unverified: bool = False) -> Bundle:
    """A verified bundle for care from a folder, an MLflow ``models:/`` URI, or the shipped default (None):
    refused unless a trusted key signed it, or ``allow_unverified`` (research use; every output then says so).

    Load once and pass the bundle to ``predict`` when scoring many patients: its files are hashed once."""
    return for_care(model if isinstance(model, Bundle) else _read(model), allow_unverified)


def load_for_research(model: str | os.PathLike | Bundle | None = None) -> Bundle:
    """A bundle for a research path (evaluation, audit, model card, cohort explanations), verified or not; an
    unverified one says so in every output."""
    return for_research(model if isinstance(model, Bundle) else _read(model))


def _read(model: str | os.PathLike | None) -> Bundle:
    """The bundle at a folder, an MLflow ``models:/`` or ``runs:/`` URI, or the shipped default (None)."""
    if model is None:
        if not (DEFAULT_MODEL / "manifest.json").exists():
            raise FileNotFoundError(
                f"no default model at {DEFAULT_MODEL}: run `python models/train_default.py` "
                "from the repository, or pass model=PATH"
            )
        return load_bundle(DEFAULT_MODEL)
    text = str(model)
    if text.startswith(("models:/", "runs:/")):
        import mlflow  # only for registry URIs: the file path never needs it

        _registry_reachable(text, mlflow.get_tracking_uri())
        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=text))
        except mlflow.exceptions.MlflowException as error:
            raise FileNotFoundError(
                f"{text}: not found in the MLflow registry at {mlflow.get_tracking_uri()} "
                f"({error.message.splitlines()[0]})"
            ) from None
        manifests = sorted(local.rglob("manifest.json"))
        if not manifests:
            raise FileNotFoundError(f"{text}: no crsrisk bundle inside the MLflow model")
        return load_bundle(manifests[0].parent)
    return load_bundle(text)


def _registry_reachable(uri: str, tracking_uri: str) -> None:
    """Refuse a registry URI when the tracking store is a SQLite file that does not exist: opening it would create
    an empty ``mlflow.db`` and then fail obscurely. The message says where it looked and how to point elsewhere."""
    if tracking_uri.startswith("sqlite:///"):
        database = Path(tracking_uri[len("sqlite:///") :])
        if not database.is_file():
            raise FileNotFoundError(
                f"{uri}: no MLflow registry at {tracking_uri} ({database} does not exist); set "
                "MLFLOW_TRACKING_URI to the store that holds the model, or pass a bundle folder"
            )
