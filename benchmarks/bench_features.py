"""Feature building speed: 10,000 infusions x ~40 measurements, against a plain pandas groupby baseline.

Run:  python benchmarks/bench_features.py [--n 10000]
Prints the median of 3 runs for crsrisk's build_features at the 36 h landmark and for a baseline that
only takes last and max per (patient, analyte) in the same window, and their ratio.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from crsrisk.cohort.validated import Cohort
from crsrisk.cohort.validate import validate_tables
from crsrisk.features import build_features
from crsrisk.schema.analytes import ANALYTES


def random_cohort(n: int, per_patient: int, seed: int = 0) -> Cohort:
    """Canonical-unit cohort with random times in [-120, 168) h and plausible values."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"P{i:06d}" for i in range(n)])
    names = np.array(list(ANALYTES))
    rows = n * per_patient
    analyte = names[rng.integers(0, len(names), rows)]
    value = np.where(analyte == "temperature", rng.normal(37.5, 0.8, rows), rng.lognormal(2, 1, rows))
    measurements = pd.DataFrame(
        {
            "patient_id": np.repeat(ids, per_patient),
            "hours_since_infusion": rng.uniform(-120, 168, rows).round(1),
            "analyte": analyte,
            "value": np.clip(value, [ANALYTES[a].low for a in analyte], [ANALYTES[a].high for a in analyte]),
            "unit": [ANALYTES[a].unit for a in analyte],
        }
    )
    patients = pd.DataFrame(
        {
            "patient_id": ids,
            "age_years": rng.uniform(1, 25, n),
            "sex": "F",
            "product": "tisagenlecleucel",
            "costim_domain": "4-1BB",
            "diagnosis": "B-ALL",
            "marrow_blasts_pct": rng.uniform(0, 90, n),
            "dose_1e6_cells_per_kg": 2.0,
            "followup_hours": 672.0,
        }
    )
    events = pd.DataFrame(
        {
            "patient_id": ids,
            "hours_since_infusion": rng.uniform(0, 100, n).round(1),
            "event": "crs_grade",
            "value": rng.integers(0, 4, n).astype(float),
        }
    )
    return validate_tables({"patients": patients, "measurements": measurements, "events": events})


def baseline(cohort: Cohort, landmark: float) -> pd.DataFrame:
    """What a plain pandas pipeline would do: last and max per analyte in [0, landmark)."""
    m = cohort.measurements
    window = m[(m["hours_since_infusion"] >= 0) & (m["hours_since_infusion"] < landmark)]
    return window.groupby(["patient_id", "analyte"])["value"].agg(["last", "max"]).unstack()


def median_seconds(function, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--per-patient", type=int, default=40)
    args = parser.parse_args()
    cohort = random_cohort(args.n, args.per_patient)
    landmarks = pd.Series(36.0, index=pd.Index(cohort.patients["patient_id"], name="patient_id"))
    ours = median_seconds(lambda: build_features(cohort, landmarks))
    plain = median_seconds(lambda: baseline(cohort, 36.0))
    width = build_features(cohort, landmarks).shape[1]
    print(f"infusions {args.n}, measurements {len(cohort.measurements)}")
    print(f"build_features (36 h, {width} features): {ours:.2f} s")
    print(f"plain groupby last/max baseline (34 values): {plain:.2f} s")
    print(f"ratio crsrisk / baseline: {ours / plain:.1f}x  ({width / 34:.1f}x as many features)")


if __name__ == "__main__":
    main()
