"""How training time grows with cohort size and with the tuning budget (severe_crs, both landmarks).

Run:  python benchmarks/bench_train_scaling.py
Trains on synthetic cohorts of several sizes with the default design (5-fold x 2 repeats, nested tuning,
bootstrap CIs), then at one size with several tuning budgets, into a throw-away MLflow store, and prints
wall-clock seconds and the ratio to the smallest setting.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from crsrisk.simulate import simulate_cohort, write_simulated
from crsrisk.training.config import TrainConfig, TuningConfig
from crsrisk.training.run import train


def seconds(cohort_dir: Path, config: TrainConfig, work: Path) -> float:
    start = time.perf_counter()
    train(cohort_dir, task="severe_crs", config=config, tracking_uri=f"sqlite:///{work / 'mlflow.db'}",
          out=work / "run", show_progress=False, register=False)
    return time.perf_counter() - start


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        sizes = {}
        for n in (500, 1000, 2000):
            write_simulated(simulate_cohort(n=n, seed=1), work / f"c{n}")
            sizes[n] = seconds(work / f"c{n}", TrainConfig(), work)
            print(f"n={n:5d}, n_iter=8: {sizes[n]:6.1f} s  ({sizes[n] / sizes[500]:.2f}x of n=500)", flush=True)
        budgets = {}
        for n_iter in (4, 8, 16):
            config = TrainConfig(tuning=TuningConfig(n_iter=n_iter))
            budgets[n_iter] = sizes[1000] if n_iter == 8 else seconds(work / "c1000", config, work)
            print(f"n= 1000, n_iter={n_iter:2d}: {budgets[n_iter]:6.1f} s  ({budgets[n_iter] / budgets[4]:.2f}x of "
                  "n_iter=4)", flush=True)


if __name__ == "__main__":
    main()
