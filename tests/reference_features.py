"""An independent, plain-pandas derivation of the landmark features, for tests only.

crsrisk builds features with one numpy kernel (``crsrisk.features.build.feature_matrix``); this is a
second, differently written implementation of the same rules (merge, groupby, unstack) that the tests
compare it with, value by value, on generated cohorts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from crsrisk.cohort.validated import Cohort
from crsrisk.features.spec import feature_names, one_hot_name
from crsrisk.schema.analytes import ANALYTES, FEVER_THRESHOLD_C
from crsrisk.schema.tables import BASELINE_WINDOW_HOURS, DIAGNOSES, PRODUCT_COSTIM, PRODUCTS

CRP_MG_DL_PER_MG_L = 0.1  # m-EASIX uses CRP in mg/dL (Pennisi et al., Blood Adv 2021; confirmed)


def _flag(series: pd.Series, truth: object) -> np.ndarray:
    """1.0 where ``series == truth``, 0.0 where it differs, NaN where missing."""
    values = series.astype("object")
    return np.where(values.isna(), np.nan, (values == truth).astype(float))


def _patient_features(patients: pd.DataFrame) -> pd.DataFrame:
    costim = patients["costim_domain"].fillna(patients["product"].map(dict(PRODUCT_COSTIM)))
    out = pd.DataFrame(index=patients.index)
    out["age_years"] = patients["age_years"].astype(float)
    out["weight_kg"] = patients["weight_kg"].astype(float)
    out["sex_male"] = _flag(patients["sex"], "M")
    out["marrow_blasts_pct"] = patients["marrow_blasts_pct"].astype(float)
    out["extramedullary_disease"] = _flag(patients["extramedullary_disease"], True)
    out["cns3"] = _flag(patients["cns_status"], "CNS3")
    out["prior_hsct"] = _flag(patients["prior_hsct"], True)
    out["dose_1e6_cells_per_kg"] = patients["dose_1e6_cells_per_kg"].astype(float)
    out["costim_cd28"] = _flag(costim, "CD28")
    out["lymphodepletion_flu_cy"] = _flag(patients["lymphodepletion"], "flu_cy")
    for product in PRODUCTS:
        out[one_hot_name("product", product)] = (patients["product"] == product).fillna(False).astype(float)
    for diagnosis in DIAGNOSES:
        out[one_hot_name("diagnosis", diagnosis)] = (patients["diagnosis"] == diagnosis).fillna(False).astype(float)
    return out


def _with_landmarks(table: pd.DataFrame, landmarks: pd.Series) -> pd.DataFrame:
    """Rows of the landmarked infusions strictly before their landmark, sorted by patient and time."""
    joined = table.merge(landmarks.rename("_landmark").rename_axis("patient_id").reset_index(), on="patient_id")
    before = joined[joined["hours_since_infusion"] < joined["_landmark"]]
    return before.sort_values(["patient_id", "hours_since_infusion"], kind="stable")


def _wide(grouped: pd.Series, suffix: str = "", prefix: str = "") -> pd.DataFrame:
    wide = grouped.unstack("analyte")
    wide.columns = [f"{prefix}{a}{suffix}" for a in wide.columns]
    return wide


def _window_stats(window: pd.DataFrame) -> pd.DataFrame:
    """Last, max, time of max, and log-value slope per hour (>= 2 values) for each analyte."""
    keys = ["patient_id", "analyte"]
    groups = window.groupby(keys, sort=False)
    last = groups["value"].last()
    peak = groups["value"].max()
    at_peak = window.loc[groups["value"].idxmax(), keys + ["hours_since_infusion"]].set_index(keys)
    x = window["hours_since_infusion"].to_numpy()
    y = np.log(window["value"].clip(lower=1e-6).to_numpy())
    sums = pd.DataFrame({"n": 1.0, "x": x, "y": y, "xx": x * x, "xy": x * y}, index=window.index)
    sums[keys] = window[keys]
    s = sums.groupby(keys, sort=False)[["n", "x", "y", "xx", "xy"]].sum()
    denominator = s["n"] * s["xx"] - s["x"] ** 2
    slope = (s["n"] * s["xy"] - s["x"] * s["y"]) / denominator.where(denominator > 1e-9)
    return pd.concat(
        [
            _wide(last, "_last"),
            _wide(peak, "_max"),
            _wide(slope.where(s["n"] >= 2), "_log_slope"),
            _wide(at_peak["hours_since_infusion"], "_hours_to_max"),
        ],
        axis=1,
    )


def _fever(window: pd.DataFrame) -> pd.DataFrame:
    """Hours at >= 38.0 C (each reading holds until the next one or the landmark) and first fever time."""
    temps = window[window["analyte"] == "temperature"]
    following = temps.groupby("patient_id", sort=False)["hours_since_infusion"].shift(-1)
    held = following.fillna(temps["_landmark"]) - temps["hours_since_infusion"]
    febrile = temps["value"] >= FEVER_THRESHOLD_C
    hours = held.where(febrile, 0.0).groupby(temps["patient_id"]).sum()
    first = temps["hours_since_infusion"].where(febrile).groupby(temps["patient_id"]).min()
    return pd.DataFrame({"fever_hours": hours, "fever_first_hours": first})


def _course(events: pd.DataFrame, landmarks: pd.Series) -> pd.DataFrame:
    """The clinical course known at the landmark: grades so far, doses so far, time since CRS onset."""
    crs = events[events["event"] == "crs_grade"].groupby("patient_id")
    onset = (
        events[(events["event"] == "crs_grade") & (events["value"] >= 1)]
        .groupby("patient_id")["hours_since_infusion"]
        .min()
    )
    out = pd.DataFrame(index=landmarks.index)
    out["crs_grade_current"] = crs["value"].last().reindex(out.index).fillna(0.0)
    out["crs_grade_max"] = crs["value"].max().reindex(out.index).fillna(0.0)
    icans = events[events["event"] == "icans_grade"].groupby("patient_id")["value"].max()
    out["icans_grade_max"] = icans.reindex(out.index).fillna(0.0)
    doses = events[events["event"] == "tocilizumab"].groupby("patient_id").size()
    out["tocilizumab_doses"] = doses.reindex(out.index).fillna(0).astype(float)
    steroids = events[events["event"] == "corticosteroid"].groupby("patient_id").size()
    out["corticosteroid_given"] = (steroids.reindex(out.index).fillna(0) > 0).astype(float)
    out["hours_since_crs_onset"] = landmarks - onset.reindex(out.index)
    out["landmark_hours"] = landmarks.astype(float)
    return out


def _ratio(numerator: pd.Series, denominator: pd.Series) -> pd.Series:
    """numerator / denominator, NaN where the denominator is zero or missing."""
    return numerator / denominator.where(denominator > 0)


def reference_features(cohort: Cohort, landmarks: pd.Series, window: bool | None = None) -> pd.DataFrame:
    """The feature matrix: one float64 row per entry of ``landmarks`` (index patient_id, same order).

    ``window`` adds the post-infusion features; by default it is on when any landmark is after infusion.
    """
    landmarks = landmarks.astype(float).rename_axis("patient_id")
    window = bool((landmarks > 0).any()) if window is None else window
    names = feature_names(window)
    index = landmarks.index
    before = _with_landmarks(cohort.measurements, landmarks)
    start = before["hours_since_infusion"]
    baseline = before[(start >= -BASELINE_WINDOW_HOURS) & (start < 0)]
    parts = [
        _patient_features(cohort.patients.set_index("patient_id").reindex(index)),
        _wide(baseline.groupby(["patient_id", "analyte"], sort=False)["value"].last(), prefix="baseline_"),
    ]
    if window:
        after = before[start >= 0]
        parts += [_window_stats(after), _fever(after), _course(_with_landmarks(cohort.events, landmarks), landmarks)]
    # Columns no infusion had data for are added as NaN here, once, so the column set never depends on the data.
    f = pd.concat([part.reindex(index) for part in parts], axis=1).reindex(columns=names)
    f["easix_baseline"] = _ratio(f["baseline_ldh"] * f["baseline_creatinine"], f["baseline_platelets"])
    f["m_easix_baseline"] = _ratio(f["baseline_ldh"] * f["baseline_crp"] * CRP_MG_DL_PER_MG_L, f["baseline_platelets"])
    if window:
        for name in ANALYTES:
            f[f"{name}_missing"] = f[f"{name}_max"].isna().astype(float)
        f["fever_hours"] = f["fever_hours"].fillna(0.0).where(f["temperature_missing"] == 0)
        f["m_easix_last"] = _ratio(f["ldh_last"] * f["crp_last"] * CRP_MG_DL_PER_MG_L, f["platelets_last"])
        f["ferritin_fold_change"] = _ratio(f["ferritin_last"], f["baseline_ferritin"])
        f["crp_fold_change"] = _ratio(f["crp_last"], f["baseline_crp"])
        f["il6_sgp130_ratio"] = _ratio(f["il6_last"], f["sgp130_last"])
    return f.astype("float64")
