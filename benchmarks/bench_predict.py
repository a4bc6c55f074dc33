"""Clinician-path speed: single-patient predict with explanations and batch scoring, against raw XGBoost.

Run:  python benchmarks/bench_predict.py [--model PATH] [--calls 300]
The raw floor is XGBoost's pred_contribs on one numpy row for each booster the patient's prediction uses
(the minimum an exact-SHAP answer costs); batch compares predict_cohort with pred_contribs on the same
feature matrices. Both are measured in this run, on this machine.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import xgboost as xgb

from crsrisk.predict import _is_window, _task_of, patient_cohort, predict, predict_cohort, resolve_model
from crsrisk.features import build_features
from crsrisk.simulate import simulate_cohort
from crsrisk.schema.validate import validate_tables
from crsrisk.tasks import landmark_times


def percentiles(samples: list[float]) -> tuple[float, float]:
    return float(np.percentile(samples, 50)), float(np.percentile(samples, 99))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--batch", type=int, default=2000)
    args = parser.parse_args()
    bundle = resolve_model(args.model)
    sim = simulate_cohort(n=args.batch, seed=99)
    cohort = validate_tables({"patients": sim.patients, "measurements": sim.measurements, "events": sim.events})
    treated = cohort.events.loc[cohort.events["event"] == "tocilizumab", "patient_id"].iloc[0]
    one = cohort.subset([treated])
    record = {"patient": {k: (None if v != v else v) for k, v in one.patients.iloc[0].items()},
              "measurements": one.measurements.drop(columns="patient_id").to_dict(orient="records"),
              "events": one.events.drop(columns="patient_id").to_dict(orient="records")}
    now = float(one.events["hours_since_infusion"].max())
    result = predict(record, model=bundle, now_hours=now, audit=False)
    used = [bundle.models[f"{p['task']}__{p['landmark']}"] for p in result.predictions]
    single = patient_cohort(record)
    rows = [build_features(single, landmark_times(single, _task_of(m), m.landmark), window=_is_window(m))[
        m.feature_names].to_numpy(dtype=float) for m in used]

    def floor() -> None:
        for model, row in zip(used, rows):
            model.booster.predict(xgb.DMatrix(row, missing=np.nan), pred_contribs=True)

    def timed(function) -> list[float]:
        for _ in range(10):
            function()
        samples = []
        for _ in range(args.calls):
            start = time.perf_counter()
            function()
            samples.append((time.perf_counter() - start) * 1000)
        return samples

    raw_p50, raw_p99 = percentiles(timed(floor))
    ours_p50, ours_p99 = percentiles(timed(lambda: predict(record, model=bundle, now_hours=now, audit=False)))
    print(f"single patient, {len(used)} tasks ({', '.join(m.key for m in used)})")
    print(f"  raw floor (pred_contribs, numpy rows): p50 {raw_p50:.2f} ms  p99 {raw_p99:.2f} ms")
    print(f"  crsrisk.predict with explanations:     p50 {ours_p50:.2f} ms  p99 {ours_p99:.2f} ms")
    print(f"  ratio p50: {ours_p50 / raw_p50:.1f}x (target <= 2x)")

    start = time.perf_counter()
    scores = predict_cohort(cohort, bundle)
    ours_batch = len(scores) / (time.perf_counter() - start)
    matrices = []
    for model in bundle.models.values():
        landmarks = landmark_times(cohort, _task_of(model), model.landmark)
        matrices.append((model, build_features(cohort, landmarks, window=_is_window(model))[model.feature_names]
                         .to_numpy(dtype=float)))
    start = time.perf_counter()
    for model, X in matrices:
        model.booster.predict(xgb.DMatrix(X, missing=np.nan), pred_contribs=True)
    raw_batch = sum(len(X) for _, X in matrices) / (time.perf_counter() - start)
    print(f"batch: {len(scores)} rows (infusion x task x landmark)")
    print(f"  raw pred_contribs: {raw_batch:,.0f} rows/s")
    print(f"  predict_cohort:    {ours_batch:,.0f} rows/s")
    print(f"  ratio: {ours_batch / raw_batch:.2f}x (target >= 0.7x)")


if __name__ == "__main__":
    main()
