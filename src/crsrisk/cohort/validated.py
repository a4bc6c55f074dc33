"""The validated, unit-normalised cohort that every other part of crsrisk consumes."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from crsrisk.schema.tables import TABLES


@dataclass(frozen=True)
class Cohort:
    """Three contract tables in canonical units, plus metadata (synthetic flag, source, conversions).

    patients: one row per infusion, ``patient_id`` unique, optional columns present (NA if absent),
      ``costim_domain`` filled from ``product`` where blank, ``diagnosis`` defaulted, and
      ``followup_hours`` defaulted to 28 days.
    measurements: ``patient_id, hours_since_infusion, analyte, value, unit``; value and unit canonical.
    events: ``patient_id, hours_since_infusion, event, value``.
    """

    patients: pd.DataFrame
    measurements: pd.DataFrame
    events: pd.DataFrame
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def synthetic(self) -> bool:
        """True when the cohort came from crsrisk's generator (never clinical evidence)."""
        return bool(self.metadata.get("synthetic", False))

    def fingerprint(self) -> str:
        """SHA-256 of the canonical tables' content, independent of file format and row order."""
        digest = hashlib.sha256()
        for name in TABLES:
            table = getattr(self, name)
            ordered = table.sort_values(list(table.columns)).reset_index(drop=True)
            digest.update(name.encode())
            digest.update(ordered.to_csv(index=False, float_format="%.10g").encode())
        return digest.hexdigest()

    def subset(self, patient_ids) -> "Cohort":
        """The same cohort restricted to the given infusions (for folds and held-out sets)."""
        keep = set(patient_ids)
        return Cohort(
            self.patients[self.patients["patient_id"].isin(keep)].reset_index(drop=True),
            self.measurements[self.measurements["patient_id"].isin(keep)].reset_index(drop=True),
            self.events[self.events["patient_id"].isin(keep)].reset_index(drop=True),
            dict(self.metadata),
        )
