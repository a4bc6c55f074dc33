"""How the contract reads a number, a truth value and a text cell: the one home of the number-text rule.

The table validator, the record fast path, the strict argument parsers and the CSV writer (which must not
quote a number as a formula) all read these, so a value means the same everywhere.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pandas as pd

TRUE_TEXT = frozenset({"true", "t", "yes", "y", "1", "1.0"})
FALSE_TEXT = frozenset({"false", "f", "no", "n", "0", "0.0"})
WHITESPACE = " \t\n\r\f\v"  # stripped around every value: ASCII only, so Python and Arrow strip alike
NUMBER_TEXT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")  # ASCII digits only


def parse_number(value: Any) -> float | None:
    """One cell as a float: NaN when blank, infinity for an integer beyond float range, None when it is not a
    number. Booleans, complex numbers, bytes, containers and non-decimal text (``'\u0661'``, ``'1_000'``,
    ``'nan'``) are never coerced."""
    if type(value) is float:
        return value
    if value is None or value is pd.NA:
        return math.nan
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, (int, np.integer)):
        try:
            return float(value)
        except OverflowError:
            return math.inf if value > 0 else -math.inf
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, str):
        text = value.strip(WHITESPACE)
        if not text:
            return math.nan
        return float(text) if NUMBER_TEXT.fullmatch(text) else None
    return None


def parse_truth(value: Any) -> bool | None:
    """A truth value as the contract spells it (a bool, or ``TRUE_TEXT``/``FALSE_TEXT`` in any case), None when
    it is none of those."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, str) and value.isascii():
        text = value.strip(WHITESPACE).lower()
        if text in TRUE_TEXT:
            return True
        if text in FALSE_TEXT:
            return False
    return None


def encodable(text: str) -> bool:
    """True when the text can be written as UTF-8 (no lone surrogate halves)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
