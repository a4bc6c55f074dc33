"""Clinician-path speed: single-patient predict with explanations and batch scoring, against raw XGBoost.

Run:  python benchmarks/bench_predict.py [--model PATH] [--calls 300] [--batch 2000] [--hour 61.3]

Raw floor (single patient): XGBoost's ``pred_contribs`` on one numpy row for each booster the patient's
prediction uses, features already built - the least an exact-SHAP answer costs. Ours: ``crsrisk.predict``
at an arbitrary hour (not a grid point: the super-models are asked at that hour itself) from the JSON-shaped
record (validation, "already occurred" checks, features, SHAP, calibration, bands), without the audit log;
then the same plus rendering every contribution (``to_dict``), and plus the audit log, reported beside it.
Batch at one hour: rows per second of raw ``pred_contribs`` on the precomputed feature matrices of exactly the
rows ``predict_cohort(at_hours=hour)`` scores, against ``predict_cohort`` (validated cohort in, scores out,
risk sets and features included) and against scores plus exact SHAP for every row.
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
from crsrisk.scoring.trajectory import risk_trajectory


def timed(functions: list[Callable[[], object]], calls: int) -> list[np.ndarray]:
    """Milliseconds per call of each function, after a warm-up; the functions take turns call by call, so a
    noisy neighbour on the machine slows all of them alike and the ratios stay fair."""
    samples = np.empty((len(functions), calls))
    for i in range(-20, calls):
        for k, function in enumerate(functions):
            start = time.perf_counter()
            function()
            if i >= 0:
                samples[k, i] = (time.perf_counter() - start) * 1000
    return list(samples)


def rate(function: Callable[[], object], rows: int, repeats: int = 5) -> float:
    """Rows per second: the best of a few repeats (after one warm-up)."""
    function()
    best = min(_seconds(function) for _ in range(repeats))
    return rows / best


def _seconds(function: Callable[[], object]) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def line(name: str, samples: np.ndarray, floor: float | None = None) -> str:
    p50, p99 = np.percentile(samples, [50, 99])
    ratio = f"   {p50 / floor:5.2f}x the floor" if floor else ""
    return f"  {name:<44} p50 {p50:7.3f} ms  p99 {p99:7.3f} ms{ratio}"


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
    floor_ms, ours, rendered = timed(
        [
            floor,
            lambda: predict(record, model=bundle, now_hours=now, audit=False),
            lambda: predict(record, model=bundle, now_hours=now, audit=False).to_dict(),
        ],
        args.calls,
    )
    raw = float(np.percentile(floor_ms, 50))
    print(line("raw floor (pred_contribs, numpy rows)", floor_ms))
    print(line("crsrisk.predict (exact SHAP, no audit)", ours, raw) + "   target <= 2x")
    print(line("  + to_dict() (every contribution rendered)", rendered, raw))
    with tempfile.TemporaryDirectory() as folder:
        log = Path(folder) / "audit.jsonl"
        audited = timed([lambda: predict(record, model=bundle, now_hours=now, audit_log=log)], min(args.calls, 100))
        print(line("  + audit log (hash chain, flock, fsync)", audited[0], raw))

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
        predict_cohort(cohort, bundle, at_hours=now)
        cohort_attributions(cohort, bundle, at_hours=now)

    raw_rate = rate(raw_batch, n_rows)
    print(f"batch at hour {now:g}: {args.batch} infusions, {n_rows} rows (infusion x task)")
    print(f"  raw pred_contribs on precomputed features   {raw_rate:>10,.0f} rows/s")
    ours = rate(lambda: predict_cohort(cohort, bundle, at_hours=now), n_rows)
    print(
        f"  predict_cohort (features + calibrated risk) {ours:>10,.0f} rows/s   {ours / raw_rate:.2f}x   target >= 0.7x"
    )
    explained = rate(explained_batch, n_rows)
    print(f"  + exact SHAP for every row                  {explained:>10,.0f} rows/s   {explained / raw_rate:.2f}x")


if __name__ == "__main__":
    main()
