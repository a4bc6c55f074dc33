"""Run independent fits side by side: many single-threaded fits in a process pool, not one multi-threaded fit at
a time.

XGBoost's OpenMP threads spin while they wait; on a machine whose cores other jobs share, a 2-thread fit on a
few thousand rows spends most of its CPU time spinning (a 2-core demo took 72 min instead of 2). Single-threaded
fits in separate processes never wait on each other. Every job seeds itself, so the numbers do not depend on the
number of workers or the order in which jobs finish - nor on where they run: ``dask`` sends the same jobs to a
Dask cluster (a scheduler address, or ``"local"`` for a local cluster of single-threaded worker processes);
Dask reruns the jobs of a worker lost mid-run elsewhere, and the results stay the same.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from joblib import Parallel, delayed, parallel_config

from crsrisk.util.cluster import available_cores, dask_client


def _indexed(index: int, function: Callable[..., Any], args: tuple[Any, ...]) -> tuple[int, Any]:
    return index, function(*args)


def run_all(
    jobs: Sequence[tuple[Callable[..., Any], tuple[Any, ...]]],
    workers: int | None = None,
    on_done: Callable[[int], None] = lambda _: None,
    dask: str | None = None,
) -> list[Any]:
    """Call every ``(function, args)`` job and return the results in job order; ``on_done(i)`` runs in this process
    as job i finishes (progress bars and logging stay here). One worker runs the jobs in this process; ``dask``
    (a scheduler address or ``"local"``) runs them on a Dask cluster instead."""
    results: list[Any] = [None] * len(jobs)
    calls = (delayed(_indexed)(i, f, args) for i, (f, args) in enumerate(jobs))
    if dask:
        for index, value in _on_dask(calls, dask, workers):
            results[index] = value
            on_done(index)
        return results
    workers = min(workers or available_cores(), max(1, len(jobs)))
    if workers == 1:
        for index, (function, args) in enumerate(jobs):
            results[index] = function(*args)
            on_done(index)
        return results
    parallel = Parallel(n_jobs=workers, backend="loky", return_as="generator_unordered")
    for index, value in parallel(calls):
        results[index] = value
        on_done(index)
    return results


def _on_dask(calls: Any, address: str, workers: int | None) -> Any:
    """Run joblib calls through a Dask distributed client (``"local"``: a local cluster of ``workers`` single-threaded
    processes, closed afterwards), yielding results as they arrive in submission order."""
    with dask_client(address, workers) as client, parallel_config(backend="dask"):
        client.forward_logging()  # worker warnings reach this process, once
        yield from Parallel(return_as="generator")(calls)
