"""Run independent fits side by side: many single-threaded fits in a process pool, not one multi-threaded fit at
a time.

XGBoost's OpenMP threads spin while they wait; on a machine whose cores other jobs share, a 2-thread fit on a
few thousand rows spends most of its CPU time spinning (a 2-core demo took 72 min instead of 2). Single-threaded
fits in separate processes never wait on each other. Every job seeds itself, so the numbers do not depend on the
number of workers or the order in which jobs finish.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

from joblib import Parallel, delayed


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers and taskset narrow), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _indexed(index: int, function: Callable[..., Any], args: tuple[Any, ...]) -> tuple[int, Any]:
    return index, function(*args)


def run_all(jobs: Sequence[tuple[Callable[..., Any], tuple[Any, ...]]], workers: int | None = None,
            on_done: Callable[[int], None] = lambda _: None) -> list[Any]:
    """Call every ``(function, args)`` job and return the results in job order; ``on_done(i)`` runs in this process
    as job i finishes (progress bars and logging stay here). One worker runs the jobs in this process."""
    workers = min(workers or available_cores(), max(1, len(jobs)))
    results: list[Any] = [None] * len(jobs)
    if workers == 1:
        for index, (function, args) in enumerate(jobs):
            results[index] = function(*args)
            on_done(index)
        return results
    parallel = Parallel(n_jobs=workers, backend="loky", return_as="generator_unordered")
    for index, value in parallel(delayed(_indexed)(i, f, args) for i, (f, args) in enumerate(jobs)):
        results[index] = value
        on_done(index)
    return results
