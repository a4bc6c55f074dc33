"""Strict readers of the scalar arguments beside a record (an hour, a count, a yes/no), shared by the library
and the service so that both refuse the same values by name: a boolean is never a number, text is never a
boolean, and a number beyond the allowed range (or not finite) is refused, never clipped.
"""

from __future__ import annotations

import math
from typing import Any, overload

import numpy as np

from crsrisk.errors import CohortValidationError, Problem
from crsrisk.schema.numbers import parse_number
from crsrisk.schema.tables import MEASUREMENT_COLUMNS

LAST_HOUR = next(c.high for c in MEASUREMENT_COLUMNS if c.name == "hours_since_infusion" and c.high is not None)
MAX_COUNT = 1_000_000  # a count argument (how many reasons to keep) above this is a mistake, not a wish


def refused(field: str, message: str, value: Any) -> CohortValidationError:
    """The validation error for one bad argument, naming it and the value."""
    return CohortValidationError([Problem("arguments", field, message, value=value, csv=False)])


@overload
def parse_hours(value: None, field: str = ...) -> None: ...
@overload
def parse_hours(value: float | str, field: str = ...) -> float: ...
def parse_hours(value: Any, field: str = "now_hours") -> float | None:
    """None when not given, else a number of hours after infusion from 0 to the contract's last hour (parsed as
    every number of the contract: decimal text allowed, booleans refused), or the error naming ``field``."""
    if value is None:
        return None
    number = parse_number(value)
    if number is None or not 0 <= number <= LAST_HOUR:  # also refuses NaN and infinity
        raise refused(field, f"expected a number of hours after infusion from 0 to {LAST_HOUR:g}", value)
    return number


def parse_count(value: Any, field: str, low: int = 1, high: int = MAX_COUNT) -> int | None:
    """None when not given, else a whole number from ``low`` to ``high`` (an integer, or a float or decimal text
    with no fraction; booleans refused), or the error naming ``field``."""
    if value is None:
        return None
    number = parse_number(value)
    if number is None or not low <= number <= high or number != math.floor(number):
        raise refused(field, f"expected a whole number from {low} to {high}", value)
    return int(number)


def parse_flag(value: Any, field: str) -> bool:
    """A yes/no argument: only a boolean (``true``/``false`` in JSON) is one; None means no."""
    if value is None:
        return False
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise refused(field, "expected true or false (a boolean)", value)
