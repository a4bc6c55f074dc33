"""Batch scoring of a partitioned cohort larger than memory: chunk by chunk, in process or on a Dask cluster.

Each chunk (a few thousand infusions and only their measurement and event rows) is read, validated by the
contract's validator and scored by ``crsrisk.scoring.predict_cohort``; its rows are appended to the output CSV,
so memory holds one chunk (per Dask worker) whatever the cohort's size. The CSV is written to a temporary
sibling and renamed into place at the end: a failure leaves no half file and keeps an earlier one.
"""

from __future__ import annotations

import collections
import hashlib
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generator

import pandas as pd

from crsrisk.bundle.store import Bundle
from crsrisk.cohort.partitions import Chunk, PartitionedCohort, open_partitioned, plan_chunks, read_chunk
from crsrisk.cohort.validate import MAX_PROBLEMS
from crsrisk.errors import CohortValidationError
from crsrisk.scoring.audited import audit_stream
from crsrisk.scoring.cohort import predict_cohort
from crsrisk.scoring.load import load_model
from crsrisk.util.cluster import dask_client

BATCH_COLUMNS = ["patient_id", "task", "landmark_hours", "horizon_hours", "probability", "band", "status", "reason"]
"""The columns of a batch score file (``crsrisk predict COHORT --out scores.csv``); at an hour, every infusion and
task has a row, its ``status`` saying whether it was scored and ``reason`` why not."""


@dataclass
class BatchSummary:
    """What a streaming run did: infusions and rows scored, chunks, wall time, the validator's notes."""

    infusions: int = 0
    rows: int = 0
    chunks: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


Scored = tuple[pd.DataFrame, int, list[str], str]  # a chunk's score rows, infusions, validator notes, fingerprint


def score_chunk(
    source: PartitionedCohort | str, chunk: Chunk, bundle: Bundle, predict_kwargs: dict[str, Any]
) -> Scored | CohortValidationError:
    """Read, validate and score one chunk; a chunk that breaks the contract gives its error back, so the
    caller can go on checking the other chunks."""
    source = source if isinstance(source, PartitionedCohort) else open_partitioned(source)
    try:
        cohort = read_chunk(source, chunk)
    except CohortValidationError as error:
        return error
    scores = predict_cohort(cohort, bundle, audit=False, **predict_kwargs)  # the whole stream is audited once
    return scores[BATCH_COLUMNS], len(cohort.patients), list(cohort.metadata.get("notes", [])), cohort.fingerprint()


def _on_dask(
    address: str, folder: str, chunks: list[Chunk], bundle: Bundle, predict_kwargs: dict[str, Any]
) -> Generator[Scored | CohortValidationError, None, None]:
    """Chunks scored on a Dask cluster with a bounded number in flight, so the driver's memory stays flat too;
    results come back in chunk order. Workers read the folder themselves: on a real cluster it must be on
    storage they share."""
    with dask_client(address) as client:
        window = 2 * max(1, len(client.scheduler_info()["workers"]))
        shared = client.scatter(bundle, broadcast=True)
        pending: collections.deque = collections.deque()
        for chunk in chunks:
            pending.append(client.submit(score_chunk, folder, chunk, shared, predict_kwargs, pure=False))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def score_partitioned(
    folder: str | os.PathLike,
    out: str | os.PathLike,
    model: Any = None,
    chunk_size: int = 5000,
    dask: str | None = None,
    audit: bool = True,
    audit_log: str | os.PathLike | None = None,
    **predict_kwargs: Any,
) -> BatchSummary:
    """Score every infusion of a partitioned cohort into the CSV ``out`` (``BATCH_COLUMNS``), chunk by chunk.

    ``dask``: a scheduler address (``tcp://HOST:8786``) or ``local``; None scores in this process. Keyword
    arguments go to ``predict_cohort`` untouched. Bad rows anywhere raise ``CohortValidationError`` naming the
    file, patient and field (every chunk is still checked, up to the problem limit); nothing is written then.
    One audit record describes the whole run: the chunks' fingerprints and the SHA-256 of the file written."""
    started = time.perf_counter()
    source = open_partitioned(folder)
    chunks = plan_chunks(source, chunk_size)
    bundle = load_model(model)
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, staging = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    summary, problems, truncated, fingerprints = BatchSummary(), [], 0, hashlib.sha256()
    results = (
        (score_chunk(source, chunk, bundle, predict_kwargs) for chunk in chunks)
        if dask is None
        else _on_dask(dask, str(source.folder), chunks, bundle, predict_kwargs)
    )
    try:
        with os.fdopen(handle, "w", newline="") as sink:
            pd.DataFrame(columns=BATCH_COLUMNS).to_csv(sink, index=False)
            for outcome in results:
                if isinstance(outcome, CohortValidationError):  # keep checking the other chunks, stop writing
                    problems += outcome.problems
                    truncated += outcome.truncated
                    if len(problems) >= MAX_PROBLEMS:
                        break
                    continue
                scores, infusions, notes, fingerprint = outcome
                fingerprints.update(fingerprint.encode())
                if not problems:
                    scores.to_csv(sink, index=False, header=False)
                summary.infusions += infusions
                summary.rows += len(scores)
                summary.chunks += 1
                summary.notes += [note for note in notes if note not in summary.notes]
        if problems:
            raise CohortValidationError(problems[:MAX_PROBLEMS], truncated + max(0, len(problems) - MAX_PROBLEMS))
        os.replace(staging, target)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise
    finally:
        results.close()
    summary.seconds = time.perf_counter() - started
    if audit:
        audit_stream(
            bundle,
            {"n_rows": summary.rows, "n_infusions": summary.infusions, "chunks": summary.chunks},
            fingerprints.hexdigest(),
            hashlib.sha256(target.read_bytes()).hexdigest(),
            audit_log,
        )
    return summary
