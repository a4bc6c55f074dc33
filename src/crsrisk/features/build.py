"""Landmark features: one row per (infusion, landmark) from what was known strictly before the landmark.

The leakage guard lives here: every measurement and event used is known at its own row's landmark
(``crsrisk.landmarks.known_at``: strictly before it), and every aggregation is within one row's own slice, so no
row depends on another infusion's data. One numpy kernel (``feature_matrix``) serves a whole cohort and a single patient alike: sort once,
reduce per group, scatter into the matrix; no per-patient Python loop and no pandas on the hot path.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Mapping, NamedTuple

import numpy as np
import pandas as pd

from crsrisk.cohort.validated import Cohort
from crsrisk.cohort.arrays import ANALYTE_CODES, EVENT_CODES, CohortArrays, Rows, cohort_arrays
from crsrisk.features.spec import ONE_HOT, WINDOW_STATS, feature_names, one_hot_name
from crsrisk.landmarks import known_at
from crsrisk.schema.analytes import FEVER_THRESHOLD_C
from crsrisk.schema.tables import BASELINE_WINDOW_HOURS

CRP_MG_DL_PER_MG_L = 0.1  # m-EASIX uses CRP in mg/dL (Pennisi et al., Blood Adv 2021; confirmed)
_TEMPERATURE = ANALYTE_CODES["temperature"]

# How the patient-level features are computed from the patients table (spec.py holds their labels and units).
_NUMERIC_PATIENT_FIELDS = ("age_years", "weight_kg", "marrow_blasts_pct", "dose_1e6_cells_per_kg")
_FLAGS = (
    ("sex_male", "sex", "M"),
    ("extramedullary_disease", "extramedullary_disease", True),
    ("cns3", "cns_status", "CNS3"),
    ("prior_hsct", "prior_hsct", True),
    ("costim_cd28", "costim_domain", "CD28"),
    ("lymphodepletion_flu_cy", "lymphodepletion", "flu_cy"),
)


@lru_cache(maxsize=1)
def _patient_names() -> tuple[str, ...]:
    """The patient-level feature names, in the order ``_patient_block`` emits them."""
    return (
        *_NUMERIC_PATIENT_FIELDS,
        *(name for name, _, _ in _FLAGS),
        *(one_hot_name(field, level) for field, levels in ONE_HOT for level in levels),
    )


@lru_cache(maxsize=2)
def _layout(window: bool) -> tuple[dict[str, int], dict[str, np.ndarray]]:
    """Column index of every feature; per analyte statistic the column of each analyte (by code); and the
    columns of the patient block (key ``patient``)."""
    index = {name: i for i, name in enumerate(feature_names(window))}
    per_analyte = {
        "baseline": np.array([index[f"baseline_{a}"] for a in ANALYTE_CODES]),
        "patient": np.array([index[name] for name in _patient_names()]),
    }
    if window:
        per_analyte |= {stat: np.array([index[f"{a}_{stat}"] for a in ANALYTE_CODES]) for stat in WINDOW_STATS}
    return index, per_analyte


_FLAG_TRUTHS = np.array([truth for _, _, truth in _FLAGS], dtype=object)
_LEVELS = {field: np.array(levels, dtype=object) for field, levels in ONE_HOT}


def _patient_block(patients: Mapping[str, np.ndarray]) -> np.ndarray:
    """Patient, disease-burden and product fields of every patient (rows) in ``_patient_names`` order: numbers
    as given, flags 1/0 (NaN when missing), one-hot over the contract's fixed vocabularies (0 when missing)."""
    flags = np.column_stack([patients[field] for _, field, _ in _FLAGS])
    parts = [
        np.column_stack([patients[name] for name in _NUMERIC_PATIENT_FIELDS]),
        np.where(np.equal(flags, None), np.nan, np.equal(flags, _FLAG_TRUTHS)),  # type: ignore[call-overload]  # numpy stubs: object arrays compare with None
    ]
    parts += [np.equal(patients[field][:, np.newaxis], levels) for field, levels in _LEVELS.items()]
    return np.concatenate(parts, axis=1, dtype=np.float64)


def _before(rows: Rows, patients: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, ...]:
    """Each output row's records strictly before its landmark: (row, hours, code, value), sorted by row,
    code and time (stable, so equal times keep their stored order)."""
    positions, owner = rows.gather(patients)
    hours = rows.hours[positions]
    keep = known_at(hours, landmarks[owner])
    owner, hours, code, value = owner[keep], hours[keep], rows.code[positions][keep], rows.value[positions][keep]
    order = np.lexsort((hours, code, owner))
    return owner[order], hours[order], code[order], value[order]


def _since_infusion(
    owner: np.ndarray, hours: np.ndarray, code: np.ndarray, value: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The records from infusion (hour 0) on, order kept: what the window statistics, fever and trend ends read."""
    after = hours >= 0
    return owner[after], hours[after], code[after], value[after]


def _starts(*keys: np.ndarray) -> np.ndarray:
    """Start positions of the runs of equal keys in sorted arrays."""
    change = np.zeros(keys[0].size, dtype=bool)
    if keys[0].size:
        change[0] = True
        for key in keys:
            change[1:] |= key[1:] != key[:-1]
    return np.flatnonzero(change)


def _runs(*keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) positions of the runs of equal keys in sorted arrays."""
    starts = _starts(*keys)
    return starts, np.append(starts[1:], keys[0].size)[: starts.size]


def _run_ends(key: np.ndarray) -> np.ndarray:
    """True at the last element of each run of equal values in a sorted array."""
    ends = np.ones(key.size, dtype=bool)
    ends[:-1] = key[1:] != key[:-1]
    return ends


def _window_stats(
    owner: np.ndarray,
    hours: np.ndarray,
    code: np.ndarray,
    value: np.ndarray,
    out: np.ndarray,
    columns: dict[str, np.ndarray],
) -> None:
    """Last, max, time of (first) max and log-value slope per hour (>= 2 values) of each analyte."""
    if not owner.size:
        return
    starts, ends = _runs(owner, code)
    counts = ends - starts
    rows, codes = owner[starts], code[starts]
    peak = np.maximum.reduceat(value, starts)
    at_peak = np.where(value == np.repeat(peak, counts), np.arange(value.size), value.size)
    out[rows, columns["last"][codes]] = value[ends - 1]
    out[rows, columns["max"][codes]] = peak
    out[rows, columns["hours_to_max"][codes]] = hours[np.minimum.reduceat(at_peak, starts)]
    log_value = np.log(np.maximum(value, 1e-6))
    dx = hours - np.repeat(np.add.reduceat(hours, starts) / counts, counts)
    dy = log_value - np.repeat(np.add.reduceat(log_value, starts) / counts, counts)
    sxx, sxy = np.add.reduceat(dx * dx, starts), np.add.reduceat(dx * dy, starts)
    defined = (counts >= 2) & (counts * sxx > 1e-9)
    out[rows[defined], columns["log_slope"][codes[defined]]] = sxy[defined] / sxx[defined]


def _fever(
    owner: np.ndarray,
    hours: np.ndarray,
    code: np.ndarray,
    value: np.ndarray,
    landmarks: np.ndarray,
    out: np.ndarray,
    index: dict[str, int],
) -> None:
    """Hours at >= 38.0 C (each reading holds until the next one or the landmark) and first fever time."""
    temps = code == _TEMPERATURE
    row, t, v = owner[temps], hours[temps], value[temps]
    following = landmarks[row]  # a reading holds until the next one of the same row, or the landmark
    following[:-1] = np.where(_run_ends(row)[:-1], following[:-1], t[1:])
    febrile = v >= FEVER_THRESHOLD_C
    measured = np.bincount(row, minlength=landmarks.size) > 0
    held = np.bincount(row[febrile], weights=(following - t)[febrile], minlength=landmarks.size)
    out[:, index["fever_hours"]] = np.where(measured, held, np.nan)
    first = _starts(row[febrile])
    out[row[febrile][first], index["fever_first_hours"]] = t[febrile][first]


def _course(events: Rows, patients: np.ndarray, landmarks: np.ndarray, out: np.ndarray, index: dict[str, int]) -> None:
    """The clinical course known at the landmark: grades so far, doses so far, time since CRS onset."""
    owner, hours, code, value = _before(events, patients, landmarks)  # sorted by row, kind, time
    starts, ends = _runs(owner, code)
    rows, kinds = owner[starts], code[starts]
    highest = np.maximum.reduceat(value, starts) if owner.size else np.empty(0)
    for name, kind, per_group in (
        ("crs_grade_current", "crs_grade", value[ends - 1]),
        ("crs_grade_max", "crs_grade", highest),
        ("icans_grade_max", "icans_grade", highest),
        ("tocilizumab_doses", "tocilizumab", ends - starts),
        ("corticosteroid_given", "corticosteroid", np.ones(starts.size)),
    ):
        chosen = kinds == EVENT_CODES[kind]
        column = out[:, index[name]]
        column[:] = 0.0
        column[rows[chosen]] = per_group[chosen]
    started = (code == EVENT_CODES["crs_grade"]) & (value >= 1)
    first = _starts(owner[started])
    onset = out[:, index["hours_since_crs_onset"]]
    onset[owner[started][first]] = landmarks[owner[started][first]] - hours[started][first]
    out[:, index["landmark_hours"]] = landmarks


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, NaN where the denominator is zero or missing."""
    return np.divide(numerator, denominator, out=np.full(numerator.shape, np.nan), where=denominator > 0)


def feature_matrix(arrays: CohortArrays, patients: np.ndarray, landmarks: np.ndarray, window: bool) -> np.ndarray:
    """Float64 matrix, one row per (patient code, landmark hours) pair, columns as ``feature_names(window)``.

    ``window`` adds the post-infusion features (the landmark's window, fever, derived indices, course).
    """
    patients = np.asarray(patients, dtype=np.int64)
    landmarks = np.asarray(landmarks, dtype=np.float64)
    index, columns = _layout(window)
    out = np.full((patients.size, len(index)), np.nan)
    out[:, columns["patient"]] = _patient_block(arrays.patients)[patients]
    owner, hours, code, value = _before(arrays.measurements, patients, landmarks)
    baseline = hours >= -BASELINE_WINDOW_HOURS
    baseline &= hours < 0
    b_owner, b_code = owner[baseline], code[baseline]
    if b_owner.size:
        last = _runs(b_owner, b_code)[1] - 1
        out[b_owner[last], columns["baseline"][b_code[last]]] = value[baseline][last]

    def f(name: str) -> np.ndarray:
        return out[:, index[name]]  # a view: writing into it writes into ``out``

    f("easix_baseline")[:] = _ratio(f("baseline_ldh") * f("baseline_creatinine"), f("baseline_platelets"))
    f("m_easix_baseline")[:] = _ratio(
        f("baseline_ldh") * f("baseline_crp") * CRP_MG_DL_PER_MG_L, f("baseline_platelets")
    )
    if not window:
        return out
    since = _since_infusion(owner, hours, code, value)
    _window_stats(*since, out, columns)
    out[:, columns["missing"]] = np.isnan(out[:, columns["max"]])
    _fever(*since, landmarks, out, index)
    _course(arrays.events, patients, landmarks, out, index)
    f("m_easix_last")[:] = _ratio(f("ldh_last") * f("crp_last") * CRP_MG_DL_PER_MG_L, f("platelets_last"))
    f("ferritin_fold_change")[:] = _ratio(f("ferritin_last"), f("baseline_ferritin"))
    f("crp_fold_change")[:] = _ratio(f("crp_last"), f("baseline_crp"))
    f("il6_sgp130_ratio")[:] = _ratio(f("il6_last"), f("sgp130_last"))
    return out


class TrendEnds(NamedTuple):
    """An analyte's first and latest value since infusion known at a landmark, with their hours, and its peak:
    the span its ``log_slope`` is fitted over, so a trend can be said as what the values did."""

    first_hours: float
    first: float
    last_hours: float
    last: float
    peak: float  # the highest value in between (or at an end), so a rise and fall is not told as a fall


_ANALYTE_NAMES = tuple(ANALYTE_CODES)  # analyte name by code


def trend_ends(arrays: CohortArrays, patients: np.ndarray, landmarks: np.ndarray) -> list[dict[str, TrendEnds]]:
    """Per (patient code, landmark hours) pair, the ``TrendEnds`` of each analyte with two values or more in the
    kernel's own window (``_before`` and ``_since_infusion``: from infusion on, strictly before the landmark)."""
    landmarks = np.asarray(landmarks, dtype=np.float64)
    owner, hours, code, value = _since_infusion(
        *_before(arrays.measurements, np.asarray(patients, dtype=np.int64), landmarks)
    )
    starts, ends = _runs(owner, code)
    several = ends - starts >= 2
    first, last = starts[several], ends[several] - 1
    peak = np.maximum.reduceat(value, starts)[several] if starts.size else value[:0]
    out: list[dict[str, TrendEnds]] = [{} for _ in range(landmarks.size)]
    for row, analyte, *points in zip(
        owner[first].tolist(),
        code[first].tolist(),
        hours[first].tolist(),
        value[first].tolist(),
        hours[last].tolist(),
        value[last].tolist(),
        peak.tolist(),
    ):
        out[row][_ANALYTE_NAMES[analyte]] = TrendEnds(*points)
    return out


def build_features(
    cohort: Cohort, landmarks: pd.Series, window: bool | None = None, arrays: CohortArrays | None = None
) -> pd.DataFrame:
    """The feature matrix as a DataFrame: one float64 row per entry of ``landmarks`` (index patient_id, same
    order). ``window`` defaults to on when any landmark is after infusion; pass ``arrays`` to reuse them."""
    landmarks = landmarks.astype(np.float64).rename_axis("patient_id")
    window = bool((landmarks > 0).any()) if window is None else window
    arrays = cohort_arrays(cohort) if arrays is None else arrays
    matrix = feature_matrix(arrays, arrays.codes(landmarks.index), landmarks.to_numpy(), window)
    return pd.DataFrame(matrix, index=landmarks.index, columns=feature_names(window))
