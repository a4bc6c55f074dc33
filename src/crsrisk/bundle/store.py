"""Saving and loading model bundles: plain JSON and XGBoost's own JSON format, pinned by a SHA-256 manifest.

Loading never unpickles and never executes code from the bundle: it reads every file's bytes once, checks
them against the manifest (no file changed, added or removed; no symlink; no name outside the folder),
checks the manifest's Ed25519 signature against the trusted keys (keyring.py), and only then parses those same
bytes: boosters by XGBoost's model parser, everything else by ``json.loads``, with the calibrators and risk bands
checked before any model is served. Saving signs the manifest with the user's own key, so every bundle this user
writes is trusted by this user's commands; whether an unverified bundle may be used is trust.py's policy.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Any, Mapping

import xgboost as xgb

import crsrisk
from crsrisk.util.atomic import staged_folder
from crsrisk.bundle.format import FORMAT_VERSION, TaskModel
from crsrisk.bundle.metadata import BundleMetadata, ModelIdentity
from crsrisk.bundle.keyring import keyring, user_signing_key
from crsrisk.bundle.signing import (
    SIGNATURE,
    UNSIGNED,
    SignatureStatus,
    check_signature,
    load_private_key,
    signature_document,
)
from crsrisk.bundle.calibration import Calibrator, finite_number
from crsrisk.errors import BundleIntegrityError
from crsrisk.features.spec import feature_info
from crsrisk.cohort.population import Population

MANIFEST = "manifest.json"
BUNDLE_FILE = "bundle.json"
ENTRY_FILE = "pyfunc_entry.py"  # the MLflow model's code entry point, pinned by the manifest like the rest
ENTRY_SOURCE = Path(__file__).with_name(ENTRY_FILE)
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_CACHE_SIZE = 8
_OPTIONAL = {"metrics": {}, "label_rule_version": "", "task_settings": {}}  # model fields older bundles may lack


@dataclass(frozen=True)
class Bundle:
    """A loaded bundle whose files match its manifest: its metadata, its models by key, the manifest's own hash,
    and its trust status, which every output shows: ``trust`` (the text), ``verified`` (a trusted key signed it)
    and ``unverified_accepted`` (not verified, but let through for research use: ``crsrisk.bundle.trust``)."""

    path: Path
    metadata: BundleMetadata
    models: dict[str, TaskModel]
    digest: str
    trust: str = UNSIGNED
    verified: bool = False
    unverified_accepted: bool = False

    @cached_property
    def population(self) -> Population:
        """The training population recorded in the bundle (empty for bundles that predate it), ready for checks."""
        return Population(self.metadata.training_population)

    @property
    def identity(self) -> ModelIdentity:
        """The model's one identity (name, version, SHA-256, synthetic flag, trust), as every output names it."""
        return ModelIdentity.of(self.path, self.metadata, self.digest, self.trust)

    def for_task(self, task: str) -> list[TaskModel]:
        """The task's models, in landmark order as trained."""
        return [m for m in self.models.values() if m.task == task]

    @property
    def tasks(self) -> list[str]:
        """Tasks the bundle can score, in training order."""
        return list(dict.fromkeys(m.task for m in self.models.values()))


@dataclass(frozen=True)
class BundleFiles:
    """A bundle folder's bytes, each file read once: the manifest, the signature (if any), the listed files."""

    folder: Path
    manifest: bytes
    signature: bytes | None
    files: dict[str, bytes]

    @property
    def digest(self) -> str:
        """SHA-256 of the manifest bytes: identifies the bundle's whole content."""
        return hashlib.sha256(self.manifest).hexdigest()


def _json_bytes(data: Any) -> bytes:
    return json.dumps(data, indent=1, sort_keys=True, allow_nan=False).encode()


def save_bundle(
    models: list[TaskModel], out_dir: str | os.PathLike, metadata: BundleMetadata | Mapping[str, Any]
) -> Path:
    """Write the bundle folder atomically with its manifest of SHA-256 hashes, signed with the user's own key
    (made on first use: ``keyring.user_signing_key``). The format version, crsrisk version and creation time are
    this save's own. Every command that writes a bundle saves it here, so every one is signed."""
    fields = metadata.to_dict() if isinstance(metadata, BundleMetadata) else dict(metadata)
    checked = BundleMetadata.from_dict(
        fields
        | {
            "format_version": FORMAT_VERSION,
            "crsrisk_version": crsrisk.__version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        },
        "bundle metadata to save",
    )
    target = Path(out_dir)
    with staged_folder(target) as staging:
        entries = []
        for model in models:
            folder = staging / model.key
            folder.mkdir()
            model.booster.save_model(str(folder / "booster.json"))
            (folder / "calibrator.json").write_bytes(_json_bytes(model.calibrator.to_dict()))
            spec = [
                {
                    "name": n,
                    "label": feature_info(n).label,
                    "unit": feature_info(n).unit,
                    "log_scale": feature_info(n).log_scale,
                }
                for n in model.feature_names
            ]
            (folder / "features.json").write_bytes(_json_bytes(spec))
            entries.append(
                {
                    "key": model.key,
                    "task": model.task,
                    "landmark": model.landmark.to_json(),
                    "bands": model.bands,
                    "metrics": model.metrics,
                    "label_rule_version": model.label_rule_version,
                    "task_settings": model.task_settings,
                }
            )
        document = {**checked.to_dict(), "models": entries}
        (staging / BUNDLE_FILE).write_bytes(_json_bytes(document))
        (staging / ENTRY_FILE).write_bytes(ENTRY_SOURCE.read_bytes())
        files = sorted(p.relative_to(staging).as_posix() for p in staging.rglob("*") if p.is_file())
        manifest = _json_bytes(
            {"algorithm": "sha256", "files": {f: hashlib.sha256((staging / f).read_bytes()).hexdigest() for f in files}}
        )
        (staging / MANIFEST).write_bytes(manifest)
        (staging / SIGNATURE).write_bytes(signature_document(manifest, user_signing_key()))
    return target


def _confined(name: Any, where: Path) -> str:
    """A manifest file name, refused unless it is a plain relative path inside the bundle folder."""
    parts = name.split("/") if isinstance(name, str) else []
    if (
        not parts
        or name.startswith("/")
        or "\\" in name
        or "\x00" in name
        or any(p in ("", ".", "..") for p in parts)
        or name in (MANIFEST, SIGNATURE)
    ):
        raise BundleIntegrityError(f"{where}: manifest names {name!r}, which is not a file inside the bundle folder")
    return name


def _read(folder: Path, name: str) -> bytes:
    """One file's bytes, refusing a symlink (at the file or any folder above it inside the bundle)."""
    path = folder / name
    if os.path.realpath(path) != str(path):
        raise BundleIntegrityError(f"{folder}: {name!r} is reached through a symlink; bundles hold plain files only")
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as handle:
        return handle.read()


def read_bundle_files(path: str | Path) -> BundleFiles:
    """Read every file of a bundle once and check it against the manifest; refuse changed, missing, unlisted
    or symlinked files and names outside the folder, by name."""
    folder = Path(path).resolve()
    if not (folder / MANIFEST).is_file():
        raise BundleIntegrityError(f"{folder}: no {MANIFEST}; not a crsrisk model bundle")
    present = set()
    for root, dirs, names in os.walk(folder):
        for name in dirs + names:
            entry = Path(root, name)
            relative = entry.relative_to(folder).as_posix()
            if entry.is_symlink():
                raise BundleIntegrityError(f"{folder}: {relative!r} is a symlink; bundles hold plain files only")
            if name in names:
                present.add(relative)
    manifest = _read(folder, MANIFEST)
    try:
        listed = json.loads(manifest)["files"]
        if not isinstance(listed, dict) or not all(isinstance(v, str) for v in listed.values()):
            raise TypeError("'files' must map file names to SHA-256 hex digests")
    except (ValueError, KeyError, TypeError) as error:
        raise BundleIntegrityError(f"{folder / MANIFEST}: unreadable manifest ({error})") from None
    for name in listed:
        _confined(name, folder)
    for name in sorted(present - set(listed) - {MANIFEST, SIGNATURE}):
        raise BundleIntegrityError(f"{folder}: file {name!r} is not in the manifest")
    files = {}
    for name, expected in sorted(listed.items()):
        if name not in present:
            raise BundleIntegrityError(f"{folder}: file {name!r} listed in the manifest is missing")
        files[name] = _read(folder, name)
        if hashlib.sha256(files[name]).hexdigest() != expected:
            raise BundleIntegrityError(f"{folder}: file {name!r} does not match its SHA-256 in the manifest")
    signature = _read(folder, SIGNATURE) if SIGNATURE in present else None
    return BundleFiles(folder, manifest, signature, files)


def signature_status(contents: BundleFiles) -> SignatureStatus:
    """The bundle's signature checked against every trusted key (keyring.py)."""
    return check_signature(contents.manifest, contents.signature, keyring())


def verify_bundle(path: str | Path) -> dict[str, str]:
    """Check every file against the manifest and the signature against the trusted keys; return the
    manifest's file list. Raises ``BundleIntegrityError`` naming the first problem (an unverified signature too)."""
    contents = read_bundle_files(path)
    status = signature_status(contents)
    if not status.verified:
        raise BundleIntegrityError(f"{contents.folder}: {status.text}")
    return json.loads(contents.manifest)["files"]


def sign_bundle(path: str | Path, key_path: str | os.PathLike) -> Path:
    """Check the bundle against its manifest, then write ``signature.json`` over the manifest's bytes
    (replacing any earlier signature atomically); return its path."""
    contents = read_bundle_files(path)
    document = signature_document(contents.manifest, load_private_key(key_path))
    target = contents.folder / SIGNATURE
    staging = contents.folder / f".{SIGNATURE}.tmp"
    try:
        staging.write_bytes(document)
        os.replace(staging, target)
    finally:
        staging.unlink(missing_ok=True)
    return target


_PARSED: OrderedDict[tuple[Path, str], Bundle] = OrderedDict()


def load_bundle(path: str | Path) -> Bundle:
    """Check and load a bundle, with its signature's status (refusing an unverified one is the caller's policy:
    ``crsrisk.bundle.trust``). The files are read, hashed and signature-checked on every call; the parsed models
    are cached per folder and manifest hash (they were parsed from bytes matching that manifest)."""
    contents = read_bundle_files(path)
    status = signature_status(contents)
    key = (contents.folder, contents.digest)
    if key not in _PARSED:
        _PARSED[key] = _parse(contents)
        while len(_PARSED) > _CACHE_SIZE:
            _PARSED.popitem(last=False)
    return dataclasses.replace(_PARSED[key], trust=status.text, verified=status.verified)


def _bytes(contents: BundleFiles, name: str) -> bytes:
    if name not in contents.files:
        raise BundleIntegrityError(f"{contents.folder}: file {name!r} is not in the manifest")
    return contents.files[name]


def _json(contents: BundleFiles, name: str) -> Any:
    try:
        return json.loads(_bytes(contents, name))
    except ValueError as error:
        raise BundleIntegrityError(f"{contents.folder / name}: not valid JSON ({error})") from None


def checked_bands(bands: Any, where: str) -> dict[str, float]:
    """Risk-band cut-offs ``{"low", "high"}``, refused unless finite with 0 <= low <= high <= 1."""
    if not isinstance(bands, dict) or set(bands) != {"low", "high"}:
        raise BundleIntegrityError(f"{where}: bands must be {{'low': p, 'high': p}}, got {bands!r}")
    try:
        values = {name: finite_number(bands[name], f"band {name!r}") for name in ("low", "high")}
    except ValueError as error:
        raise BundleIntegrityError(f"{where}: {error}") from None
    if not 0.0 <= values["low"] <= values["high"] <= 1.0:
        raise BundleIntegrityError(f"{where}: bands must satisfy 0 <= low <= high <= 1, got {values}")
    return values


def _model(contents: BundleFiles, entry: Any) -> TaskModel:
    """One model of ``bundle.json``'s list, parsed from the bytes already checked against the manifest."""
    where = contents.folder / BUNDLE_FILE
    if not isinstance(entry, dict):
        raise BundleIntegrityError(f"{where}: each model entry must be an object, got {entry!r}")
    key = entry.get("key")
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise BundleIntegrityError(f"{where}: model key {key!r} is not a plain folder name inside the bundle")
    booster = xgb.Booster()
    try:
        booster.load_model(bytearray(_bytes(contents, f"{key}/booster.json")))
    except xgb.core.XGBoostError as error:
        raise BundleIntegrityError(
            f"{contents.folder / key}/booster.json: not an XGBoost model ({str(error).splitlines()[0]})"
        ) from None
    spec = _json(contents, f"{key}/features.json")
    if not isinstance(spec, list) or not all(isinstance(f, dict) and isinstance(f.get("name"), str) for f in spec):
        raise BundleIntegrityError(f"{contents.folder / key}/features.json: expected a list of {{'name': ...}}")
    names = [f["name"] for f in spec]
    if booster.feature_names not in (None, names) or booster.num_features() != len(names):
        raise BundleIntegrityError(f"{contents.folder / key}: booster features differ from features.json")
    booster.feature_names = None  # rows are passed as numpy in features.json order; names cost ~20 ms a call
    try:
        calibrator = Calibrator.from_dict(_json(contents, f"{key}/calibrator.json"))
    except ValueError as error:
        raise BundleIntegrityError(f"{contents.folder / key}/calibrator.json: {error}") from None
    fields = {"task": str, "metrics": dict, "label_rule_version": str, "task_settings": dict}
    values: dict[str, Any] = {name: entry.get(name, _OPTIONAL.get(name)) for name in fields}
    for name, kind in fields.items():
        if not isinstance(values[name], kind):
            raise BundleIntegrityError(
                f"{where}: model {key} field {name!r} is missing or of the wrong type: {values[name]!r:.80}"
            )
    bands = checked_bands(entry.get("bands"), f"{where} model {key}")
    try:  # TaskModel parses the landmark (hours, first_<drug> or a grid) and refuses anything else
        return TaskModel(
            values["task"],
            entry.get("landmark"),  # type: ignore[arg-type]  # landmark: parsed there
            booster,
            calibrator,
            names,
            bands,
            values["metrics"],
            values["label_rule_version"],
            values["task_settings"],
        )
    except ValueError as error:
        raise BundleIntegrityError(f"{where}: model {key}: {error}") from None


def _parse(contents: BundleFiles) -> Bundle:
    document = _json(contents, BUNDLE_FILE)
    if not isinstance(document, dict) or document.get("format_version") != FORMAT_VERSION:
        version = document.get("format_version") if isinstance(document, dict) else None
        raise BundleIntegrityError(f"{contents.folder}: bundle format {version!r}, this crsrisk reads {FORMAT_VERSION}")
    if not isinstance(document.get("models"), list):
        raise BundleIntegrityError(f"{contents.folder / BUNDLE_FILE}: 'models' must be a list")
    models = {}
    for entry in document["models"]:
        model = _model(contents, entry)  # checks the entry is an object with a plain key
        models[entry["key"]] = model
    metadata = BundleMetadata.from_dict(
        {k: v for k, v in document.items() if k != "models"}, str(contents.folder / BUNDLE_FILE)
    )
    return Bundle(contents.folder, metadata, models, contents.digest)
