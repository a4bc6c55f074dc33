"""Record validation speed: the fast path on the example record (examples/patient.json) must stay within 1 ms.

Run:  python benchmarks/bench_record.py [--repeats 2000]
Prints the median time of ``validate_record`` on the example record (the fast path), of a baseline measured in
the same run (``json.loads(json.dumps(record))``, a copy of the same data in C), and their ratio; exits 1 when
the fast path takes more than 1 ms or declines the example.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from crsrisk.cohort import record as R

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "patient.json"
BUDGET_SECONDS = 1e-3


def median_seconds(function: Callable[[], Any], repeats: int) -> float:
    """Median wall time of one call over ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2000)
    args = parser.parse_args()
    record = json.loads(EXAMPLE.read_text())
    R._fast(record)  # raises if the fast path declines the example: then the figure below would not be its speed
    fast = median_seconds(lambda: R.validate_record(record), args.repeats)
    copy = median_seconds(lambda: json.loads(json.dumps(record)), args.repeats)
    print(f"example record: {len(record.get('measurements', []))} measurements, {len(record.get('events', []))} events")
    print(f"validate_record (fast path): {fast * 1e6:.0f} us (budget {BUDGET_SECONDS * 1e6:.0f} us)")
    print(f"baseline json round trip of the same record: {copy * 1e6:.0f} us")
    print(f"ratio validate_record / baseline: {fast / copy:.1f}x")
    sys.exit(0 if fast <= BUDGET_SECONDS else 1)


if __name__ == "__main__":
    main()
