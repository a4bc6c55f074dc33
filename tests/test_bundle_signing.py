"""Signed bundles: care refuses unsigned, wrongly signed and re-manifested bundles, --allow-unverified lets them
through saying so; loading parses the bytes it hashed, keeps to the bundle folder, checks calibrators and bands.
(The campaign's tamperings of the shipped bundle and the per-user key: test_trust.py.)"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crsrisk.bundle import load_bundle, sign_bundle
from crsrisk.bundle import store
from crsrisk.bundle.signing import ENV_TRUSTED_KEYS, generate_keypair, trusted_keys
from crsrisk.cli import app
from crsrisk.errors import BundleIntegrityError
from tests_support import patient_record


@pytest.fixture()
def bundle_copy(small_bundle: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(small_bundle, target)
    return target


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    folder = tmp_path_factory.mktemp("keys")
    return {name: generate_keypair(folder / name) for name in ("ours", "theirs")}


@pytest.fixture(autouse=True)
def no_trusted_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_TRUSTED_KEYS, raising=False)


def remanifest(folder: Path) -> None:
    """What an attacker without the key can do: recompute every hash after an edit."""
    manifest = json.loads((folder / "manifest.json").read_text())
    names = sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and p.name not in ("manifest.json", "signature.json")
    )
    manifest["files"] = {n: hashlib.sha256((folder / n).read_bytes()).hexdigest() for n in names}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_keygen_writes_a_private_key_only_the_owner_reads_and_never_overwrites(tmp_path: Path) -> None:
    private, public = generate_keypair(tmp_path / "k")
    assert private.stat().st_mode & 0o777 == 0o600
    assert b"PRIVATE KEY" in private.read_bytes() and b"PUBLIC KEY" in public.read_bytes()
    before = private.read_bytes()
    with pytest.raises(FileExistsError, match="already exists"):
        generate_keypair(tmp_path / "k")
    assert private.read_bytes() == before


def test_an_unsigned_bundle_is_read_but_refused_for_care(bundle_copy: Path, small_cohort) -> None:
    from crsrisk.scoring import load_model, predict

    (bundle_copy / "signature.json").unlink()
    assert (load_bundle(bundle_copy).trust, load_bundle(bundle_copy).verified) == ("unsigned", False)
    patient = patient_record(small_cohort, small_cohort.patients["patient_id"].iloc[0])
    with pytest.raises(BundleIntegrityError, match="unsigned: refused, a bundle used for care must be signed"):
        predict(patient, model=bundle_copy, now_hours=40, audit=False)
    result = predict(patient, model=load_model(bundle_copy, allow_unverified=True), now_hours=40, audit=False)
    assert result.to_dict()["model"]["signature"] == (
        "UNVERIFIED (unsigned): accepted for research use only (--allow-unverified / $CRSRISK_ALLOW_UNVERIFIED=1)"
    )


def test_signed_bundle_is_verified_against_trusted_keys(bundle_copy: Path, keys, monkeypatch) -> None:
    private, public = keys["ours"]
    sign_bundle(bundle_copy, private)
    key_id = next(iter(trusted_keys(str(public))))
    assert load_bundle(bundle_copy).trust == f"signed by key {key_id}, which is not a trusted key"
    monkeypatch.setenv(ENV_TRUSTED_KEYS, str(public.parent))  # a folder of keys: both are trusted
    assert load_bundle(bundle_copy).trust == f"signed by trusted key {key_id} ($CRSRISK_TRUSTED_KEYS), verified"
    monkeypatch.setenv(ENV_TRUSTED_KEYS, str(public))
    assert load_bundle(bundle_copy).verified


def test_edited_and_remanifested_bundle_is_refused_for_care(bundle_copy: Path, keys, monkeypatch) -> None:
    from crsrisk.scoring import load_model

    private, public = keys["ours"]
    sign_bundle(bundle_copy, private)
    edit_json(bundle_copy / "icans__36h" / "calibrator.json", lambda d: d["params"].update(b=5.0))
    remanifest(bundle_copy)
    monkeypatch.setenv(ENV_TRUSTED_KEYS, str(public))
    read = load_bundle(bundle_copy)  # the hashes agree, the signature does not
    assert read.models["icans__36h"].calibrator.params["b"] == 5.0 and not read.verified
    with pytest.raises(BundleIntegrityError, match="does not match manifest.json: the bundle was changed"):
        load_model(bundle_copy)


def test_wrong_key_and_unsigned_bundles_are_refused(bundle_copy: Path, keys, monkeypatch) -> None:
    from crsrisk.scoring import load_model

    monkeypatch.setenv(ENV_TRUSTED_KEYS, str(keys["ours"][1]))
    (bundle_copy / "signature.json").unlink()
    with pytest.raises(BundleIntegrityError, match="unsigned: refused"):
        load_model(bundle_copy)
    sign_bundle(bundle_copy, keys["theirs"][0])
    with pytest.raises(BundleIntegrityError, match="which is not a trusted key: refused"):
        load_model(bundle_copy)
    # a signature by another key that claims our key's id
    ours = next(iter(trusted_keys(str(keys["ours"][1]))))
    edit_json(bundle_copy / "signature.json", lambda d: d.update(key_id=ours))
    with pytest.raises(BundleIntegrityError, match=f"signature by key {ours} does not match"):
        load_model(bundle_copy)
    (bundle_copy / "signature.json").write_text("{not json")
    with pytest.raises(BundleIntegrityError, match="unreadable signature.json"):
        load_model(bundle_copy)


def test_signing_refuses_a_bundle_that_does_not_match_its_manifest(bundle_copy: Path, keys) -> None:
    before = (bundle_copy / "signature.json").read_bytes()
    (bundle_copy / "icans__0h" / "features.json").write_text("[]")
    with pytest.raises(BundleIntegrityError, match="'icans__0h/features.json' does not match"):
        sign_bundle(bundle_copy, keys["ours"][0])
    assert (bundle_copy / "signature.json").read_bytes() == before


def test_a_misconfigured_trust_setting_is_an_error_not_silence(bundle_copy: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(ENV_TRUSTED_KEYS, str(tmp_path / "typo.pem"))
    with pytest.raises(BundleIntegrityError, match="neither a key file nor a folder"):
        load_bundle(bundle_copy)
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv(ENV_TRUSTED_KEYS, str(tmp_path / "empty"))
    with pytest.raises(BundleIntegrityError, match="holds no .pem or .pub"):
        load_bundle(bundle_copy)


@pytest.mark.parametrize(
    "damage, message",
    [
        ("traversal_key", "model key '../icans__0h' is not a plain folder name"),
        ("absolute_name", "manifest names '/etc/passwd', which is not a file inside the bundle folder"),
        ("dotdot_name", "manifest names 'icans__0h/../../outside.json'"),
        ("symlink_file", "'icans__0h/calibrator.json' is a symlink"),
        ("symlink_folder", "'icans__36h' is a symlink"),
    ],
)
def test_names_are_confined_to_the_bundle_folder(bundle_copy: Path, tmp_path: Path, damage: str, message: str) -> None:
    outside = tmp_path / "outside.json"
    outside.write_text("{}")
    if damage == "traversal_key":
        edit_json(bundle_copy / "bundle.json", lambda d: d["models"][0].update(key="../icans__0h"))
        remanifest(bundle_copy)
    elif damage in ("absolute_name", "dotdot_name"):
        name = "/etc/passwd" if damage == "absolute_name" else "icans__0h/../../outside.json"
        edit_json(bundle_copy / "manifest.json", lambda d: d["files"].update({name: "0" * 64}))
    elif damage == "symlink_file":
        target = bundle_copy / "icans__0h" / "calibrator.json"
        shutil.copy(target, outside)
        target.unlink()
        target.symlink_to(outside)  # same bytes, so the hash still matches: only the symlink is wrong
    else:
        moved = tmp_path / "moved"
        shutil.move(bundle_copy / "icans__36h", moved)
        (bundle_copy / "icans__36h").symlink_to(moved)
    with pytest.raises(BundleIntegrityError, match=message.replace("(", r"\(").replace(".", r"\.")):
        load_bundle(bundle_copy)


@pytest.mark.parametrize(
    "damage, message",
    [
        ("nan_platt", "calibrator.json: calibrator: parameter a must be a finite number, got nan"),
        ("text_platt", "parameter b must be a finite number, got '1'"),
        ("isotonic_x", "isotonic x must be strictly increasing"),
        ("isotonic_y", "isotonic y must be non-decreasing probabilities in \\[0, 1\\]"),
        ("isotonic_above_one", "isotonic y must be non-decreasing probabilities in \\[0, 1\\]"),
        ("band_above_one", "bands must satisfy 0 <= low <= high <= 1"),
        ("band_order", "bands must satisfy 0 <= low <= high <= 1"),
        ("band_nan", "band 'high' must be a finite number"),
        ("band_missing", "bands must be"),
    ],
)
def test_calibrators_and_bands_are_checked_before_serving(bundle_copy: Path, damage: str, message: str) -> None:
    calibrator = bundle_copy / "severe_crs__36h" / "calibrator.json"
    isotonic = {"x": [-1.0, 0.0, 1.0], "y": [0.1, 0.2, 0.3]}
    changes = {
        "nan_platt": lambda: calibrator.write_text('{"method": "platt", "params": {"a": NaN, "b": 0.0}}'),
        "text_platt": lambda: edit_json(calibrator, lambda d: d["params"].update(b="1")),
        "isotonic_x": lambda: calibrator.write_text(
            json.dumps({"method": "isotonic", "params": {**isotonic, "x": [-1.0, 1.0, 0.0]}})
        ),
        "isotonic_y": lambda: calibrator.write_text(
            json.dumps({"method": "isotonic", "params": {**isotonic, "y": [0.3, 0.2, 0.1]}})
        ),
        "isotonic_above_one": lambda: calibrator.write_text(
            json.dumps({"method": "isotonic", "params": {**isotonic, "y": [0.1, 0.5, 1.5]}})
        ),
        "band_above_one": lambda: edit_json(
            bundle_copy / "bundle.json", lambda d: d["models"][1]["bands"].update(high=1.5)
        ),
        "band_order": lambda: edit_json(
            bundle_copy / "bundle.json", lambda d: d["models"][1]["bands"].update(low=0.5, high=0.2)
        ),
        "band_nan": lambda: (bundle_copy / "bundle.json").write_text(
            (bundle_copy / "bundle.json").read_text().replace('"high": 0.3', '"high": NaN', 1)
        ),
        "band_missing": lambda: edit_json(bundle_copy / "bundle.json", lambda d: d["models"][1].pop("bands")),
    }
    changes[damage]()
    remanifest(bundle_copy)
    with pytest.raises(BundleIntegrityError, match=message):
        load_bundle(bundle_copy)


def test_loading_parses_the_very_bytes_it_hashed(bundle_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[str] = []
    original = store._read
    monkeypatch.setattr(store, "_read", lambda folder, name: reads.append(name) or original(folder, name))
    store._PARSED.clear()
    bundle = load_bundle(bundle_copy)
    listed = json.loads((bundle_copy / "manifest.json").read_text())["files"]
    assert sorted(reads) == sorted([*listed, "manifest.json", "signature.json"])  # each once, nothing else
    assert bundle.models["severe_crs__0h"].booster.num_features() == len(bundle.models["severe_crs__0h"].feature_names)


def test_the_mlflow_entry_point_is_pinned_by_the_manifest(bundle_copy: Path) -> None:
    entry = bundle_copy / store.ENTRY_FILE
    assert entry.read_bytes() == store.ENTRY_SOURCE.read_bytes()
    entry.write_text(entry.read_text() + "\nimport os  # injected\n")
    with pytest.raises(BundleIntegrityError, match="'pyfunc_entry.py' does not match"):
        load_bundle(bundle_copy)


def test_cli_keygen_sign_and_refusal(bundle_copy: Path, tmp_path: Path, small_cohort) -> None:
    runner = CliRunner()
    made = runner.invoke(app, ["keygen", "--out", str(tmp_path / "site")])
    assert made.exit_code == 0, made.output
    assert (tmp_path / "site.key").stat().st_mode & 0o777 == 0o600
    signed = runner.invoke(app, ["sign", str(bundle_copy), "--key", str(tmp_path / "site.key")])
    assert signed.exit_code == 0 and (bundle_copy / "signature.json").is_file(), signed.output
    again = runner.invoke(app, ["keygen", "--out", str(tmp_path / "site")])
    assert again.exit_code == 2 and "already exists" in again.output
    patient = tmp_path / "patient.json"
    patient.write_text(
        json.dumps(patient_record(small_cohort, small_cohort.patients["patient_id"].iloc[0]), default=str)
    )
    command = ["predict", str(patient), "--model", str(bundle_copy), "--no-audit", "--now-hours", "40"]
    trusted = {ENV_TRUSTED_KEYS: str(tmp_path / "site.pub")}
    served = runner.invoke(app, command, env=trusted)
    assert served.exit_code == 0 and "signed by trusted key" in " ".join(served.output.split()), served.output
    (tmp_path / "signature.json").write_bytes((bundle_copy / "signature.json").read_bytes())
    (bundle_copy / "signature.json").unlink()
    unsigned = runner.invoke(app, command)
    assert unsigned.exit_code == 2 and "unsigned: refused" in unsigned.output, unsigned.output
    research = runner.invoke(app, [*command, "--allow-unverified"])
    assert research.exit_code == 0 and "(UNVERIFIED (unsigned): accepted for research" in research.output
    (bundle_copy / "signature.json").write_bytes((tmp_path / "signature.json").read_bytes())
    edit_json(bundle_copy / "bundle.json", lambda d: d.update(synthetic=False))
    remanifest(bundle_copy)
    refused = runner.invoke(app, command, env=trusted)
    assert refused.exit_code == 2 and "BundleIntegrityError" in refused.output, refused.output
    assert "the bundle was changed after it was signed" in refused.output


def test_a_bundle_from_before_the_entry_point_loads_but_is_not_logged_to_mlflow(bundle_copy: Path) -> None:
    from crsrisk.service.pyfunc import log_bundle_to_mlflow

    (bundle_copy / store.ENTRY_FILE).unlink()
    remanifest(bundle_copy)
    assert load_bundle(bundle_copy).models
    with pytest.raises(BundleIntegrityError, match="no pyfunc_entry.py in the bundle .made by an older crsrisk"):
        log_bundle_to_mlflow(bundle_copy, "severe_crs", 36.0)


@pytest.mark.slow
def test_the_logged_mlflow_model_runs_the_bundles_pinned_entry_point(small_bundle: Path, tmp_path: Path) -> None:
    import mlflow

    from crsrisk.service.pyfunc import log_bundle_to_mlflow

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        experiment = mlflow.create_experiment("entry", artifact_location=(tmp_path / "artifacts").as_uri())
        with mlflow.start_run(experiment_id=experiment):
            uri = log_bundle_to_mlflow(
                small_bundle, "severe_crs", load_bundle(small_bundle).models["severe_crs__36h"].landmark
            )
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(tmp_path / "download")))
    finally:
        mlflow.set_tracking_uri(previous)
    logged_from = small_bundle.resolve() / store.ENTRY_FILE
    assert f"model_code_path: {logged_from}\n" in (local / "MLmodel").read_text()
    listed = json.loads((next(local.rglob("manifest.json"))).read_text())["files"]
    assert hashlib.sha256((local / store.ENTRY_FILE).read_bytes()).hexdigest() == listed[store.ENTRY_FILE]


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("task", ["severe_crs"], "field 'task' is missing or of the wrong type"),
        ("metrics", "x", "field 'metrics' is missing or of the wrong type"),
        ("task_settings", 3, "field 'task_settings' is missing or of the wrong type"),
        ("landmark", None, "landmark: expected hours"),
        ("landmark", True, "landmark: expected hours"),
        ("landmark", {"start": "x"}, "landmark grid"),
    ],
)
def test_model_entries_of_the_wrong_type_are_refused(bundle_copy: Path, field: str, value, message: str) -> None:
    edit_json(bundle_copy / "bundle.json", lambda d: d["models"][2].update({field: value}))
    remanifest(bundle_copy)
    with pytest.raises(BundleIntegrityError, match=message):
        load_bundle(bundle_copy)
