"""Train the default model bundle shipped with crsrisk (synthetic, not for clinical use).

Run from the repository root:  python models/train_default.py
It simulates a cohort, trains every task with the demo budget into a throw-away MLflow store,
and copies the resulting bundle to src/crsrisk/models_data/default/ (package data), so that
`crsrisk.predict` works right after install. The bundle's metadata says synthetic and not for
clinical use; its manifest pins every file by SHA-256, and it is signed with the project's release key
(private key at $CRSRISK_RELEASE_KEY, default ~/.config/crsrisk-release/release.key, never in the repository;
its public key is pinned in src/crsrisk/bundle/release_key.pub), so a fresh install verifies it.
Re-sign the shipped bundle only:  python models/train_default.py --sign-only  (scripts/sign_default.sh)
Record the training population's drift bins (``crsrisk monitor``'s PSI and two-sample test) in a bundle trained
before they existed, boosters and calibrators unchanged, then sign:  python models/train_default.py --population-only
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from dataclasses import replace

from crsrisk.bundle import save_bundle, sign_bundle, verify_bundle
from crsrisk.bundle.keyring import RELEASE_KEY
from crsrisk.bundle.store import load_bundle
from crsrisk.cohort.arrays import cohort_arrays
from crsrisk.cohort.io import load_cohort
from crsrisk.cohort.population import training_population
from crsrisk.landmarks import Grid

from crsrisk.simulate import simulate_cohort, write_simulated
from crsrisk.training.config import DEMO_CONFIG
from crsrisk.training.run import train

N_INFUSIONS = 1500
SEED = 7
TARGET = Path(__file__).resolve().parents[1] / "src" / "crsrisk" / "models_data" / "default"
RELEASE_PRIVATE_KEY = Path(
    os.environ.get("CRSRISK_RELEASE_KEY") or Path.home() / ".config" / "crsrisk-release" / "release.key"
)


def sign_default() -> bool:
    """Sign the shipped bundle with the release key and check that the pinned public key alone verifies it
    (with an empty config folder and no $CRSRISK_TRUSTED_KEYS, as on a fresh install). False, and says so,
    when the release key is not on this machine: the bundle then keeps the maintainer's own signature, which
    every other install refuses."""
    if not RELEASE_PRIVATE_KEY.is_file():
        print(
            f"NOT SIGNED with the release key: {RELEASE_PRIVATE_KEY} does not exist (set CRSRISK_RELEASE_KEY). "
            f"{TARGET} carries only your own key's signature and every other install will refuse it; sign it "
            "with scripts/sign_default.sh on the machine that holds the release key before committing it.",
            file=sys.stderr,
        )
        return False
    sign_bundle(TARGET, RELEASE_PRIVATE_KEY)
    with tempfile.TemporaryDirectory(prefix="crsrisk-fresh-") as fresh:
        os.environ["XDG_CONFIG_HOME"] = fresh  # a fresh install: only the pinned release key is trusted
        os.environ.pop("CRSRISK_TRUSTED_KEYS", None)
        verify_bundle(TARGET)
    print(f"{TARGET} signed with the release key and verified against {RELEASE_KEY}")
    return True


def refresh_population(target: Path = TARGET) -> None:
    """Recompute the bundle's training population (with the decile bins monitoring compares inputs with, per
    landmark hour for super-models) from its training cohort, regenerated from N_INFUSIONS and SEED and checked by
    fingerprint; the models are untouched, and every range and missing share already recorded must come out the
    same (else the feature code changed since training: retrain instead). Saved through the one save path."""
    bundle = load_bundle(target)
    with tempfile.TemporaryDirectory(prefix="crsrisk-population-") as scratch:
        work = Path(scratch)
        write_simulated(simulate_cohort(n=N_INFUSIONS, seed=SEED), work / "cohort")
        cohort = load_cohort(work / "cohort")
        if cohort.fingerprint() != bundle.metadata.training_cohort_fingerprint:
            sys.exit(f"{target}: its training cohort is not simulate_cohort(n={N_INFUSIONS}, seed={SEED}); retrain")
        arrays = cohort_arrays(cohort)
        inputs, hours = {}, {}
        for key, model in bundle.models.items():
            data = model.definition.dataset(cohort, model.landmark, arrays)
            inputs[key] = data.X[model.feature_names]
            if isinstance(model.landmark, Grid):
                hours[key] = data.landmark_hours
        population = training_population(cohort, inputs, hours)
        recorded = (bundle.metadata.training_population or {}).get("models", {})
        for key, before in recorded.items():
            now = population["models"][key]
            if any(before.get(k) != now[k] for k in ("features", "low", "high", "missing", "row_missing_mean")):
                sys.exit(f"{target}: {key}'s recomputed inputs differ from those it was trained on; retrain")
        staging = target.with_name(f".{target.name}.new")
        if staging.exists():
            shutil.rmtree(staging)
        save_bundle(list(bundle.models.values()), staging, replace(bundle.metadata, training_population=population))
        shutil.rmtree(target)
        staging.rename(target)
    print(f"{target}: training population recomputed with drift bins")


def main() -> None:
    """Simulate, train, and install the bundle as package data."""
    with tempfile.TemporaryDirectory(prefix="crsrisk-default-") as scratch:
        work = Path(scratch)
        write_simulated(simulate_cohort(n=N_INFUSIONS, seed=SEED), work / "cohort")
        result = train(
            work / "cohort",
            config=DEMO_CONFIG,
            tracking_uri=f"sqlite:///{work / 'mlflow.db'}",
            out=work / "run",
            register=False,
        )
        staging = TARGET.with_name(".default.new")
        if staging.exists():
            shutil.rmtree(staging)
        shutil.copytree(result.bundle_dir, staging)
        if TARGET.exists():
            shutil.rmtree(TARGET)
        staging.rename(TARGET)
    print(f"default bundle written to {TARGET}")
    sign_default()


if __name__ == "__main__":
    if sys.argv[1:] == ["--sign-only"]:
        sys.exit(0 if sign_default() else 1)
    if sys.argv[1:] == ["--population-only"]:
        refresh_population()
        sys.exit(0 if sign_default() else 1)
    main()
