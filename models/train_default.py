"""Train the default model bundle shipped with crsrisk (synthetic, not for clinical use).

Run from the repository root:  python models/train_default.py
It simulates a cohort, trains every task with the demo budget into a throw-away MLflow store,
and copies the resulting bundle to src/crsrisk/models_data/default/ (package data), so that
`crsrisk.predict` works right after install. The bundle's metadata says synthetic and not for
clinical use; its manifest pins every file by SHA-256.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from crsrisk.simulate import simulate_cohort, write_simulated
from crsrisk.training.config import DEMO_CONFIG
from crsrisk.training.run import train

N_INFUSIONS = 1500
SEED = 7
TARGET = Path(__file__).resolve().parents[1] / "src" / "crsrisk" / "models_data" / "default"


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


if __name__ == "__main__":
    main()
