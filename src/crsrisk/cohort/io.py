"""Reading and writing cohort folders (the I/O edge of the contract)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from crsrisk.atomic import staged_folder
from crsrisk.cohort.validated import Cohort
from crsrisk.errors import CohortValidationError, Problem
from crsrisk.schema.tables import TABLES
from crsrisk.cohort.validate import validate_tables

METADATA_FILE = "cohort.json"  # optional: {"synthetic": true, ...}; written by the generator
TRUTH_FILE = "truth.csv"  # a synthetic cohort's true outcome probabilities: beside the tables, never read as data
SUFFIXES = (".csv", ".parquet")


def _table_file(folder: Path, name: str) -> Path:
    found = [folder / f"{name}{suffix}" for suffix in SUFFIXES if (folder / f"{name}{suffix}").exists()]
    if not found:
        raise CohortValidationError([Problem(name, "<file>", f"missing table: expected {name}.csv or "
                                             f"{name}.parquet in {folder}")])
    if len(found) > 1:
        raise CohortValidationError([Problem(name, "<file>", f"both {found[0].name} and {found[1].name} "
                                             "exist: keep exactly one")])
    return found[0]


def _read(path: Path, name: str) -> pd.DataFrame:
    """Read one table as text (CSV) or as stored (Parquet); parse failures become validation errors."""
    try:
        if path.suffix == ".csv":
            return pd.read_csv(path, dtype=str, keep_default_na=True, skipinitialspace=True)
        return pd.read_parquet(path)
    except pd.errors.EmptyDataError:
        raise CohortValidationError([Problem(name, "<file>", f"{path.name} is empty: expected a header row")]) from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise CohortValidationError([Problem(name, "<file>", f"cannot read {path.name}: {message}")]) from None


def read_metadata(folder: Path) -> dict:
    """A cohort folder's optional ``cohort.json`` (an object), or {} when absent; bad JSON is a validation error."""
    path = folder / METADATA_FILE
    if not path.exists():
        return {}
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CohortValidationError([Problem("cohort.json", "<file>", f"not valid JSON: {error}")]) from None
    if not isinstance(meta, dict):
        raise CohortValidationError([Problem("cohort.json", "<file>", "expected a JSON object")])
    return meta


def stored_metadata(metadata: dict) -> dict:
    """What of a cohort's metadata belongs in a written ``cohort.json``: not what loading it adds (its source,
    files, unit conversions and notes)."""
    return {k: v for k, v in metadata.items() if k not in ("source", "files", "units_converted", "notes")}


def load_cohort(path: str | os.PathLike) -> Cohort:
    """Read, validate and unit-normalise a cohort folder; raise ``CohortValidationError`` naming every problem."""
    folder = Path(path)
    if not folder.is_dir():
        raise CohortValidationError([Problem("cohort", "<folder>", f"{folder} is not a folder holding "
                                             "patients, measurements and events tables")])
    files = {name: _table_file(folder, name) for name in TABLES}
    raw = {name: _read(file, name) for name, file in files.items()}
    metadata = read_metadata(folder)
    metadata["source"] = str(folder)
    metadata["files"] = {name: file.name for name, file in files.items()}
    return validate_tables(raw, csv={name: file.suffix == ".csv" for name, file in files.items()},
                           metadata=metadata)


def write_tables(tables: dict[str, pd.DataFrame], out_dir: str | os.PathLike, extra: dict[str, bytes] | None = None,
                 overwrite: bool = False, float_format: str | None = None) -> Path:
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
        raise ValueError(f"fmt: expected 'csv' or 'parquet', got {fmt!r}")
    tables = {f"{name}.{fmt}": getattr(cohort, name) for name in TABLES}
    meta = stored_metadata(cohort.metadata)
    return write_tables(tables, out_dir, {METADATA_FILE: json.dumps(meta, sort_keys=True, indent=1).encode()},
                        overwrite=overwrite)
