"""The validated cohort as flat numpy arrays: what the feature and risk-set kernels read.

One representation for a whole cohort (built from a ``Cohort``) and for a single patient (built straight from
a validated record on the clinician's path), so both go through the same vectorised code. Patients are coded
0..P-1 in ``patients`` order; measurements and events are grouped by patient (stable, so ties keep their
order) with ``offsets`` marking each patient's slice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Mapping

import numpy as np
import pandas as pd

from crsrisk.errors import NotFoundError
from crsrisk.schema.analytes import ANALYTES
from crsrisk.schema.kinds import Kind
from crsrisk.schema.tables import EVENT_KINDS, PATIENT_COLUMNS

if TYPE_CHECKING:
    from crsrisk.cohort.validated import Cohort

ANALYTE_CODES: Mapping[str, int] = MappingProxyType({name: i for i, name in enumerate(ANALYTES)})
EVENT_CODES: Mapping[str, int] = MappingProxyType({name: i for i, name in enumerate(EVENT_KINDS)})


@dataclass(frozen=True)
class Rows:
    """One long table (measurements or events) grouped by patient code.

    ``code`` is the analyte (measurements) or event kind (events) as an index into ``ANALYTE_CODES`` /
    ``EVENT_CODES``; ``offsets[p]:offsets[p + 1]`` is patient p's slice.
    """

    patient: np.ndarray
    hours: np.ndarray
    code: np.ndarray
    value: np.ndarray
    offsets: np.ndarray

    def gather(self, patients: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positions of the rows of each listed patient (a patient may be listed twice) and the list index
        each position belongs to, in list order then stored order."""
        starts, ends = self.offsets[patients], self.offsets[patients + 1]
        counts = ends - starts
        owner = np.repeat(np.arange(len(patients)), counts)
        shift = np.repeat(starts - (np.cumsum(counts) - counts), counts)
        return np.arange(owner.size) + shift, owner


@dataclass(frozen=True)
class CohortArrays:
    """Patients (``patient_ids`` and each contract column as an array), measurements and events as ``Rows``.

    Float columns are float64 with NaN for missing; the others are object arrays with ``None`` for missing.
    ``followup`` is ``followup_hours`` (already defaulted by validation).
    """

    patient_ids: np.ndarray
    patients: Mapping[str, np.ndarray]
    measurements: Rows
    events: Rows
    memo: dict = field(default_factory=dict, compare=False, repr=False)  # derived views, computed once each

    @property
    def followup(self) -> np.ndarray:
        """Hours observed after infusion, per patient."""
        return self.patients["followup_hours"]

    def codes(self, patient_ids: object) -> np.ndarray:
        """Patient codes of the given ids; a KeyError names the first unknown one."""
        wanted = np.asarray(patient_ids, dtype=object)
        found = pd.Index(self.patient_ids).get_indexer(wanted)
        if (found < 0).any():
            raise NotFoundError(f"patient_id {wanted[np.argmax(found < 0)]!r} is not in the cohort")
        return found


def grouped_rows(patient: np.ndarray, hours: np.ndarray, code: np.ndarray, value: np.ndarray, n_patients: int) -> Rows:
    """``Rows`` from unsorted columns: stable-sorted by patient code, with each patient's offsets."""
    order = np.argsort(patient, kind="stable")
    patient = patient[order]
    offsets = np.searchsorted(patient, np.arange(n_patients + 1), side="left")
    return Rows(patient, hours[order].astype(np.float64), code[order], value[order].astype(np.float64), offsets)


def _column(series: pd.Series, kind: Kind) -> np.ndarray:
    if kind.array is np.float64:
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    values = series.astype(object)
    return values.where(series.notna(), None).to_numpy(dtype=object)


def _codes(values: pd.Series, vocabulary: object) -> np.ndarray:
    """Position of each value in ``vocabulary`` (-1 when absent): factorise first, then look up only the distinct
    values (several times faster than looking up every row of a string column)."""
    codes, distinct = pd.factorize(values)
    return np.append(pd.Index(vocabulary).get_indexer(distinct), -1)[codes]


def cohort_arrays(cohort: "Cohort") -> CohortArrays:
    """The arrays of a validated ``Cohort`` (vectorised; a few milliseconds for thousands of infusions)."""
    patients = cohort.patients
    ids = patients["patient_id"].to_numpy(dtype=object)
    n = len(ids)
    columns = {c.name: _column(patients[c.name], c.kind) for c in PATIENT_COLUMNS}
    m, e = cohort.measurements, cohort.events
    measurements = grouped_rows(
        _codes(m["patient_id"], ids),
        m["hours_since_infusion"].to_numpy(dtype=np.float64),
        _codes(m["analyte"], list(ANALYTE_CODES)),
        m["value"].to_numpy(dtype=np.float64, na_value=np.nan),
        n,
    )
    events = grouped_rows(
        _codes(e["patient_id"], ids),
        e["hours_since_infusion"].to_numpy(dtype=np.float64),
        _codes(e["event"], list(EVENT_CODES)),
        e["value"].to_numpy(dtype=np.float64, na_value=np.nan),
        n,
    )
    return CohortArrays(ids, MappingProxyType(columns), measurements, events)
