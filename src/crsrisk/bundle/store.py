"""Saving and loading model bundles: plain JSON and XGBoost's own JSON format, pinned by a SHA-256 manifest.

Loading never unpickles and never executes code from the bundle: boosters are read by XGBoost's model
parser, everything else by ``json.loads``, and only after every file's hash matched the manifest and no
file was added or removed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

import xgboost as xgb

import crsrisk
from crsrisk.atomic import staged_folder
from crsrisk.bundle.format import FORMAT_VERSION, TaskModel
from crsrisk.calibration import Calibrator
from crsrisk.errors import BundleIntegrityError
from crsrisk.features.spec import feature_info
from crsrisk.population import Population

MANIFEST = "manifest.json"
BUNDLE_FILE = "bundle.json"


@dataclass(frozen=True)
class Bundle:
    """A verified, loaded bundle: its metadata, its models by key, and the manifest's own hash."""

    path: Path
    metadata: dict[str, Any]
    models: dict[str, TaskModel]
    digest: str

    @cached_property
    def population(self) -> Population:
        """The training population recorded in the bundle (empty for bundles that predate it), ready for checks."""
        return Population(self.metadata.get("training_population"))

    def for_task(self, task: str) -> list[TaskModel]:
        """The task's models, in landmark order as trained."""
        return [m for m in self.models.values() if m.task == task]

    @property
    def tasks(self) -> list[str]:
        """Tasks the bundle can score, in training order."""
        return list(dict.fromkeys(m.task for m in self.models.values()))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _json_bytes(data: Any) -> bytes:
    return json.dumps(data, indent=1, sort_keys=True, allow_nan=False).encode()


def save_bundle(models: list[TaskModel], out_dir: str | Path, metadata: dict[str, Any]) -> Path:
    """Write the bundle folder atomically with its manifest of SHA-256 hashes."""
    target = Path(out_dir)
    with staged_folder(target) as staging:
        entries = []
        for model in models:
            folder = staging / model.key
            folder.mkdir()
            model.booster.save_model(str(folder / "booster.json"))
            (folder / "calibrator.json").write_bytes(_json_bytes(model.calibrator.to_dict()))
            spec = [{"name": n, "label": feature_info(n).label, "unit": feature_info(n).unit,
                     "log_scale": feature_info(n).log_scale} for n in model.feature_names]
            (folder / "features.json").write_bytes(_json_bytes(spec))
            entries.append({"key": model.key, "task": model.task, "landmark": model.landmark.to_json(), "bands": model.bands,
                            "metrics": model.metrics, "label_rule_version": model.label_rule_version,
                            "task_settings": model.task_settings})
        document = {"format_version": FORMAT_VERSION, "crsrisk_version": crsrisk.__version__,
                    "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "models": entries,
                    **metadata}
        (staging / BUNDLE_FILE).write_bytes(_json_bytes(document))
        files = sorted(p.relative_to(staging).as_posix() for p in staging.rglob("*") if p.is_file())
        (staging / MANIFEST).write_bytes(_json_bytes({"algorithm": "sha256",
                                                      "files": {f: _sha256(staging / f) for f in files}}))
    return target


def verify_bundle(path: str | Path) -> dict[str, str]:
    """Check every file against the manifest; refuse changed, missing or unlisted files by name."""
    folder = Path(path)
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise BundleIntegrityError(f"{folder}: no {MANIFEST}; not a crsrisk model bundle")
    try:
        listed = json.loads(manifest_path.read_text())["files"]
    except (ValueError, KeyError, TypeError) as error:
        raise BundleIntegrityError(f"{manifest_path}: unreadable manifest ({error})") from None
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} - {MANIFEST}
    for name in sorted(present - set(listed)):
        raise BundleIntegrityError(f"{folder}: file {name!r} is not in the manifest")
    for name, expected in sorted(listed.items()):
        file = folder / name
        if not file.is_file():
            raise BundleIntegrityError(f"{folder}: file {name!r} listed in the manifest is missing")
        if _sha256(file) != expected:
            raise BundleIntegrityError(f"{folder}: file {name!r} does not match its SHA-256 in the manifest")
    return listed


def load_bundle(path: str | Path) -> Bundle:
    """Verify and load a bundle (cached per folder and manifest hash)."""
    folder = Path(path).resolve()
    verify_bundle(folder)
    return _load(folder, _sha256(folder / MANIFEST))


@lru_cache(maxsize=8)
def _load(folder: Path, digest: str) -> Bundle:
    document = json.loads((folder / BUNDLE_FILE).read_text())
    if document.get("format_version") != FORMAT_VERSION:
        raise BundleIntegrityError(f"{folder}: bundle format {document.get('format_version')!r}, "
                                   f"this crsrisk reads {FORMAT_VERSION}")
    models = {}
    for entry in document["models"]:
        sub = folder / entry["key"]
        booster = xgb.Booster()
        booster.load_model(str(sub / "booster.json"))
        names = [f["name"] for f in json.loads((sub / "features.json").read_text())]
        if booster.feature_names not in (None, names):
            raise BundleIntegrityError(f"{sub}: booster features differ from features.json")
        booster.feature_names = None  # rows are passed as numpy in features.json order; names cost ~20 ms a call
        models[entry["key"]] = TaskModel(entry["task"], entry["landmark"], booster,
                                         Calibrator.from_dict(json.loads((sub / "calibrator.json").read_text())),
                                         names, entry["bands"], entry.get("metrics", {}),
                                         entry.get("label_rule_version", ""), entry.get("task_settings", {}))
    return Bundle(folder, {k: v for k, v in document.items() if k != "models"}, models, digest)
