"""Where independent work runs: the cores this process may use, and a Dask client (a cluster's scheduler, or a
local cluster of single-threaded worker processes). Training's fits and batch scoring's chunks both fan out here."""

from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator

from crsrisk.errors import InputError


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers and taskset narrow), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


@contextlib.contextmanager
def dask_client(address: str, workers: int | None = None) -> Iterator[Any]:
    """A Dask client of the scheduler at ``address``, or for ``"local"`` of a fresh local cluster of ``workers``
    (default: one per available core) single-threaded worker processes on loopback, closed afterwards."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise InputError(
            "a Dask cluster needs Dask, which is not installed; install the team extra: pip install 'crsrisk[team]'"
        ) from None
    if address != "local":
        with Client(address) as client:
            yield client
        return
    with (
        LocalCluster(
            n_workers=workers or available_cores(),
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client
