"""The kinds of contract column (number, truth value, text, one of a list), each a small class chosen once.

A kind knows how one plain value of it reads (the record fast path asks ``plain``), the pandas dtype and numpy
array type of a validated column, and whether truth-value text is read. The table validator dispatches on
``name`` through its own registry of vectorised checks.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Protocol

import numpy as np
import pandas as pd

from crsrisk.schema.numbers import WHITESPACE, encodable, parse_number, parse_truth

DECLINED: Any = object()  # ``plain`` could not read the value plainly: the table validator decides


class Bounded(Protocol):
    """What a kind reads of its column: the allowed values and the range (see ``schema.tables.Column``)."""

    @property
    def choices(self) -> tuple[str, ...]: ...  # read-only: Column is frozen

    def in_range(self, number: float) -> bool: ...


def _blank(value: Any) -> bool:
    """None, NaN or blank text: a missing value, as the table validator reads it."""
    return (
        value is None
        or value is pd.NA
        or (isinstance(value, float) and math.isnan(value))
        or (isinstance(value, str) and not value.strip(WHITESPACE))
    )


class Kind:
    """One kind of column: its name in the contract, its dtypes, and how a plain value of it reads."""

    name: ClassVar[str]
    dtype: ClassVar[str]  # pandas dtype of the validated column
    array: ClassVar[type] = object  # numpy dtype of the column in ``CohortArrays``
    reads_truth: ClassVar[bool] = False  # text cells "yes"/"no" (and booleans) are this column's values

    def plain(self, value: Any, column: Bounded) -> Any:
        """The value when plainly valid (None or NaN when blank), else ``DECLINED``."""
        raise NotImplementedError

    def missing(self, value: Any) -> bool:
        """True when ``plain``'s answer is a blank."""
        return value is None

    def __repr__(self) -> str:
        return self.name


class Number(Kind):
    """A finite decimal number within the column's range; NaN when blank."""

    name, dtype, array = "float", "float64", np.float64

    def plain(self, value: Any, column: Bounded) -> Any:
        number = parse_number(value)
        if number is None:
            return DECLINED
        if math.isnan(number):
            return number
        return number if math.isfinite(number) and column.in_range(number) else DECLINED

    def missing(self, value: Any) -> bool:
        return math.isnan(value)


class Truth(Kind):
    """true/false, also yes/no and 1/0."""

    name, dtype, reads_truth = "bool", "boolean", True

    def plain(self, value: Any, column: Bounded) -> Any:
        if _blank(value):
            return None
        truth = parse_truth(value)
        return DECLINED if truth is None else truth


class Text(Kind):
    """Stripped UTF-8 text."""

    name, dtype = "string", "string"

    def plain(self, value: Any, column: Bounded) -> Any:
        if _blank(value):
            return None
        if not isinstance(value, str) or not encodable(value):
            return DECLINED
        return value.strip(WHITESPACE)


class Choice(Text):
    """Text that is one of the column's choices."""

    name = "category"

    def plain(self, value: Any, column: Bounded) -> Any:
        text = super().plain(value, column)
        return text if text is None or text is DECLINED or text in column.choices else DECLINED


NUMBER, TRUTH, TEXT, CHOICE = Number(), Truth(), Text(), Choice()
