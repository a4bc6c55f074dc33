"""Partitioned Parquet cohorts: one folder per table holding many files, read a few thousand infusions at a time.

Layout: ``FOLDER/patients/``, ``FOLDER/measurements/``, ``FOLDER/events/``, each holding any number of
``.parquet`` files (subfolders allowed), plus the optional ``cohort.json``. A patient's rows may sit in any of
its table's files. When the tables are hive-partitioned by ``bucket=K`` of the patient id (``write_partitioned``
writes this), every chunk reads only its bucket's files, so reading is linear in the cohort's size; without
buckets each chunk filters every file on ``patient_id`` (correct, but each chunk scans whole tables).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Protocol, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from crsrisk.util.atomic import staged_folder
from crsrisk.cohort.io import METADATA_FILE, read_metadata, stored_metadata
from crsrisk.cohort.validate import MAX_PROBLEMS, validate_tables
from crsrisk.cohort.validated import Cohort
from crsrisk.errors import CohortValidationError, InputError, Problem
from crsrisk.schema.tables import COLUMNS, TABLES

BUCKET = "bucket"  # the hive partition field: FOLDER/<table>/bucket=K/*.parquet
_ARROW_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OSError)


class Tables(Protocol):
    """Anything holding the three contract tables: a ``Cohort``, a simulated cohort."""

    patients: pd.DataFrame
    measurements: pd.DataFrame
    events: pd.DataFrame


def bucket_of(patient_ids: Iterable[Any], buckets: int) -> np.ndarray:
    """Each id's bucket: the first 8 bytes of SHA-256 of its UTF-8 text, big-endian, modulo ``buckets``
    (stable across machines and languages, so other tools can write the same layout)."""
    return np.array(
        [int.from_bytes(hashlib.sha256(str(p).encode()).digest()[:8], "big") % buckets for p in patient_ids],
        dtype=np.int64,
    )


def is_partitioned(folder: str | os.PathLike) -> bool:
    """True when the cohort folder holds its tables as folders of files (``patients/`` ...) rather than files."""
    return (Path(folder) / TABLES[0]).is_dir()


def write_partitioned(
    cohorts: Tables | Iterable[Tables],
    folder: str | os.PathLike,
    buckets: int = 16,
    metadata: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write one cohort, or many (e.g. a generator of simulated chunks: memory stays that of one), as a
    partitioned folder bucketed by patient id, atomically; ``metadata`` goes to ``cohort.json`` (default:
    the first cohort's, when it has any). Patient ids must be distinct across the chunks (checked on read)."""
    if buckets < 1:
        raise InputError(f"buckets: expected at least 1, got {buckets}")
    target = Path(folder)
    if target.exists() and any(target.iterdir()) and not overwrite:
        raise FileExistsError(f"{target} exists and is not empty; choose another folder or pass overwrite")
    parts = (
        [cast(Tables, cohorts)] if all(hasattr(cohorts, name) for name in TABLES) else cast(Iterable[Tables], cohorts)
    )
    meta = dict(metadata) if metadata is not None else None
    with staged_folder(target) as staging:
        for part, cohort in enumerate(parts):
            if meta is None:
                meta = stored_metadata(getattr(cohort, "metadata", {}))
            where = dict(
                zip(cohort.patients["patient_id"].astype(str), bucket_of(cohort.patients["patient_id"], buckets))
            )
            for name in TABLES:
                table = getattr(cohort, name)
                # rows whose patient is unknown go to bucket -1, where the reader reports them
                keys = table["patient_id"].astype(str).map(where).fillna(-1).astype(np.int64)
                for key, rows in table.groupby(keys.to_numpy(), sort=True):
                    out = staging / name / f"{BUCKET}={key}"
                    out.mkdir(parents=True, exist_ok=True)
                    rows.to_parquet(out / f"part-{part:05d}.parquet", index=False)
        for name in TABLES:
            (staging / name).mkdir(exist_ok=True)
        (staging / METADATA_FILE).write_text(
            json.dumps(
                {
                    **(meta or {}),
                    "partitioning": {
                        "by": "patient_id",
                        "buckets": buckets,
                        "hash": "sha256[:8] big-endian mod buckets",
                    },
                },
                sort_keys=True,
                indent=1,
                default=str,
            )
        )
    return target


@dataclass(frozen=True)
class Chunk:
    """Some infusions to read together: their ids and, in a bucketed layout, their bucket."""

    bucket: int | None
    patient_ids: pa.Array


@dataclass(frozen=True)
class PartitionedCohort:
    """An opened partitioned cohort folder: each table's files by bucket (all under ``None`` when the layout has
    no buckets) and its metadata. Datasets are built per table and bucket when read, and dropped after: a
    dataset over every file would keep every file's metadata in memory."""

    folder: Path
    files: Mapping[str, Mapping[int | None, tuple[str, ...]]]
    metadata: Mapping[str, Any]

    def buckets(self) -> list[int | None]:
        """Every bucket present in any table, or ``[None]`` for a layout without buckets."""
        return sorted({key for by_bucket in self.files.values() for key in by_bucket}, key=lambda k: (k is None, k))

    def dataset(self, name: str, bucket: int | None) -> ds.Dataset | None:
        """One table's files in one bucket (or all of them) as a dataset; None when there are none."""
        files = self.files[name].get(bucket, ())
        if not files:
            return None
        try:
            dataset = ds.dataset(list(files), format="parquet")
        except _ARROW_ERRORS as error:
            raise _fail(
                name, f"cannot read {self.relative(files[0])} or a file beside it: {str(error).splitlines()[0]}"
            ) from None
        if "patient_id" not in dataset.schema.names:
            raise _fail(name, f"{self.relative(files[0])} has no patient_id column: every table needs one")
        return dataset

    def relative(self, filename: str) -> str:
        """A data file's path relative to the cohort folder, as error messages show it."""
        return os.path.relpath(filename, self.folder)


def _problem(
    table: str, message: str, file: str | None = None, patient_id: Any = None, field: str = "patient_id"
) -> Problem:
    return Problem(
        f"{table} ({file})" if file else table,
        field,
        message,
        patient_id=None if patient_id is None else str(patient_id),
        csv=False,
    )


def _fail(table: str, message: str) -> CohortValidationError:
    return CohortValidationError([_problem(table, message, field="<folder>")])


def _bucket(path: Path, root: Path) -> int | None:
    """The K of a file under ``<table>/bucket=K/``, or None."""
    first = path.relative_to(root).parts[0]
    key, _, value = first.partition("=")
    return int(value) if key == BUCKET and value.lstrip("-").isdigit() else None


def open_partitioned(folder: str | os.PathLike) -> PartitionedCohort:
    """Find a partitioned cohort's files (no data is read yet); a missing table folder is a
    ``CohortValidationError`` naming it. The layout is bucketed when every file sits in a ``bucket=K`` folder."""
    root = Path(folder)
    found: dict[str, list[tuple[int | None, str]]] = {}
    for name in TABLES:
        path = root / name
        if not path.is_dir():
            raise _fail(name, f"missing table folder: expected {path} holding .parquet files")
        found[name] = [(_bucket(f, path), str(f)) for f in sorted(path.rglob("*.parquet"))]
    if not found[TABLES[0]]:
        raise _fail(TABLES[0], f"{root / TABLES[0]} holds no .parquet files")
    bucketed = all(key is not None for entries in found.values() for key, _ in entries)
    files: dict[str, dict[int | None, tuple[str, ...]]] = {}
    for name, entries in found.items():
        by_bucket: dict[int | None, list[str]] = {}
        for key, file in entries:
            by_bucket.setdefault(key if bucketed else None, []).append(file)
        files[name] = {key: tuple(paths) for key, paths in by_bucket.items()}
    meta = read_metadata(root)
    meta["source"] = str(root)
    meta["files"] = {name: f"{name}/ ({len(found[name])} files)" for name in TABLES}
    return PartitionedCohort(root, files, meta)


def _scan(
    source: PartitionedCohort,
    name: str,
    bucket: int | None,
    columns: list[str] | None,
    ids: pa.Array | None = None,
    stray: bool = False,
) -> pa.Table:
    """One table's rows in one bucket, each with the file it came from: all of them, those of the patients
    ``ids``, or (``stray``) those of no patient in ``ids``. ``columns`` None reads every column."""
    dataset = source.dataset(name, bucket)
    if dataset is None:  # a table with no rows here (e.g. no events at all)
        names = columns or [c.name for c in COLUMNS[name]]
        return pa.table({c: pa.array([], pa.string()) for c in [*names, "__filename"]})
    where = None
    if ids is not None:
        stored = dataset.schema.field("patient_id").type
        try:
            member = ds.field("patient_id").isin(ids.cast(stored))
        except _ARROW_ERRORS:
            raise _fail(
                name, f"patient_id is stored as {stored} but the patients table stores it as {ids.type}: use one type"
            ) from None
        where = (~member | ds.field("patient_id").is_null()) if stray else member
    try:
        return dataset.to_table(columns=[*(columns or dataset.schema.names), "__filename"], filter=where)
    except _ARROW_ERRORS as error:
        raise _fail(
            name, f"cannot read {source.relative(dataset.files[0])} or a file beside it: {str(error).splitlines()[0]}"
        ) from None


class _Problems(list):
    """Problems up to ``MAX_PROBLEMS``, counting the rest."""

    truncated = 0

    def add(self, problem: Problem) -> None:
        """Keep the problem, or count it when the list is full."""
        if len(self) < MAX_PROBLEMS:
            self.append(problem)
        else:
            self.truncated += 1


def plan_chunks(source: PartitionedCohort, chunk_size: int = 5000) -> list[Chunk]:
    """Split the infusions into even chunks of at most ``chunk_size`` (within a bucket when bucketed), after checking
    across all files what no single chunk can see: blank or duplicate patient ids, and measurement or event rows
    whose patient is not in the patients table (of their bucket). Reads only the ``patient_id`` columns."""
    if chunk_size < 1:
        raise InputError(f"chunk_size: expected at least 1, got {chunk_size}")
    chunks: list[Chunk] = []
    problems = _Problems()
    every: list[pa.Array] = []
    for bucket in source.buckets():
        scanned = _scan(source, "patients", bucket, ["patient_id"])
        for i in pc.indices_nonzero(pc.is_null(scanned["patient_id"])).to_pylist():
            problems.add(
                _problem(
                    "patients",
                    "patient_id is blank: every infusion needs an id",
                    source.relative(scanned["__filename"][i].as_py()),
                )
            )
        known = pc.drop_null(scanned["patient_id"]).combine_chunks().cast(pa.string())
        every.append(known)
        where = "" if bucket is None else f" of {BUCKET}={bucket} (a row must sit in its patient's bucket)"
        for name in TABLES[1:]:
            strays = _scan(source, name, bucket, ["patient_id"], known, stray=True)
            for row in strays.slice(0, MAX_PROBLEMS).to_pylist():
                problems.add(
                    _problem(
                        name,
                        f"no such patient_id in the patients table{where}",
                        source.relative(row["__filename"]),
                        row["patient_id"],
                    )
                )
            problems.truncated += max(0, strays.num_rows - MAX_PROBLEMS)
        size = math.ceil(len(known) / max(1, math.ceil(len(known) / chunk_size)))  # even: no small leftover
        chunks += [Chunk(bucket, known.slice(start, size)) for start in range(0, len(known), size)]
    counts = pc.value_counts(pa.chunked_array(every, pa.string()))
    repeated = counts.field("values").filter(pc.greater(counts.field("counts"), 1))
    for bucket in source.buckets() if len(repeated) else []:  # name the files of each repeated id
        for row in _scan(source, "patients", bucket, ["patient_id"], repeated).to_pylist():
            problems.add(
                _problem(
                    "patients",
                    "duplicate patient_id (in another row or file too): expected one row per infusion",
                    source.relative(row["__filename"]),
                    row["patient_id"],
                )
            )
    if problems:
        raise CohortValidationError(list(problems), problems.truncated)
    return chunks


def read_chunk(source: PartitionedCohort, chunk: Chunk) -> Cohort:
    """One chunk's rows of every table, validated by the contract's own validator into a ``Cohort``; problems
    name the file they came from."""
    raw, files = {}, {}
    for name in TABLES:
        table = _scan(source, name, chunk.bucket, None, chunk.patient_ids)
        files[name] = table["__filename"].dictionary_encode()  # a few file names, not one string per row
        raw[name] = table.drop_columns("__filename").to_pandas()
    try:
        return validate_tables(raw, csv={name: False for name in TABLES}, metadata=dict(source.metadata))
    except CohortValidationError as error:
        raise CohortValidationError(
            [
                Problem(
                    f"{p.table} ({source.relative(files[p.table][p.row - 1].as_py())})" if p.row else p.table,
                    p.field,
                    p.message,
                    None,
                    p.patient_id,
                    p.value,
                    csv=False,
                )
                for p in error.problems
            ],
            error.truncated,
        ) from None


def iter_chunks(folder: str | os.PathLike, chunk_size: int = 5000) -> Iterator[Cohort]:
    """The validated cohort of each chunk in turn: memory holds one chunk (plus every patient id), not the cohort."""
    source = open_partitioned(folder)
    for chunk in plan_chunks(source, chunk_size):
        yield read_chunk(source, chunk)
