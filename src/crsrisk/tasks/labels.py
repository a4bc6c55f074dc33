"""Risk sets, landmark times and labels, computed for all infusions at once from the events table.

Time conventions: what happened strictly before the landmark is known at the landmark (it decides the
risk set and may feed features); what happens at or after it is outcome. The outcome window of a
grade task runs from the landmark to ``horizon_hours`` after infusion; events after an infusion's
follow-up ended are beyond observation and ignored. An infusion whose follow-up ends before the window
closes, without an event, is excluded (and counted), never labelled negative.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from crsrisk.cohort.validated import Cohort
from crsrisk.cohort.arrays import EVENT_CODES, CohortArrays, cohort_arrays
from crsrisk.tasks.definitions import FIRST_TOCILIZUMAB, Task, get_task

LABEL_COLUMNS = ["patient_id", "landmark_hours", "label", "excluded", "reason"]


def _observed_events(cohort: Cohort) -> pd.DataFrame:
    """Events within each infusion's follow-up, with ``followup_hours`` attached."""
    follow = cohort.patients[["patient_id", "followup_hours"]]
    events = cohort.events.merge(follow, on="patient_id", how="inner")
    return events[events["hours_since_infusion"] <= events["followup_hours"]]


def at_risk(arrays: CohortArrays, task: Task | str, landmark: Any) -> tuple[np.ndarray, np.ndarray]:
    """Patient codes in the task's risk set at the landmark and each one's landmark time (hours).

    Judged only from events within follow-up and strictly before the landmark: for a grade task, no
    ``grade_event`` >= ``grade_threshold`` yet; for toci_refractory, the landmark is the first tocilizumab dose.
    """
    task = get_task(task)
    events = arrays.events
    observed = events.hours <= arrays.followup[events.patient]
    n = arrays.patient_ids.size
    if task.kind == "toci_refractory":
        if landmark not in (None, FIRST_TOCILIZUMAB):
            raise ValueError(f"task {task.name}: landmark must be {FIRST_TOCILIZUMAB!r}, got {landmark!r}")
        dose = observed & (events.code == EVENT_CODES["tocilizumab"])
        first = np.full(n, np.inf)
        np.minimum.at(first, events.patient[dose], events.hours[dose])
        codes = np.flatnonzero(np.isfinite(first))
        return codes, first[codes]
    hours = float(landmark)
    if hours >= task.horizon_hours:
        raise ValueError(f"task {task.name}: landmark {hours:g} h is not before the horizon {task.horizon_hours:g} h")
    reached = observed & (events.code == EVENT_CODES[task.grade_event]) & (events.value >= task.grade_threshold)
    reached &= events.hours < hours
    excluded = np.zeros(n, dtype=bool)
    excluded[events.patient[reached]] = True
    codes = np.flatnonzero(~excluded)
    return codes, np.full(codes.size, hours)


def landmark_times(cohort: Cohort, task: Task | str, landmark: Any, arrays: CohortArrays | None = None) -> pd.Series:
    """Landmark time of every infusion in the task's risk set (index patient_id, in patients order)."""
    arrays = cohort_arrays(cohort) if arrays is None else arrays
    codes, hours = at_risk(arrays, task, landmark)
    return pd.Series(hours, index=pd.Index(arrays.patient_ids[codes], name="patient_id"), name="landmark_hours",
                     dtype="float64")


def _grade_labels(cohort: Cohort, task: Task, starts: pd.Series, threshold: int) -> pd.DataFrame:
    events = _observed_events(cohort)
    hits = events[(events["event"] == task.grade_event) & (events["value"] >= threshold)]
    hits = hits.merge(starts.rename("start").reset_index(), on="patient_id")
    hits = hits[(hits["hours_since_infusion"] >= hits["start"]) & (hits["hours_since_infusion"] < task.horizon_hours)]
    table = starts.reset_index()
    table["event"] = table["patient_id"].isin(hits["patient_id"])
    table["window_end"] = task.horizon_hours
    return table


def _icans_grade_at(events: pd.DataFrame, times: pd.DataFrame) -> np.ndarray:
    """ICANS grade in force at each (patient_id, hours_since_infusion) of ``times`` (0 before any record)."""
    icans = events[events["event"] == "icans_grade"][["patient_id", "hours_since_infusion", "value"]]
    if icans.empty or times.empty:
        return np.zeros(len(times))
    left = times[["patient_id", "hours_since_infusion"]].reset_index(drop=True).reset_index()
    merged = pd.merge_asof(left.sort_values("hours_since_infusion"), icans.sort_values("hours_since_infusion"),
                           on="hours_since_infusion", by="patient_id", direction="backward")
    return merged.sort_values("index")["value"].fillna(0.0).to_numpy()


def _refractory_labels(cohort: Cohort, task: Task, starts: pd.Series) -> pd.DataFrame:
    events = _observed_events(cohort).merge(starts.rename("start").reset_index(), on="patient_id")
    t, start = events["hours_since_infusion"], events["start"]
    in_window = (t >= start) & (t <= start + task.window_hours)
    window = events[in_window]
    agents = window[window["event"].isin(["siltuximab", "anakinra"])]["patient_id"]
    toci_counts = window[window["event"] == "tocilizumab"].groupby("patient_id").size()
    extra_toci = toci_counts[toci_counts > task.max_tocilizumab_doses].index
    steroids = window[window["event"] == "corticosteroid"]
    if task.steroids_only_without_icans:
        steroids = steroids[_icans_grade_at(events, steroids) == 0]
    crs = events[events["event"] == "crs_grade"]
    at_start = crs[crs["hours_since_infusion"] <= crs["start"]].groupby("patient_id")["value"].last()
    later = crs[(crs["hours_since_infusion"] > crs["start"]) & (crs["hours_since_infusion"] <= crs["start"] + task.window_hours)]
    later = later.merge(at_start.rename("reference").reset_index(), on="patient_id", how="left")
    rose = later[later["value"] > later["reference"].astype("float64").fillna(0.0)]["patient_id"]
    positive = set(agents) | set(extra_toci) | set(steroids["patient_id"]) | set(rose)
    table = starts.reset_index()
    table["event"] = table["patient_id"].isin(positive)
    table["window_end"] = table["landmark_hours"] + task.window_hours
    return table


def label_table(cohort: Cohort, task: Task | str, landmark: Any, label: str = "primary") -> pd.DataFrame:
    """Label of every infusion in the risk set: 1/0, or NA and ``excluded`` when follow-up ended too early."""
    task = get_task(task)
    starts = landmark_times(cohort, task, landmark)
    if task.kind == "toci_refractory":
        if label != "primary":
            raise ValueError(f"task {task.name}: only the primary label exists, got {label!r}")
        table = _refractory_labels(cohort, task, starts)
    else:
        if label != "primary" and label not in task.second_labels:
            raise ValueError(f"task {task.name}: unknown label {label!r}; expected 'primary' or one of "
                             f"{list(task.second_labels)}")
        threshold = task.grade_threshold if label == "primary" else task.second_labels[label]
        table = _grade_labels(cohort, task, starts, threshold)
    follow = table["patient_id"].map(cohort.patients.set_index("patient_id")["followup_hours"]).astype("float64")
    excluded = ~table["event"] & (follow < table["window_end"])
    reason = pd.Series("", index=table.index, dtype=str)
    reason[excluded] = [f"follow-up ended at {f:g} h before the outcome window closed at {w:g} h, without an event"
                        for f, w in zip(follow[excluded], table["window_end"][excluded])]
    label_values = pd.array(np.where(excluded, pd.NA, table["event"].astype(int)), dtype="Int8")
    return pd.DataFrame({"patient_id": table["patient_id"].astype(str), "landmark_hours": table["landmark_hours"],
                         "label": label_values, "excluded": excluded.to_numpy(dtype=bool),
                         "reason": reason})[LABEL_COLUMNS]


def task_summary(table: pd.DataFrame) -> dict[str, int]:
    """Counts to print beside a label table: risk set, labelled, events, excluded."""
    labelled = table[~table["excluded"]]
    return {"risk_set": int(len(table)), "labelled": int(len(labelled)),
            "events": int(labelled["label"].astype(int).sum()), "excluded": int(table["excluded"].sum())}
