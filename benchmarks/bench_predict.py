"""Clinician-path speed: single-patient predict with explanations and batch scoring, against raw XGBoost.

Run:  python benchmarks/bench_predict.py [--model PATH] [--calls 300] [--batch 2000] [--hour 61.3]

Raw floor (single patient): XGBoost's ``pred_contribs`` on one numpy row for each booster the patient's
prediction uses, features already built - the least an exact-SHAP answer costs. Ours, at an arbitrary hour (not
a grid point: the super-models are asked at that hour itself) from the JSON-shaped record (validation, "already
occurred" checks, population flags, features, SHAP, calibration, bands): ``crsrisk.predict`` without the audit
log; plus ``to_dict()`` (the largest reasons rendered, the rest on demand); plus the audit record written: what a
caller receives, the target line; and, for reference, with every contribution rendered. The five take turns call
by call; each line gives wall and CPU time (the process's own: a shared disk's fsync and other jobs' load show in
wall time only) and both ratios to the floor.
Batch at one hour: rows per second of raw ``pred_contribs`` on the precomputed feature matrices of exactly the
rows ``predict_cohort(at_hours=hour)`` scores, against ``predict_cohort`` (validated cohort in, scores out,
risk sets and features included) without and with its audit record (the cohort's fingerprint and one batch
record), and against scores plus exact SHAP for every row.
Everything is measured in this run, on this machine.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import xgboost as xgb

from crsrisk.cohort.arrays import cohort_arrays
from crsrisk.features.build import feature_matrix
from crsrisk.scoring import cohort_attributions, load_model, predict, predict_cohort
from crsrisk.scoring.cohort import _inputs, _planned
from crsrisk.cohort.record import validate_record
from crsrisk.cohort.validate import validate_tables
from crsrisk.simulate import simulate_cohort
from crsrisk.scoring.reasons import EAGER_REASONS
from crsrisk.scoring.trajectory import risk_trajectory


def timed(functions: list[Callable[[], object]], calls: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Wall and CPU milliseconds per call of each function, after a warm-up; the functions take turns call by
    call, so a noisy neighbour on the machine slows all of them alike and the ratios stay fair."""
    wall, cpu = np.empty((len(functions), calls)), np.empty((len(functions), calls))
    for i in range(-20, calls):
        for k, function in enumerate(functions):
            start, start_cpu = time.perf_counter(), time.process_time()
            function()
            if i >= 0:
                wall[k, i] = (time.perf_counter() - start) * 1000
                cpu[k, i] = (time.process_time() - start_cpu) * 1000
    return list(zip(wall, cpu))


def rate(function: Callable[[], object], rows: int, repeats: int = 5) -> tuple[float, float]:
    """Rows per second of wall and of CPU time: the best of a few repeats (after one warm-up)."""
    function()
    best = [min(times) for times in zip(*(_seconds(function) for _ in range(repeats)))]
    return rows / best[0], rows / best[1]


def _seconds(function: Callable[[], object]) -> tuple[float, float]:
    start, start_cpu = time.perf_counter(), time.process_time()
    function()
    return time.perf_counter() - start, time.process_time() - start_cpu


def line(name: str, samples: tuple[np.ndarray, np.ndarray], floor: tuple[float, float] | None = None) -> str:
    """p50 wall and CPU (each with its ratio to the floor's p50) and p99 wall."""
    (wall, p99), cpu = np.percentile(samples[0], [50, 99]), float(np.percentile(samples[1], 50))
    ratios = [f" {p50 / base:5.2f}x" if floor else "" for p50, base in zip((wall, cpu), floor or (1.0, 1.0))]
    return f"  {name:<48} wall p50 {wall:7.3f} ms{ratios[0]}  CPU p50 {cpu:7.3f} ms{ratios[1]}  wall p99 {p99:7.3f} ms"


def throughput(name: str, rates: tuple[float, float], raw: tuple[float, float] | None = None) -> str:
    """Rows per second (wall, CPU), each with its ratio to the raw rate."""
    ratios = [f" {ours / base:5.2f}x" if raw else "" for ours, base in zip(rates, raw or (1.0, 1.0))]
    return f"  {name:<48} {rates[0]:>9,.0f} rows/s wall{ratios[0]}  {rates[1]:>9,.0f} rows/s CPU{ratios[1]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="bundle folder (default: the shipped synthetic model)")
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--batch", type=int, default=2000, help="infusions in the batch cohort")
    parser.add_argument("--hour", type=float, default=61.3, help="hour after infusion to predict at")
    args = parser.parse_args()
    bundle = load_model(args.model)
    sim = simulate_cohort(n=args.batch, seed=99)
    cohort = validate_tables({"patients": sim.patients, "measurements": sim.measurements, "events": sim.events})
    events = cohort.events
    severe = set(events.loc[(events["event"] == "crs_grade") & (events["value"] >= 3), "patient_id"])
    icans = set(events.loc[events["event"] == "icans_grade", "patient_id"])
    toci = events[(events["event"] == "tocilizumab") & (events["hours_since_infusion"] < args.hour)]
    treated = next(p for p in toci["patient_id"] if p not in severe | icans)  # every task applies at the hour
    one = cohort.subset([treated])
    record = {
        "patient": {k: (None if v != v else v) for k, v in one.patients.iloc[0].items()},
        "measurements": one.measurements.drop(columns="patient_id").to_dict(orient="records"),
        "events": one.events.drop(columns="patient_id").to_dict(orient="records"),
    }
    now = args.hour
    result = predict(record, model=bundle, now_hours=now, audit=False)
    arrays = validate_record(record)
    rows = [
        (p.model, feature_matrix(arrays, np.array([0]), np.array([p["landmark_hours"]]), True)[:, p.model.columns])
        for p in result.predictions
    ]

    def floor() -> None:
        for model, row in rows:  # the single-thread copies predict uses: the fastest way to score one row
            model.row_booster.predict(xgb.DMatrix(row, missing=np.nan, nthread=1), pred_contribs=True)

    print(
        f"single patient at hour {now:g}: {len(record['measurements'])} measurements, {len(record['events'])} "
        f"events, {len(rows)} tasks ({', '.join(m.key for m, _ in rows)}); {args.calls} calls each, interleaved"
    )
    with tempfile.TemporaryDirectory() as folder:
        log = Path(folder) / "audit.jsonl"
        samples = timed(
            [
                floor,
                lambda: predict(record, model=bundle, now_hours=now, audit=False),
                lambda: predict(record, model=bundle, now_hours=now, audit=False).to_dict(),
                lambda: predict(record, model=bundle, now_hours=now, audit_log=log).to_dict(),
                lambda: [
                    len(p.contributions) for p in predict(record, model=bundle, now_hours=now, audit=False).predictions
                ],
            ],
            args.calls,
        )
    raw = (float(np.percentile(samples[0][0], 50)), float(np.percentile(samples[0][1], 50)))
    print(line("raw floor (pred_contribs, numpy rows)", samples[0]))
    print(line("crsrisk.predict (exact SHAP, no audit)", samples[1], raw))
    print(line(f"  + to_dict() (top {EAGER_REASONS} reasons, the rest on demand)", samples[2], raw))
    print(line("  + audit record: what a caller receives", samples[3], raw) + "   target <= 2x")
    print(line("  (reference: every contribution rendered, no audit)", samples[4], raw))

    trajectory = timed([lambda: risk_trajectory(record, bundle, until_hours=168.0, audit=False)], 10)[0]
    points = len(risk_trajectory(record, bundle, until_hours=168.0, audit=False).points)
    print(line(f"risk_trajectory to 168 h ({points} task-points)", trajectory))

    full = cohort_arrays(cohort)
    matrices = [(model, X) for model, _, _, X in _inputs(full, _planned(full, bundle, now)[1]) if len(X)]
    n_rows = sum(len(X) for _, X in matrices)

    def raw_batch() -> None:
        for model, X in matrices:
            model.booster.predict(xgb.DMatrix(X, missing=np.nan), pred_contribs=True)

    def explained_batch() -> None:
        predict_cohort(cohort, bundle, at_hours=now, audit=False)
        cohort_attributions(cohort, bundle, at_hours=now)

    raw_rate = rate(raw_batch, n_rows)
    print(f"batch at hour {now:g}: {args.batch} infusions, {n_rows} rows (infusion x task)")
    print(throughput("raw pred_contribs on precomputed features", raw_rate))
    ours = rate(lambda: predict_cohort(cohort, bundle, at_hours=now, audit=False), n_rows)
    print(throughput("predict_cohort (features + calibrated risk)", ours, raw_rate) + "   target >= 0.7x")
    with tempfile.TemporaryDirectory() as folder:
        log = Path(folder) / "audit.jsonl"
        audited = rate(lambda: predict_cohort(cohort, bundle, at_hours=now, audit_log=log), n_rows)
    print(throughput("  + its audit record (cohort fingerprint)", audited, raw_rate))
    print(throughput("  + exact SHAP for every row (no audit)", rate(explained_batch, n_rows), raw_rate))


if __name__ == "__main__":
    main()
