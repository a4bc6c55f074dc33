"""Reading and writing cohort folders (the I/O edge of the contract)."""

from __future__ import annotations

import io
import json
import os
import stat
from pathlib import Path

import pandas as pd

from crsrisk.util.atomic import staged_folder
from crsrisk.cohort.validated import Cohort
from crsrisk.errors import CohortValidationError, InputError, Problem, shown
from crsrisk.schema.tables import TABLES
from crsrisk.cohort.validate import MAX_PROBLEMS, validate_tables

METADATA_FILE = "cohort.json"  # optional: {"synthetic": true, ...}; written by the generator
TRUTH_FILE = "truth.csv"  # a synthetic cohort's true outcome probabilities: beside the tables, never read as data
SUFFIXES = (".csv", ".parquet")
MAX_TABLE_BYTES = 1024**3  # a cohort table file larger than 1 GiB is refused before it is read
MAX_SETTINGS_BYTES = 1024**2  # cohort.json and experiment configs


def _cannot_read(path: str | os.PathLike, table: str, reason: str) -> CohortValidationError:
    return CohortValidationError([Problem(table, "<file>", f"cannot read {shown(os.fsdecode(path))}: {reason}")])


def _kind(mode: int) -> str:
    return (
        "a folder"
        if stat.S_ISDIR(mode)
        else "a FIFO (named pipe)"
        if stat.S_ISFIFO(mode)
        else "a device"
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
        else "a socket"
        if stat.S_ISSOCK(mode)
        else "not a regular file"
    )


def _exists(path: Path) -> bool:
    """Whether anything is at ``path``; a path the system cannot even look up is a validation error."""
    try:
        os.lstat(path)
    except FileNotFoundError:
        return False
    except (OSError, ValueError) as error:
        raise _cannot_read(path, "cohort", getattr(error, "strerror", None) or str(error)) from None
    return True


def is_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder; a path the system cannot look up (too long, a NUL byte) is the validation
    error saying so, never an ``OSError``."""
    return _exists(Path(path)) and Path(path).is_dir()


def read_limited(path: str | os.PathLike, limit: int, table: str) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes, or the validation error saying why not.

    The file is opened without blocking and checked on the open descriptor, so a folder, FIFO, device or
    socket is refused without waiting on it, and nothing larger than the limit is read into memory."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise _cannot_read(path, table, "no such file") from None
    except (OSError, ValueError) as error:  # too long, a folder on some systems, no permission, a NUL byte
        raise _cannot_read(path, table, getattr(error, "strerror", None) or str(error)) from None
    handle = None
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            raise _cannot_read(path, table, f"it is {_kind(info.st_mode)}, expected a regular file")
        if info.st_size > limit:
            raise _cannot_read(path, table, f"{info.st_size:,} bytes is more than the limit of {limit:,}")
        handle = os.fdopen(descriptor, "rb")
        data = handle.read(limit + 1)
    except OSError as error:
        raise _cannot_read(path, table, error.strerror or str(error)) from None
    finally:
        handle.close() if handle is not None else os.close(descriptor)
    if len(data) > limit:
        raise _cannot_read(path, table, f"more than the limit of {limit:,} bytes")
    return data


def _table_file(folder: Path, name: str) -> Path:
    found = [folder / f"{name}{suffix}" for suffix in SUFFIXES if _exists(folder / f"{name}{suffix}")]
    if not found:
        raise CohortValidationError(
            [Problem(name, "<file>", f"missing table: expected {name}.csv or {name}.parquet in {folder}")]
        )
    if len(found) > 1:
        raise CohortValidationError(
            [Problem(name, "<file>", f"both {found[0].name} and {found[1].name} exist: keep exactly one")]
        )
    return found[0]


def _read(path: Path, name: str) -> pd.DataFrame:
    """Read one table (at most ``MAX_TABLE_BYTES``) as text (CSV) or as stored (Parquet); parse failures
    become validation errors."""
    data = io.BytesIO(read_limited(path, MAX_TABLE_BYTES, name))
    try:
        if path.suffix == ".csv":
            return pd.read_csv(data, dtype=str, keep_default_na=True, skipinitialspace=True)
        return pd.read_parquet(data)
    except pd.errors.EmptyDataError:
        raise CohortValidationError([Problem(name, "<file>", f"{path.name} is empty: expected a header row")]) from None
    except Exception as error:  # noqa: BLE001 - a damaged file can fail inside pandas or pyarrow in many ways
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise CohortValidationError([Problem(name, "<file>", f"cannot read {path.name}: {message}")]) from None


def read_metadata(folder: Path) -> dict:
    """A cohort folder's optional ``cohort.json`` (an object), or {} when absent; bad JSON is a validation error."""
    path = folder / METADATA_FILE
    if not _exists(path):
        return {}
    try:
        meta = json.loads(read_limited(path, MAX_SETTINGS_BYTES, "cohort.json"))
    except (ValueError, RecursionError) as error:  # not JSON, not UTF-8, nested too deeply
        raise CohortValidationError([Problem("cohort.json", "<file>", f"not valid JSON: {error}")]) from None
    if not isinstance(meta, dict):
        raise CohortValidationError([Problem("cohort.json", "<file>", "expected a JSON object")])
    return meta


def stored_metadata(metadata: dict) -> dict:
    """What of a cohort's metadata belongs in a written ``cohort.json``: not what loading it adds (its source,
    files, unit conversions and notes)."""
    return {k: v for k, v in metadata.items() if k not in ("source", "files", "units_converted", "notes")}


def load_cohort(path: str | os.PathLike, max_problems: int = MAX_PROBLEMS) -> Cohort:
    """Read, validate and unit-normalise a cohort folder; raise ``CohortValidationError`` counting every problem by
    kind, with the first ``max_problems`` as examples."""
    folder = Path(path)
    if not is_folder(folder):
        raise CohortValidationError(
            [
                Problem(
                    "cohort",
                    "<folder>",
                    f"{shown(str(folder))} is not a folder holding patients, measurements and events tables",
                )
            ]
        )
    files = {name: _table_file(folder, name) for name in TABLES}
    raw = {name: _read(file, name) for name, file in files.items()}
    metadata = read_metadata(folder)
    metadata["source"] = str(folder)
    metadata["files"] = {name: file.name for name, file in files.items()}
    return validate_tables(
        raw,
        csv={name: file.suffix == ".csv" for name, file in files.items()},
        metadata=metadata,
        max_problems=max_problems,
    )


def write_tables(
    tables: dict[str, pd.DataFrame],
    out_dir: str | os.PathLike,
    extra: dict[str, bytes] | None = None,
    overwrite: bool = False,
    float_format: str | None = None,
) -> Path:
    """Write tables (and extra files) into ``out_dir`` atomically: a failure never leaves a half folder."""
    target = Path(out_dir)
    if target.exists() and any(target.iterdir()) and not overwrite:
        raise FileExistsError(f"{target} exists and is not empty; choose another folder or pass overwrite")
    with staged_folder(target) as staging:
        for name, table in tables.items():
            file = staging / name
            if file.suffix == ".parquet":
                table.to_parquet(file, index=False)
            else:
                table.to_csv(file, index=False, lineterminator="\n", float_format=float_format)
        for name, content in (extra or {}).items():
            (staging / name).write_bytes(content)
    return target


def write_cohort(cohort: Cohort, out_dir: str | os.PathLike, fmt: str = "csv", overwrite: bool = False) -> Path:
    """Write a canonical ``Cohort`` as a contract folder (CSV or Parquet) with its metadata."""
    if fmt not in ("csv", "parquet"):
        raise InputError(f"fmt: expected 'csv' or 'parquet', got {fmt!r}")
    tables = {f"{name}.{fmt}": getattr(cohort, name) for name in TABLES}
    meta = stored_metadata(cohort.metadata)
    return write_tables(
        tables, out_dir, {METADATA_FILE: json.dumps(meta, sort_keys=True, indent=1).encode()}, overwrite=overwrite
    )
