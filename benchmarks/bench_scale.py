"""Streaming batch scoring of a partitioned cohort: speed and peak memory at 10,000 and 100,000 infusions.

Run:  python benchmarks/bench_scale.py [--sizes 10000 100000] [--chunk-size 5000] [--dask local] [--work DIR]

Each synthetic cohort is generated in chunks of 5,000 infusions (``simulate_cohort`` with a seed per chunk, ids
prefixed so they stay distinct) and written bucketed by patient id with ``write_partitioned`` (buckets of about
2,500 infusions, so both sizes are scored in chunks of the same size), holding one chunk in memory at a time. Then a fresh process scores it with the shipped default model through
``crsrisk.scoring.batch.score_partitioned`` (what ``crsrisk predict FOLDER --out scores.csv`` runs) and reports wall time,
infusions/s, score rows/s and its peak resident memory (``ru_maxrss``), beside its peak before scoring
(interpreter, libraries and model). The peak should be about the same at both sizes: a chunk sets it, not the
cohort. With ``--dask`` the workers' peak (``RUSAGE_CHILDREN``) is shown too.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

SIMULATION_CHUNK = 5000


def _mib(kib: int) -> float:
    return kib / 1024  # ru_maxrss is in KiB on Linux


def simulated_chunks(n: int) -> Iterator[SimpleNamespace]:
    """``n`` synthetic infusions, 5,000 at a time, each chunk from its own seed with ids prefixed by it."""
    from crsrisk.simulate import simulate_cohort

    for seed, start in enumerate(range(0, n, SIMULATION_CHUNK)):
        part = simulate_cohort(n=min(SIMULATION_CHUNK, n - start), seed=seed)
        yield SimpleNamespace(
            metadata=part.metadata,
            **{
                name: getattr(part, name).assign(patient_id=f"C{seed:03d}-" + getattr(part, name)["patient_id"])
                for name in ("patients", "measurements", "events")
            },
        )


def generate(n: int, folder: Path, bucket_size: int) -> None:
    """Write the partitioned cohort in buckets of about ``bucket_size`` infusions."""
    from crsrisk.cohort.partitions import write_partitioned

    buckets = max(1, math.ceil(n / bucket_size))
    write_partitioned(
        simulated_chunks(n),
        folder,
        buckets=buckets,
        metadata={"synthetic": True, "generator": "benchmarks/bench_scale.py", "n": n},
    )


def score(folder: Path, chunk_size: int, dask: str | None) -> dict:
    """Score the cohort in this process; return the figures as a dict."""
    from crsrisk.scoring.batch import score_partitioned
    from crsrisk.scoring import load_model

    model = load_model()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with tempfile.TemporaryDirectory() as scratch:
        summary = score_partitioned(folder, Path(scratch) / "scores.csv", model, chunk_size=chunk_size, dask=dask)
    return {
        "infusions": summary.infusions,
        "rows": summary.rows,
        "chunks": summary.chunks,
        "seconds": summary.seconds,
        "rss_before_mib": _mib(before),
        "peak_rss_mib": _mib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss),
        "workers_peak_rss_mib": _mib(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) if dask else None,
    }


def child(*arguments: str) -> str:
    """Run this script in a fresh process (so its peak memory is its own) and return what it printed."""
    done = subprocess.run([sys.executable, __file__, *arguments], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--chunk-size", type=int, default=5000, help="most infusions scored at once")
    parser.add_argument(
        "--bucket-size",
        type=int,
        default=2500,
        help="infusions per bucket when generating (a "
        "divisor of every size, below the chunk size: the same chunks at every size)",
    )
    parser.add_argument("--dask", default=None, help="also score on this Dask scheduler ('local' for a local cluster)")
    parser.add_argument("--work", type=Path, default=None, help="keep the generated cohorts here (default: temporary)")
    parser.add_argument("--generate", type=int, default=None, help=argparse.SUPPRESS)  # child process modes
    parser.add_argument("--score", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--on", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate is not None:
        generate(args.generate, args.work, args.bucket_size)
        return
    if args.score is not None:
        print(json.dumps(score(args.score, args.chunk_size, args.on)))
        return

    with tempfile.TemporaryDirectory() as scratch:
        work = args.work or Path(scratch)
        results = {}
        for n in args.sizes:
            folder = work / f"cohort-{n}-{args.bucket_size}"
            if not folder.exists():
                started = time.perf_counter()
                child("--generate", str(n), "--work", str(folder), "--bucket-size", str(args.bucket_size))
                print(f"generated {n:,} infusions in {time.perf_counter() - started:.0f} s into {folder}", flush=True)
            for where in [None] + ([args.dask] if args.dask else []):
                extra = ["--on", where] if where else []
                r = json.loads(child("--score", str(folder), "--chunk-size", str(args.chunk_size), *extra))
                results[(n, where)] = r
                workers = f", workers' peak {r['workers_peak_rss_mib']:.0f} MiB" if where else ""
                print(
                    f"n={n:>7,} {'dask ' + where if where else 'in process'}: {r['seconds']:6.1f} s, "
                    f"{r['infusions'] / r['seconds']:6.0f} infusions/s, {r['rows'] / r['seconds']:7.0f} rows/s "
                    f"({r['rows']:,} rows, {r['chunks']} chunks); peak RSS {r['peak_rss_mib']:.0f} MiB "
                    f"(before scoring {r['rss_before_mib']:.0f} MiB){workers}",
                    flush=True,
                )
        small, large = min(args.sizes), max(args.sizes)
        if small != large:
            a, b = results[(small, None)], results[(large, None)]
            print(
                f"{large:,} vs {small:,} infusions ({large / small:.0f}x): peak RSS {b['peak_rss_mib']:.0f} vs "
                f"{a['peak_rss_mib']:.0f} MiB ({b['peak_rss_mib'] / a['peak_rss_mib']:.2f}x), rows/s "
                f"{b['rows'] / b['seconds']:.0f} vs {a['rows'] / a['seconds']:.0f}"
            )


if __name__ == "__main__":
    main()
