"""Event lookups shared by the task kinds, on ``CohortArrays`` (numpy; a cohort or one patient alike).

Events after an infusion's follow-up ended are beyond observation: every lookup here ignores them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from crsrisk.cohort.arrays import EVENT_CODES, CohortArrays


@dataclass(frozen=True)
class ListedEvents:
    """The observed events of a list of infusions, sorted by list position then time (stable).

    ``owner`` is the position in the list each event belongs to (an infusion may be listed twice, e.g. at two
    landmarks); ``starts``/``ends`` delimit each position's slice.
    """

    owner: np.ndarray
    hours: np.ndarray
    code: np.ndarray
    value: np.ndarray
    offsets: np.ndarray

    def of(self, kind: str) -> np.ndarray:
        """Mask of the events of one kind (``crs_grade``, ``tocilizumab``, ...)."""
        return self.code == EVENT_CODES[kind]

    def first(self, mask: np.ndarray, n: int) -> np.ndarray:
        """Per list position, the earliest hour among the masked events (inf when none)."""
        out = np.full(n, np.inf)
        np.minimum.at(out, self.owner[mask], self.hours[mask])
        return out

    def in_force(self, kind: str, owner: np.ndarray, at: np.ndarray) -> np.ndarray:
        """The value of the latest ``kind`` record at or before each (owner, hour) query; 0 when none (a grade
        is 0 until a record says otherwise)."""
        out = np.zeros(owner.size)
        mask = self.of(kind)
        for i, (position, hour) in enumerate(zip(owner.tolist(), at.tolist())):
            start, end = self.offsets[position], self.offsets[position + 1]
            rows = np.flatnonzero(mask[start:end] & (self.hours[start:end] <= hour))
            if rows.size:
                out[i] = self.value[start + rows[-1]]
        return out


def listed_events(arrays: CohortArrays, codes: np.ndarray) -> ListedEvents:
    """The observed events (within follow-up) of each listed infusion, sorted by list position and time."""
    positions, owner = arrays.events.gather(np.asarray(codes, dtype=np.int64))
    events = arrays.events
    hours = events.hours[positions]
    keep = hours <= arrays.followup[events.patient[positions]]
    owner, hours, positions = owner[keep], hours[keep], positions[keep]
    order = np.lexsort((hours, owner))  # stable: equal times keep their stored order
    owner, hours, positions = owner[order], hours[order], positions[order]
    offsets = np.searchsorted(owner, np.arange(len(codes) + 1), side="left")
    return ListedEvents(owner, hours, events.code[positions], events.value[positions], offsets)


def everyone_events(arrays: CohortArrays) -> ListedEvents:
    """``listed_events`` of every infusion in patient order, computed once per ``arrays`` (risk sets and
    occurrences of every task read it)."""
    if "everyone_events" not in arrays.memo:
        arrays.memo["everyone_events"] = listed_events(arrays, np.arange(arrays.patient_ids.size))
    return arrays.memo["everyone_events"]
