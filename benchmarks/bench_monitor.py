"""Monitoring at scale: the streaming join of N audited predictions (default 1,000,000) in bounded memory.

Run:  OMP_NUM_THREADS=1 python benchmarks/bench_monitor.py [--n 1000000] [--every 10000] [--shap]
(a small check: --n 20000). Writes a valid, chained audit log of N prediction records (one patient at 0 h, two
outputs each: severe CRS by day 28 and in the next 48 h; ``--shap`` adds each output's SHAP values, as the real
records carry, about 5 KB a record) drawn over a 2,000-infusion synthetic outcome cohort, then times, in this run:

- baseline: reading the log line by line with ``json.loads`` (the least any reader does);
- the chain check alone (``verify_log``, which ``monitor`` runs first);
- crsrisk monitor: chain verification, then the join, figures (bootstrap CIs), drift and plan, by periods of
  ``--every`` predictions; memory stays flat as N grows (one chunk per group and the open period's few numbers).

For each: records/s, wall and CPU seconds, and peak memory (tracemalloc of Python allocations, and the process's
peak RSS, which includes the libraries). Synthetic data: a speed measurement, not clinical evidence.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

for _variable in ("XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CONFIG_HOME"):  # keys and witness of this run only
    os.environ[_variable] = tempfile.mkdtemp(prefix=f"bench-monitor-{_variable.lower()}-")
os.environ["CRSRISK_AUDIT_KEY"] = "b" * 64
os.environ["CRSRISK_AUDIT_SALT"] = "s" * 64
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from crsrisk.audit.chain import GENESIS, canonical, mac  # noqa: E402
from crsrisk.audit.keys import pseudonym  # noqa: E402
from crsrisk.audit.verify import verify_log  # noqa: E402
from crsrisk.bundle.store import load_bundle  # noqa: E402
from crsrisk.monitoring.plan import load_plan  # noqa: E402
from crsrisk.monitoring.run import monitor  # noqa: E402
from monitor_support import calibrated_bundle, simulated  # noqa: E402


def write_log(path: Path, n: int, patient_ids: list[str], sha: str, shap: dict | None, seed: int = 0) -> None:
    """N chained prediction records in the writer's exact format (canonical JSON, HMAC chain), written at once."""
    key, salt = os.environ["CRSRISK_AUDIT_KEY"].encode(), os.environ["CRSRISK_AUDIT_SALT"].encode()
    hashes = [pseudonym(salt, pid) for pid in patient_ids]
    rng = np.random.default_rng(seed)
    who, risk = rng.integers(0, len(hashes), n), rng.beta(2, 6, (n, 2))
    previous = GENESIS
    with open(path, "w", encoding="ascii") as out:
        for i in range(n):
            outputs = [
                {
                    "task": task,
                    "landmark_hours": 0.0,
                    "horizon_hours": horizon,
                    "probability": float(risk[i, j]),
                    "band": "low" if risk[i, j] < 0.1 else "high" if risk[i, j] >= 0.3 else "intermediate",
                }
                | ({"shap": shap} if shap else {})
                for j, (task, horizon) in enumerate((("severe_crs", 672.0), ("severe_crs_dynamic", 48.0)))
            ]
            record = {
                "kind": "prediction",
                "model": {"bundle_sha256": sha},
                "model_sha256": sha,
                "now_hours": 0.0,
                "patient_hash": hashes[who[i]],
                "input_fingerprint": "0" * 64,
                "outputs": outputs,
                "utc_time": f"2026-{1 + i * 12 // n:02d}-01T00:00:00.000000+00:00",
                "seq": i,
                "prev_hash": previous,
            }
            record["hash"] = previous = mac(key, record)
            out.write(canonical(record) + "\n")


def measured(label: str, n: int, work) -> object:
    """Run ``work`` once; print records/s, wall, CPU and peak memory."""
    tracemalloc.start()
    wall, cpu = time.perf_counter(), time.process_time()
    result = work()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"{label:<32} {n / wall:>10,.0f} records/s  wall {wall:7.1f} s  CPU {cpu:7.1f} s  "
        f"tracemalloc peak {peak / 2**20:7.1f} MiB  process peak RSS {rss:7.0f} MiB"
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="audit records (predictions of one patient each)")
    parser.add_argument("--every", type=int, default=10_000, help="predictions per period")
    parser.add_argument("--shap", action="store_true", help="records carry SHAP values, as real ones do")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-monitor-"))
    cohort = simulated(work / "cohort", 2000, 11)
    bundle = load_bundle(calibrated_bundle(cohort, work / "bundle"))
    names = bundle.models["severe_crs__0h"].feature_names
    shap = {name: 0.001 for name in names} if args.shap else None
    log = work / "predictions.jsonl"
    started = time.perf_counter()
    write_log(log, args.n, cohort.patients["patient_id"].astype(str).tolist(), bundle.digest, shap)
    size = log.stat().st_size
    print(
        f"log: {args.n:,} records, {size / 2**20:,.0f} MiB, written in {time.perf_counter() - started:.0f} s; "
        f"sha256 {hashlib.sha256(log.read_bytes()[: 1 << 20]).hexdigest()[:12]}... (first MiB)"
    )

    def baseline() -> int:
        count = 0
        with open(log, "rb") as handle:
            for line in handle:
                count += len(json.loads(line)["outputs"])
        return count

    measured("baseline: json line reading", args.n, baseline)
    measured("crsrisk verify_log (chain)", args.n, lambda: verify_log(log))
    fixed = time.perf_counter()
    cohort.fingerprint()  # a fixed cost of every run (the report names the outcome cohort by it), not per record
    print(
        f"outcome cohort fingerprint (fixed cost, inside the monitor figure below): {time.perf_counter() - fixed:.1f} s"
    )
    plan = load_plan()
    result = measured(
        f"crsrisk monitor (every {args.every:,})",
        args.n,
        lambda: monitor(log, cohort, [bundle], plan, every=args.every),
    )
    document = result.document  # type: ignore[attr-defined]
    print(
        f"monitor: {document['volume']:,} predictions, {len(document['periods'])} periods, "
        f"chain {'intact' if document['audit_log']['verified'] else 'BROKEN'}, {len(document['flags'])} flags "
        "(random probabilities: calibration flags are expected)"
    )


if __name__ == "__main__":
    main()
