"""Files and text made for people and other tools to open: JSON without NaN, CSV without formulas, written
atomically (``crsrisk.util.atomic``), private to the owner when they hold patient data."""

from __future__ import annotations

import io
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crsrisk.util.atomic import write_bytes
from crsrisk.schema.numbers import NUMBER_TEXT

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet reads as a formula (OWASP CSV injection)


def readable(value: float, digits: int = 3) -> str:
    """A number as people write it: ``digits`` significant figures, thousands separated, no trailing zeros, and
    no exponent between 0.0001 and a trillion (``0.0175``, ``52,300``, ``9,000,000``, ``45``)."""
    if not math.isfinite(value) or value == 0:
        return f"{value:g}"
    magnitude = math.floor(math.log10(abs(value)))
    if not -4 <= magnitude < 12:
        return f"{value:.{digits}g}"
    decimals = max(digits - 1 - magnitude, 0)
    text = f"{round(value, digits - 1 - magnitude):,.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def json_ready(value: Any) -> Any:
    """NaN and infinity become null (and numpy scalars plain Python) so the JSON is valid for every reader."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, np.generic):
        return json_ready(value.item())
    return value


def json_text(document: Any, indent: int | None = 1) -> str:
    """Strict JSON text: never ``NaN`` or ``Infinity`` (null instead); other objects as their text."""
    return json.dumps(json_ready(document), indent=indent, allow_nan=False, default=str)


def write_json(path: str | os.PathLike, document: Any, private: bool = False) -> Path:
    """Write strict JSON atomically."""
    return write_bytes(path, json_text(document).encode(), private=private)


def _neutral(cell: Any) -> Any:
    if isinstance(cell, str) and cell.startswith(FORMULA_STARTS) and not NUMBER_TEXT.fullmatch(cell):
        return "'" + cell
    return cell


def neutralised(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy whose text cells (and column names) that a spreadsheet would run as a formula start with ``'``;
    numbers, including negative numbers and text that is exactly a decimal number, are left as they are."""
    out = frame.rename(columns=_neutral)
    for i in range(out.shape[1]):
        column = out.iloc[:, i]
        if pd.api.types.is_object_dtype(column.dtype) or pd.api.types.is_string_dtype(column.dtype):
            out.isetitem(i, column.map(_neutral, na_action="ignore"))
    return out


def write_table(frame: pd.DataFrame, path: str | os.PathLike, private: bool = True) -> Path:
    """Write a table atomically as Parquet (``.parquet``) or CSV (any other name, formula cells neutralised);
    private (0600) by default, since the tables crsrisk writes hold patient rows."""
    if Path(path).suffix == ".parquet":
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        data = buffer.getvalue()
    else:
        # CRLF (RFC 4180) also makes the writer quote a field holding a bare carriage return
        data = neutralised(frame).to_csv(index=False, lineterminator="\r\n").encode()
    return write_bytes(path, data, private=private)
