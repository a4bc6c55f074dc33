"""How training time grows: with cohort size, tuning budget, landmark-grid size and workers, quiet and busy.

Run:  python benchmarks/bench_train_scaling.py [--quick]
Each setting trains in a fresh process (default design: 5-fold x 2 repeats, nested tuning, bootstrap CIs) into a
throw-away MLflow store; wall time and CPU time (the process and its fit workers) are printed, with the ratio to
the first setting of each block. The busy block repeats a setting while one CPU-bound process per core competes
for the machine: single-threaded fits side by side should keep CPU time close to the quiet run's (OpenMP
threads that spin while waiting would multiply it).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from crsrisk.simulate import simulate_cohort, write_simulated
from crsrisk.util.cluster import available_cores

TRAIN = """
import json, sys
from crsrisk.training.config import TrainConfig
from crsrisk.training.run import train
from joblib.externals.loky import get_reusable_executor
settings = json.loads(sys.argv[1])
train(settings["cohort"], task=settings["task"], config=TrainConfig.model_validate(settings["config"]),
      tracking_uri="sqlite:///" + settings["work"] + "/mlflow.db", out=settings["work"] + "/run",
      show_progress=False, register=False)
get_reusable_executor().shutdown(wait=True)  # reap the fit workers so their CPU time is counted
"""


def measure(cohort: Path, task: str, config: dict, work: Path) -> tuple[float, float]:
    """Wall and CPU seconds (this child and every process it waited for) of one training run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    settings = {"cohort": str(cohort), "task": task, "config": config, "work": str(work)}
    subprocess.run([sys.executable, "-c", TRAIN, json.dumps(settings)], check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _burn(seconds: float) -> None:
    end = time.perf_counter() + seconds
    x = 0
    while time.perf_counter() < end:
        x += 1


def report(block: str, rows: list[tuple[str, float, float]]) -> None:
    """Print a block's settings with wall and CPU time and their ratios to the first row."""
    print(f"\n{block}")
    wall0, cpu0 = rows[0][1], rows[0][2]
    for name, wall, cpu in rows:
        print(
            f"  {name:<34} wall {wall:7.1f} s ({wall / wall0:4.2f}x)   CPU {cpu:7.1f} s ({cpu / cpu0:4.2f}x)",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller cohorts and budgets (a few minutes)")
    args = parser.parse_args()
    n_mid = 500 if args.quick else 1000
    base = {
        "tuning": {"n_iter": 4 if args.quick else 8, "inner_splits": 3},
        "cv": {"n_splits": 5, "n_repeats": 1 if args.quick else 2},
        "bootstrap": {"n_boot": 200},
    }
    cores = available_cores()
    print(f"{cores} core(s) available; default design {base}")
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        sizes = (n_mid // 2, n_mid, n_mid * 2)
        for n in sizes:
            write_simulated(simulate_cohort(n=n, seed=1), work / f"c{n}")
        cohort = work / f"c{n_mid}"
        report(
            "cohort size (severe_crs, 0 h and 36 h)",
            [(f"n={n}", *measure(work / f"c{n}", "severe_crs", base, work)) for n in sizes],
        )
        report(
            f"tuning budget (severe_crs, n={n_mid})",
            [
                (
                    f"n_iter={k}",
                    *measure(cohort, "severe_crs", base | {"tuning": {"n_iter": k, "inner_splits": 3}}, work),
                )
                for k in (2, 4, 8)
            ],
        )
        grids = {"every 24 h (8 landmarks)": 24.0, "every 12 h (15 landmarks)": 12.0, "every 6 h (29 landmarks)": 6.0}
        report(
            f"landmark grid (severe_crs_dynamic, 0-168 h, n={n_mid})",
            [
                (
                    name,
                    *measure(
                        cohort,
                        "severe_crs_dynamic",
                        base
                        | {
                            "task_overrides": {
                                "severe_crs_dynamic": {"landmarks": [{"start": 0, "stop": 168, "step": step}]}
                            }
                        },
                        work,
                    ),
                )
                for name, step in grids.items()
            ],
        )
        workers = [
            (f"workers={w}", *measure(cohort, "severe_crs", base | {"workers": w}, work)) for w in range(1, cores + 1)
        ]
        report(f"workers (severe_crs, n={n_mid}, quiet)", workers)
        context = multiprocessing.get_context("spawn")
        burners = [context.Process(target=_burn, args=(3600.0,)) for _ in range(cores)]
        for burner in burners:
            burner.start()
        try:
            busy = [
                (
                    f"workers={cores}, {cores} CPU-bound competitor(s)",
                    *measure(cohort, "severe_crs", base | {"workers": cores}, work),
                )
            ]
        finally:
            for burner in burners:
                burner.terminate()
                burner.join()
        report(
            f"busy machine (severe_crs, n={n_mid}): ratios against the quiet run with the same workers",
            [workers[-1], *busy],
        )


if __name__ == "__main__":
    main()
