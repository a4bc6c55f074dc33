"""The cohort rules that span columns, declared once as data: each rule holds its limits and both its forms, a
scalar check (the record fast path) and a vectorised one (the table validator), so the two cannot drift.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

import numpy as np
import pandas as pd

from crsrisk.schema.tables import DRUG_EVENTS, GRADE_EVENTS, GRADE_RANGE, MAX_DRUG_DOSE, PRODUCT_COSTIM


@dataclass(frozen=True)
class ValueRule:
    """What an event's ``value`` must be: within ``low``..``high`` (``low`` itself excluded when ``open_low``),
    a whole number when ``integer``, present when ``required``."""

    low: float
    high: float
    expected: str
    open_low: bool = False
    integer: bool = False
    required: bool = False

    def holds(self, value: float) -> bool:
        """The scalar form: True when ``value`` (NaN when blank) keeps the rule."""
        if value != value:  # NaN: blank
            return not self.required
        above = value > self.low if self.open_low else value >= self.low
        return above and value <= self.high and (not self.integer or value == round(value))

    def broken(self, values: pd.Series) -> pd.Series:
        """The vectorised form: True where a value breaks the rule (the same comparisons as ``holds``)."""
        blank = values.isna()
        above = values > self.low if self.open_low else values >= self.low
        kept = above & (values <= self.high)
        if self.integer:
            kept &= values == np.round(values)
        return (~blank & ~kept.fillna(False).astype(bool)) | (blank & self.required)


_GRADE = ValueRule(
    *GRADE_RANGE, f"expected an integer grade {GRADE_RANGE[0]} to {GRADE_RANGE[1]}", integer=True, required=True
)
_DOSE = ValueRule(
    0.0, MAX_DRUG_DOSE, f"expected a dose above 0 and at most {MAX_DRUG_DOSE:g} (or blank)", open_low=True
)
EVENT_VALUE: Mapping[str, ValueRule] = MappingProxyType(
    {**{e: _GRADE for e in GRADE_EVENTS}, **{e: _DOSE for e in DRUG_EVENTS}}
)
"""Event kind -> the rule its ``value`` keeps."""


@dataclass(frozen=True)
class Implied:
    """A column filled from another where blank (``costim_domain`` from ``product``): a given value must agree
    with the implied one, and it is required where the source is one of ``needed_for`` (implies nothing)."""

    column: str
    source: str
    implied: Mapping[str, str]
    needed_for: tuple[str, ...]
    conflict: str
    needed: str

    def fill(self, own: str | None, source: str | None) -> tuple[str | None, str | None]:
        """The scalar form: the column's value and the broken rule's message (None when kept)."""
        implied = self.implied.get(source) if source is not None else None
        if own is None:
            return implied, (self.needed if source in self.needed_for else None)
        return own, (self.conflict if implied is not None and own != implied else None)

    def fill_table(self, own: pd.Series, source: pd.Series) -> tuple[pd.Series, pd.Series, pd.Series]:
        """The vectorised form: the filled column, where it contradicts the source, where it is needed."""
        implied = source.map(dict(self.implied)).astype("string")
        conflict = (own.notna() & implied.notna() & (own != implied)).fillna(False).astype(bool)
        needed = (source.isin(self.needed_for).fillna(False) & own.isna()).astype(bool)
        return own.fillna(implied), conflict, needed


COSTIM = Implied(
    "costim_domain",
    "product",
    PRODUCT_COSTIM,
    ("other",),
    f"contradicts the product's costimulatory domain ({dict(PRODUCT_COSTIM)})",
    "required when product is 'other' (expected 4-1BB or CD28)",
)
