"""Model bundles: round trip, refusal of tampered/extra/missing files, and loading without pickle."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from crsrisk.landmarks import Grid
from crsrisk.bundle import load_bundle, verify_bundle
from crsrisk.errors import BundleIntegrityError


@pytest.fixture()
def bundle_copy(small_bundle: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(small_bundle, target)
    return target


def test_round_trip_keeps_models_and_metadata(small_bundle: Path) -> None:
    bundle = load_bundle(small_bundle)
    assert bundle.tasks == ["severe_crs", "icans", "severe_crs_dynamic", "icans_dynamic", "toci_refractory"]
    assert set(bundle.models) == {
        "severe_crs__0h",
        "severe_crs__36h",
        "icans__0h",
        "icans__36h",
        "severe_crs_dynamic__every12h_0-168h",
        "icans_dynamic__every12h_0-168h",
        "toci_refractory__first_tocilizumab",
    }
    assert bundle.models["icans_dynamic__every12h_0-168h"].landmark == Grid(0.0, 168.0, 12.0)
    assert bundle.metadata.synthetic is True and bundle.metadata.not_for_clinical_use is True
    model = bundle.models["severe_crs__36h"]
    assert model.label_rule_version == "severe-crs-v1" and model.task_settings["grade_threshold"] == 3
    assert model.booster.num_features() == len(model.feature_names)
    files = json.loads((small_bundle / "manifest.json").read_text())["files"]
    # XGBoost JSON and plain JSON only, besides the MLflow entry point (never run by load_bundle), pinned too
    assert all(name.endswith(".json") for name in files if name != "pyfunc_entry.py") and "pyfunc_entry.py" in files


@pytest.mark.parametrize(
    "damage, message",
    [
        ("flip", "severe_crs__36h/booster.json' does not match"),
        ("extra", "'severe_crs__36h/evil.py' is not in the manifest"),
        ("missing", "'icans__0h/calibrator.json' listed in the manifest is missing"),
    ],
)
def test_tampered_bundle_is_refused_naming_the_file(bundle_copy: Path, damage: str, message: str) -> None:
    if damage == "flip":
        booster = bundle_copy / "severe_crs__36h" / "booster.json"
        data = bytearray(booster.read_bytes())
        data[len(data) // 2] ^= 0x01
        booster.write_bytes(bytes(data))
    elif damage == "extra":
        (bundle_copy / "severe_crs__36h" / "evil.py").write_text("print('pwned')")
    else:
        (bundle_copy / "icans__0h" / "calibrator.json").unlink()
    with pytest.raises(BundleIntegrityError, match=message.replace("(", r"\(")):
        load_bundle(bundle_copy)


def test_edited_manifest_does_not_help_an_attacker(bundle_copy: Path) -> None:
    calibrator = bundle_copy / "icans__36h" / "calibrator.json"
    calibrator.write_text(json.dumps({"method": "platt", "params": {"a": 0.0, "b": 10.0}}))
    with pytest.raises(BundleIntegrityError, match="calibrator.json"):
        verify_bundle(bundle_copy)


def test_loading_never_unpickles(bundle_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("pickle used while loading a bundle")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(np, "load", refuse)
    bundle = load_bundle(bundle_copy)
    assert bundle.models
