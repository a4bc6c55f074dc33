"""Regression tests of issue 22 part 2 (the fuzzing campaign's bundle classes): on a fresh install with no
configuration, the shipped bundle verifies and every tampered or re-signed copy of it is refused by ``predict``;
a bundle a user trains is trusted by that user only; ``--allow-unverified`` / ``$CRSRISK_ALLOW_UNVERIFIED`` let
unverified bundles through for research and every output says so; the user's key is made once under any race."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import shutil
import stat
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from crsrisk.bundle import load_bundle, save_bundle, sign_bundle
from crsrisk.bundle.keyring import RELEASE_KEY, user_key_path, user_signing_key
from crsrisk.bundle.signing import ENV_TRUSTED_KEYS, generate_keypair, key_id, load_public_key
from crsrisk.bundle.trust import ENV_ALLOW
from crsrisk.cli import app
from crsrisk.errors import BundleIntegrityError, InputError
from crsrisk.scoring import DEFAULT_MODEL, load_model
from test_bundle_signing import edit_json, remanifest
from tests_support import patient_record

EXAMPLE = Path(__file__).resolve().parents[1] / "src" / "crsrisk" / "service" / "example_patient.json"
RELEASE_ID = key_id(load_public_key(RELEASE_KEY))
CHANGED = "does not match manifest.json: the bundle was changed after it was signed: refused"


@pytest.fixture(autouse=True)
def no_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh install: no trusted keys configured (the test's XDG homes are already private and empty)."""
    monkeypatch.delenv(ENV_TRUSTED_KEYS, raising=False)


@pytest.fixture()
def shipped_copy(tmp_path: Path) -> Path:
    target = tmp_path / "default"
    shutil.copytree(DEFAULT_MODEL, target)
    return target


def predict_cli(model: Path, *extra: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["predict", str(EXAMPLE), "--model", str(model), "--no-audit", *extra])
    return result.exit_code, result.output


def zero_every_calibrator(folder: Path) -> None:
    for path in folder.glob("*/calibrator.json"):
        edit_json(path, lambda d: d.update(params={"a": 0.0, "b": -800.0}, bootstrap=[]))


def flip_not_for_clinical_use(folder: Path) -> None:
    edit_json(folder / "bundle.json", lambda d: d.update(not_for_clinical_use=False, synthetic=False))


def edit_bands(folder: Path) -> None:
    edit_json(folder / "bundle.json", lambda d: [m.update(bands={"low": 0.9, "high": 0.95}) for m in d["models"]])


def swap_boosters(folder: Path) -> None:
    """Two models with the same features: each loads the other's booster without complaint."""
    first, second = folder / "severe_crs__36h" / "booster.json", folder / "icans__36h" / "booster.json"
    assert (first.parent / "features.json").read_bytes() == (second.parent / "features.json").read_bytes()
    a, b = first.read_bytes(), second.read_bytes()
    first.write_bytes(b)
    second.write_bytes(a)


def change_one_booster_byte(folder: Path) -> None:
    path = folder / "severe_crs__0h" / "booster.json"
    data = bytearray(path.read_bytes())
    at = data.index(b'"split_conditions":[') + len(b'"split_conditions":[')
    at += re.search(rb"\d", bytes(data[at:])).start()  # type: ignore[union-attr]
    data[at] = ord("7") if data[at] != ord("7") else ord("3")
    path.write_bytes(bytes(data))


def reserialise_manifest(folder: Path) -> None:
    manifest = folder / "manifest.json"
    manifest.write_text(json.dumps(json.loads(manifest.read_text()), indent=2))


TAMPERINGS: dict[str, Callable[[Path], None]] = {
    "every calibrator zeroed": zero_every_calibrator,
    "not_for_clinical_use flipped": flip_not_for_clinical_use,
    "bands edited": edit_bands,
    "two models' boosters swapped": swap_boosters,
    "one booster byte changed": change_one_booster_byte,
    "manifest re-serialised": reserialise_manifest,
}


def test_regression_the_shipped_bundle_verifies_with_no_configuration() -> None:
    assert load_bundle(DEFAULT_MODEL).trust == f"signed by trusted key {RELEASE_ID} (the crsrisk release key), verified"
    code, output = predict_cli(DEFAULT_MODEL)
    assert code == 0 and f"signed by trusted key {RELEASE_ID}" in " ".join(output.split()), output
    assert not user_key_path().exists()  # reading never makes the user's key


def test_regression_a_fresh_install_verifies_the_shipped_bundle(tmp_path: Path) -> None:
    """In a new process with an empty home and nothing configured, as right after ``pip install``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRSRISK_", "XDG_"))}
    env |= {"HOME": str(tmp_path), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "crsrisk.cli", "predict", str(EXAMPLE), "--no-audit", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["model"]["signature"].startswith(f"signed by trusted key {RELEASE_ID}")


@pytest.mark.parametrize("name", list(TAMPERINGS))
def test_regression_a_tampered_shipped_bundle_is_refused_by_predict(shipped_copy: Path, name: str) -> None:
    TAMPERINGS[name](shipped_copy)
    if name != "manifest re-serialised":
        remanifest(shipped_copy)  # what an attacker without the key can do
    code, output = predict_cli(shipped_copy)
    assert code == 2 and "BundleIntegrityError" in output, output
    flat = " ".join(output.split())
    assert f"the signature by key {RELEASE_ID} {CHANGED}" in flat, output
    assert "crsrisk sign BUNDLE --key KEY" in flat and "--allow-unverified" in flat  # the fix is named
    # the signature alone refused it: with the check lowered the tampered model is served
    code, output = predict_cli(shipped_copy, "--allow-unverified", "--json")
    assert code == 0, output
    assert json.loads(output)["model"]["signature"].startswith(f"UNVERIFIED (the signature by key {RELEASE_ID}")


def test_regression_a_copy_re_signed_with_an_attackers_key_is_refused(shipped_copy: Path, tmp_path: Path) -> None:
    flip_not_for_clinical_use(shipped_copy)
    remanifest(shipped_copy)
    attacker, public = generate_keypair(tmp_path / "attacker")
    sign_bundle(shipped_copy, attacker)
    code, output = predict_cli(shipped_copy)
    theirs = key_id(load_public_key(public))
    assert code == 2 and f"signed by key {theirs}, which is not a trusted key: refused" in " ".join(output.split())


def test_regression_batch_scoring_refuses_a_tampered_bundle(shipped_copy: Path, small_cohort_dir: Path, tmp_path):
    edit_bands(shipped_copy)
    remanifest(shipped_copy)
    out = tmp_path / "scores.csv"
    command = ["predict", str(small_cohort_dir), "--model", str(shipped_copy), "--out", str(out), "--no-audit"]
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 2 and CHANGED in " ".join(result.output.split()), result.output
    assert not out.exists()


def test_regression_a_bundle_a_user_saves_is_trusted_by_that_user_only(
    small_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parent = load_bundle(small_bundle)
    mine = save_bundle(list(parent.models.values()), tmp_path / "mine", parent.metadata)  # the path train uses
    key = user_key_path()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    assert not (mine / "signing.key").exists() and key.with_suffix(".pub").is_file()
    own = key_id(user_signing_key().public_key())
    assert load_model(mine).trust == f"signed by trusted key {own} (your own key), verified"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "another-user"))
    with pytest.raises(BundleIntegrityError, match=f"signed by key {own}, which is not a trusted key: refused"):
        load_model(mine)
    monkeypatch.setenv(ENV_TRUSTED_KEYS, str(key.with_suffix(".pub")))  # the other user trusts our key
    assert load_model(mine).trust == f"signed by trusted key {own} ($CRSRISK_TRUSTED_KEYS), verified"


@pytest.mark.slow
def test_regression_crsrisk_train_signs_with_the_users_key(trained) -> None:
    """The session's training run saved its bundle with the session home's own key (conftest)."""
    from conftest import SESSION_SIGNING_KEY

    _, _, result = trained
    signer = json.loads((Path(result.bundle_dir) / "signature.json").read_text())["key_id"]
    assert signer == key_id(load_public_key(SESSION_SIGNING_KEY))


def test_regression_the_environment_variable_accepts_unverified_bundles_and_every_output_says_so(
    shipped_copy: Path, small_cohort, monkeypatch: pytest.MonkeyPatch
) -> None:
    from crsrisk.service.app import create_app

    edit_bands(shipped_copy)
    remanifest(shipped_copy)
    with pytest.raises(BundleIntegrityError, match=CHANGED):
        create_app(shipped_copy, audit=False)  # the service (and its CDS Hooks) refuses to start
    monkeypatch.setenv(ENV_ALLOW, "yes")
    with pytest.raises(InputError, match="CRSRISK_ALLOW_UNVERIFIED: expected 1"):
        load_model(shipped_copy)
    monkeypatch.setenv(ENV_ALLOW, "1")
    client = TestClient(create_app(shipped_copy, audit=False))
    record = patient_record(small_cohort, small_cohort.patients["patient_id"].iloc[0])
    body = json.loads(json.dumps(record, default=str)) | {"now_hours": 40}
    answer = client.post("/predict", json=body).json()
    assert answer["model"]["signature"].startswith("UNVERIFIED (the signature by key")
    fhir = client.post("/predict", json=body, headers={"Accept": "application/fhir+json"}).json()
    notes = [
        e["resource"]["note"][0]["text"] for e in fhir["entry"] if e["resource"]["resourceType"] == "RiskAssessment"
    ]
    assert notes and all("Model bundle UNVERIFIED (" in note for note in notes)
    assert "Model bundle UNVERIFIED (" in client.get("/").text
    assert client.get("/model").json()["signature"].startswith("UNVERIFIED")


def test_regression_the_pyfunc_refuses_an_unverified_bundle_unless_allowed(
    shipped_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pandas as pd

    from crsrisk.service.pyfunc import CrsriskPyfunc

    reserialise_manifest(shipped_copy)
    context = SimpleNamespace(model_config={"key": "severe_crs__36h"}, artifacts={"bundle": str(shipped_copy)})
    with pytest.raises(BundleIntegrityError, match=CHANGED):
        CrsriskPyfunc().load_context(context)
    monkeypatch.setenv(ENV_ALLOW, "1")
    scorer = CrsriskPyfunc()
    scorer.load_context(context)
    rows = scorer.predict(None, pd.DataFrame({"record": [EXAMPLE.read_text()]}), {"audit": False})
    assert rows["model_trust"].str.startswith("UNVERIFIED (the signature by key").all()


def test_regression_research_paths_read_unverified_bundles_and_say_so(shipped_copy: Path, small_cohort) -> None:
    from crsrisk.evaluation.external import evaluate_bundle

    (shipped_copy / "signature.json").unlink()
    document = evaluate_bundle(small_cohort, shipped_copy, n_boot=50).document
    assert document["model"]["signature"] == "UNVERIFIED (unsigned): read for research use"


def _first_use(results: list, barrier: threading.Barrier) -> None:
    barrier.wait()
    try:
        results.append(key_id(user_signing_key().public_key()))
    except Exception as error:  # every failure counted, whatever it is
        results.append(error)


def test_regression_300_races_of_first_users_make_one_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    failures = 0
    for race in range(300):
        monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / f"race{race}"))
        results: list = []
        barrier = threading.Barrier(6)
        threads = [threading.Thread(target=_first_use, args=(results, barrier)) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        ids = {r for r in results if isinstance(r, str)}
        failures += len(results) != 6 or len(ids) != 1 or any(isinstance(r, Exception) for r in results)
    assert failures == 0


def _process_first_use(folder: str, queue) -> None:
    os.environ["XDG_CONFIG_HOME"] = folder
    try:
        queue.put(key_id(user_signing_key().public_key()))
    except Exception as error:
        queue.put(repr(error))


def test_regression_races_of_first_user_processes_make_one_key(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    failures = 0
    for race in range(20):
        queue = context.Queue()
        workers = [
            context.Process(target=_process_first_use, args=(str(tmp_path / f"r{race}"), queue)) for _ in range(4)
        ]
        for worker in workers:
            worker.start()
        ids = [queue.get(timeout=60) for _ in workers]
        for worker in workers:
            worker.join()
        failures += len(set(ids)) != 1 or not all(re.fullmatch(r"[0-9a-f]{16}", i) for i in ids)
    assert failures == 0
