"""A synthetic multi-centre pediatric/AYA B-ALL CAR-T cohort with a causal story (see params.py).

patient and product -> latent inflammatory response -> cytokine, ferritin, CRP and fever trajectories
(sampled at realistic times with missed draws, reported in each centre's units) and, with outcome noise
that no measurement sees, -> CRS and ICANS grades over time -> tocilizumab by policy -> escalation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

import crsrisk
from crsrisk.errors import InputError
from crsrisk.schema.analytes import ANALYTES
from crsrisk.schema.tables import PRODUCT_COSTIM
from crsrisk.simulate.course import (
    ESCALATIONS,
    ICANS_HOURS,
    Course,
    Latent,
    clinical_course,
    draw_noise,
    outcome_labels,
    sigmoid,
)
from crsrisk.simulate.params import SimulationParams
from crsrisk.simulate.shift import SHIFT_SUBSEED, Shift

CYTOKINE_PANEL = ("il6", "ifng", "sgp130", "il1ra", "mcp1", "il10")
DAILY_LABS = ("crp", "ferritin", "ldh", "platelets", "creatinine", "fibrinogen")
CYTOKINE_HOURS = (2.0, 24.0, 48.0, 72.0, 96.0, 120.0, 168.0)
EARLY_EXTRA_HOURS = (12.0, 30.0)  # research protocols at some centres add early draws
TEMPERATURE_HOURS = tuple(float(h) for h in range(0, 169, 6)) + tuple(float(h) for h in range(180, 337, 12))
TOCI_MG_PER_KG = 8.0  # tocilizumab 8 mg/kg (12 mg/kg under 30 kg, label; to confirm)
DOSES = {"siltuximab": 11.0, "anakinra": 100.0, "corticosteroid": 10.0}  # mg/kg, mg, mg dexamethasone


@dataclass(frozen=True)
class SimulatedCohort:
    """Contract tables as the centres reported them, the truth file, and metadata saying synthetic."""

    patients: pd.DataFrame
    measurements: pd.DataFrame
    events: pd.DataFrame
    truth: pd.DataFrame
    metadata: dict[str, Any] = field(default_factory=dict)


def _zscore(x: np.ndarray, centre: float, scale: float) -> np.ndarray:
    return (x - centre) / scale


def _patients(
    n: int, rng: np.random.Generator, p: SimulationParams, shift: Shift, shift_rng: np.random.Generator
) -> pd.DataFrame:
    shares = np.array([c.share for c in p.centres])
    centre = rng.choice(len(p.centres), n, p=shares / shares.sum())
    age = shift.ages(np.round(np.clip(rng.gamma(2.6, 4.5, n) + 1, *p.age_range), 1), shift_rng)
    grown = 55 + 0.8 * (np.minimum(age, 40) - 16)  # adult weight levels off at ~74 kg (assumption)
    weight = np.round(np.where(age < 16, 8 + 3.1 * age, grown) * np.exp(rng.normal(0, 0.15, n)), 1)
    low = rng.random(n) < p.low_burden_share
    blasts = np.round(np.where(low, rng.uniform(0, 5, n), 5 + 95 * rng.beta(1.1, 1.6, n)), 1)
    names = list(p.product_shares)
    product = np.array(names)[rng.choice(len(names), n, p=np.array(list(p.product_shares.values())))]
    costim = np.array([PRODUCT_COSTIM.get(x, "") for x in product], dtype=object)
    other = product == "other"
    costim[other] = np.where(rng.random(other.sum()) < 0.5, "4-1BB", "CD28")
    tisa_low, tisa_high = p.tisa_dose_range
    dose = np.where(
        product == "tisagenlecleucel",
        np.exp(rng.uniform(np.log(tisa_low), np.log(tisa_high), n)),
        np.where(product == "brexucabtagene_autoleucel", 1.0, np.exp(rng.normal(0.3, 0.5, n))),
    )
    lymphodepletion = np.where(rng.random(n) < p.flu_cy_share, "flu_cy", np.where(rng.random(n) < 0.7, "other", "none"))
    followup = np.where(rng.random(n) < p.short_followup_share, np.round(rng.uniform(96, 600, n)), 672.0)
    frame = pd.DataFrame(
        {
            "patient_id": [f"SIM{i:05d}" for i in range(n)],
            "center": [p.centres[c].name for c in centre],
            "age_years": age,
            "sex": np.where(rng.random(n) < p.male_share, "M", "F"),
            "weight_kg": weight,
            "diagnosis": "B-ALL",
            "marrow_blasts_pct": blasts,
            "extramedullary_disease": rng.random(n) < p.extramedullary_share,
            "cns_status": np.array(["CNS1", "CNS2", "CNS3"])[rng.choice(3, n, p=p.cns_shares)],
            "prior_hsct": rng.random(n) < p.prior_hsct_share,
            "product": product,
            "costim_domain": costim,
            "dose_1e6_cells_per_kg": np.round(dose, 2),
            "lymphodepletion": lymphodepletion,
            "followup_hours": followup,
        }
    )
    return frame.assign(_centre=centre)


def _baseline_labs(patients: pd.DataFrame, rng: np.random.Generator, p: SimulationParams) -> dict[str, np.ndarray]:
    n = len(patients)
    blasts = patients["marrow_blasts_pct"].to_numpy()
    age = patients["age_years"].to_numpy()
    return {
        "ldh": p.ldh_median * np.exp(p.ldh_per_blast_pct * (blasts - 20) + rng.normal(0, 0.3, n)),
        "platelets": p.platelets_median * np.exp(-0.006 * (blasts - 20) + rng.normal(0, 0.6, n)),
        "creatinine": (0.25 + 0.025 * age) * np.exp(rng.normal(0, 0.2, n)),
        "fibrinogen": 300 * np.exp(rng.normal(0, 0.25, n)),
    }


def _latent(
    patients: pd.DataFrame, labs: dict[str, np.ndarray], rng: np.random.Generator, p: SimulationParams, shift: Shift
) -> Latent:
    n = len(patients)
    cd28 = (patients["costim_domain"] == "CD28").to_numpy()
    response = (
        p.response_intercept
        + p.response_blasts * _zscore(np.log1p(patients["marrow_blasts_pct"].to_numpy()), 2.5, 1.5)
        + p.response_dose * _zscore(np.log(patients["dose_1e6_cells_per_kg"].to_numpy()), 0.3, 0.7)
        + p.response_cd28 * cd28
        + p.response_obecel * (patients["product"] == "obecabtagene_autoleucel").to_numpy()
        + p.response_flu_cy * (patients["lymphodepletion"] == "flu_cy").to_numpy()
        + p.response_platelets * _zscore(-np.log(labs["platelets"]), -4.5, 0.6)
        + rng.normal(0, p.response_noise, n)
    )
    crs = rng.random(n) < sigmoid(p.crs_intercept + p.crs_slope * response)
    median = np.where(cd28, p.onset_median_hours["CD28"], p.onset_median_hours["4-1BB"])
    onset = median * np.exp(-p.onset_response * response + rng.normal(0, p.onset_spread, n))
    steps = rng.uniform(*p.hours_to_next_grade, (3, n))
    duration = rng.uniform(*p.crs_duration_hours, n)
    delay_median = np.where(cd28, p.icans_delay_median_hours["CD28"], p.icans_delay_median_hours["4-1BB"])
    icans_delay = delay_median * np.exp(rng.normal(0, 0.4, n))
    return Latent(
        response,
        crs,
        cd28,
        np.round(onset, 1),
        np.round(steps, 1),
        duration,
        np.round(icans_delay, 1),
        shift.severity_shift(patients["center"].to_numpy()),
    )


def _bump(t: np.ndarray, peak: np.ndarray, decay: float) -> np.ndarray:
    """Rise to 1 at ``peak`` (Gaussian flank), then exponential decay; 0 before infusion."""
    width = np.maximum(0.5 * peak, 12.0)
    rising = np.exp(-(((t - peak) / width) ** 2))
    return np.where(t < 0, 0.0, np.where(t < peak, rising, np.exp(-(t - peak) / decay)))


def _level(
    name: str, t: np.ndarray, latent: Latent, course: Course, baseline: np.ndarray, p: SimulationParams
) -> np.ndarray:
    """Canonical value of a cytokine/acute-phase analyte at times ``t`` (n, k), before assay noise."""
    base_fold, per_response = p.cytokine_rise[name]
    fold = np.where(latent.crs, np.maximum(base_fold + per_response * latent.response, 0.1), 0.15 * base_fold)
    lag = p.acute_phase_lag_hours if name in ("crp", "ferritin") else p.cytokine_peak_lag_hours
    peak = np.where(latent.crs, latent.onset, 48.0) + lag
    decay = 120.0 if name in ("crp", "ferritin") else 48.0
    log_value = np.log(baseline)[:, None] + (fold * 1.0)[:, None] * _bump(t, peak[:, None], decay)
    if name == "il6":  # IL-6 rises after IL-6 receptor blockade (it is no longer cleared)
        after = np.nan_to_num(t - course.toci[:, None], nan=-1.0)
        log_value += np.where(after > 0, p.toci_il6_rise * np.exp(-after / 96.0), 0.0)
    return np.exp(log_value)


def _temperature(
    t: np.ndarray, latent: Latent, course: Course, rng: np.random.Generator, p: SimulationParams
) -> np.ndarray:
    peak_c, per_response = p.fever_peak_c
    amplitude = np.where(latent.crs, peak_c + per_response * latent.response - 36.9, 0.0)[:, None]
    active = (t >= latent.onset[:, None]) & (t <= (latent.onset + latent.duration)[:, None])
    after = np.nan_to_num(t - course.toci[:, None], nan=-1.0)
    masked = np.where(after > 0, np.exp(-after / 4.0), 1.0)  # tocilizumab masks fever within hours
    swing = 0.75 + 0.25 * np.cos(2 * np.pi * t / 24.0)
    return 36.9 + rng.normal(0, 0.25, t.shape) + np.clip(amplitude, 0, 4.5) * active * masked * swing


def _stream(patients: pd.DataFrame, hours: np.ndarray, jitter: float, rng: np.random.Generator) -> np.ndarray:
    return hours[None, :] + rng.uniform(-jitter, jitter, (len(patients), len(hours)))


def _long(
    patients: pd.DataFrame, analyte: str, times: np.ndarray, values: np.ndarray, keep: np.ndarray
) -> pd.DataFrame:
    rows, cols = np.nonzero(keep)
    return pd.DataFrame(
        {
            "patient_id": patients["patient_id"].to_numpy()[rows],
            "hours_since_infusion": times[rows, cols],
            "analyte": analyte,
            "value": values[rows, cols],
        }
    )


def _measurements(
    patients: pd.DataFrame,
    labs: dict[str, np.ndarray],
    latent: Latent,
    course: Course,
    rng: np.random.Generator,
    p: SimulationParams,
) -> pd.DataFrame:
    n = len(patients)
    centres = [p.centres[c] for c in patients["_centre"]]
    missed = np.array([c.missed_draw for c in centres])[:, None]
    panel = (rng.random(n) < np.array([c.cytokine_panel for c in centres]))[:, None]
    extra = np.array([c.extra_early_draws for c in centres])[:, None]
    follow = patients["followup_hours"].to_numpy()[:, None]
    baseline_t = -rng.uniform(24, 120, (n, 1))
    noise = lambda shape: np.exp(rng.normal(0, p.assay_noise, shape))  # noqa: E731 - local shorthand
    frames = []
    cyto_t = np.concatenate(
        [
            baseline_t,
            _stream(patients, np.array(CYTOKINE_HOURS), 2.0, rng),
            _stream(patients, np.array(EARLY_EXTRA_HOURS), 2.0, rng),
        ],
        axis=1,
    )
    is_extra = np.zeros(cyto_t.shape, bool)
    is_extra[:, -len(EARLY_EXTRA_HOURS) :] = True
    for name in CYTOKINE_PANEL:
        baseline = p.cytokine_baseline[name] * np.exp(rng.normal(0, 0.35, n))
        values = _level(name, cyto_t, latent, course, baseline, p) * noise(cyto_t.shape)
        keep = panel & (rng.random(cyto_t.shape) >= missed) & (~is_extra | extra) & (cyto_t <= follow)
        frames.append(_long(patients, name, cyto_t, values, keep))
    lab_t = np.concatenate([baseline_t, _stream(patients, np.arange(0, 8) * 24.0 + 2.0, 2.0, rng)], axis=1)
    activity = _bump(lab_t, np.where(latent.crs, latent.onset + 24, 60.0)[:, None], 96.0)
    strength = np.clip(latent.response + 1.5, 0, None)[:, None] * latent.crs[:, None]
    drift = {
        "ldh": 0.25 * strength * activity,
        "platelets": -0.3 * strength * activity,
        "creatinine": 0.12 * strength * activity,
        "fibrinogen": -0.15 * strength * activity,
    }
    for name in DAILY_LABS:
        if name in drift:
            values = labs[name][:, None] * np.exp(drift[name] + rng.normal(0, 0.08, lab_t.shape))
        else:
            baseline = p.cytokine_baseline[name] * np.exp(rng.normal(0, 0.6, n))
            values = _level(name, lab_t, latent, course, baseline, p) * noise(lab_t.shape)
            if name == "crp":
                values = values / (1 + values / p.crp_ceiling)
        keep = (rng.random(lab_t.shape) >= missed / 2) & (lab_t <= follow)
        frames.append(_long(patients, name, lab_t, values, keep))
    temp_t = _stream(patients, np.array(TEMPERATURE_HOURS), 1.0, rng)
    keep = (rng.random(temp_t.shape) >= missed / 2) & (temp_t <= follow)
    frames.append(_long(patients, "temperature", temp_t, _temperature(temp_t, latent, course, rng, p), keep))
    long = pd.concat(frames, ignore_index=True)
    long["hours_since_infusion"] = long["hours_since_infusion"].round(1)
    return _report_units(long, patients, p)


def _round_significant(values: np.ndarray, digits: int) -> np.ndarray:
    magnitude = np.floor(np.log10(np.abs(np.where(values == 0, 1, values))))
    factor = 10.0 ** (digits - 1 - magnitude)
    return np.round(values * factor) / factor


def _report_units(long: pd.DataFrame, patients: pd.DataFrame, p: SimulationParams) -> pd.DataFrame:
    """Express each value in the unit its centre reports (the loader converts it back)."""
    centre_of = dict(zip(patients["patient_id"], patients["_centre"]))
    centre = long["patient_id"].map(centre_of).to_numpy()
    habits = {
        "crp": "crp_unit",
        "temperature": "temperature_unit",
        "sgp130": "sgp130_unit",
        "creatinine": "creatinine_unit",
        "fibrinogen": "fibrinogen_unit",
    }
    unit = long["analyte"].map({name: a.unit for name, a in ANALYTES.items()}).to_numpy(dtype=object)
    value = long["value"].to_numpy(dtype=float).copy()
    for name, attribute in habits.items():
        for index, c in enumerate(p.centres):
            reported = getattr(c, attribute)
            rows = (long["analyte"].to_numpy() == name) & (centre == index)
            if reported != ANALYTES[name].unit and rows.any():
                conversion = ANALYTES[name].conversions[reported]
                value[rows] = (value[rows] - conversion.offset) / conversion.scale
                unit[rows] = reported
    temperature = long["analyte"].to_numpy() == "temperature"
    value = np.where(temperature, np.round(value, 1), _round_significant(value, 4))
    return (
        long.assign(value=value, unit=unit)
        .sort_values(["patient_id", "hours_since_infusion", "analyte"], kind="stable")
        .reset_index(drop=True)
    )


def _events(patients: pd.DataFrame, latent: Latent, course: Course) -> pd.DataFrame:
    ids = patients["patient_id"].to_numpy()
    weight = patients["weight_kg"].to_numpy()
    frames = []

    def add(mask: np.ndarray, times: np.ndarray, event: str, value: np.ndarray | float) -> None:
        value = np.broadcast_to(np.asarray(value, dtype=float), mask.shape)
        frames.append(
            pd.DataFrame(
                {"patient_id": ids[mask], "hours_since_infusion": times[mask], "event": event, "value": value[mask]}
            )
        )

    for g in range(4):  # CRS grade g+1 reached; steps down to 1 halfway through, to 0 at resolution
        add(course.grade >= g + 1, course.grade_times[g], "crs_grade", g + 1.0)
    peak_time = np.nanmax(course.grade_times, axis=0, initial=-np.inf)
    end = latent.onset + np.maximum(latent.duration, peak_time - latent.onset + 24)
    add(course.grade >= 2, (peak_time + end) / 2, "crs_grade", 1.0)
    add(course.grade >= 1, end, "crs_grade", 0.0)
    has_icans = course.icans_grade >= 1
    add(has_icans, course.icans_onset, "icans_grade", 1.0)
    add(course.icans_grade >= 2, course.icans_onset + 12, "icans_grade", course.icans_grade.astype(float))
    add(course.icans_grade >= 2, course.icans_onset + 14, "corticosteroid", DOSES["corticosteroid"])
    add(has_icans, course.icans_onset + ICANS_HOURS, "icans_grade", 0.0)
    given = ~np.isnan(course.toci)
    toci_mg_kg = np.where(weight < 30, 12.0, TOCI_MG_PER_KG)
    add(given, course.toci, "tocilizumab", toci_mg_kg)
    third = course.escalated[ESCALATIONS.index("third_tocilizumab")]
    add(course.second_dose, course.toci + 10 + course.escalation_time[0] / 4, "tocilizumab", toci_mg_kg)
    add(third, course.toci + course.escalation_time[2] / 3, "tocilizumab", toci_mg_kg)
    add(third, course.toci + course.escalation_time[2], "tocilizumab", toci_mg_kg)
    for index, kind in enumerate(ESCALATIONS):
        if kind != "third_tocilizumab":
            add(course.escalated[index], course.escalation_time[index], kind, DOSES[kind])
    events = pd.concat(frames, ignore_index=True)
    events["hours_since_infusion"] = events["hours_since_infusion"].round(1)
    follow = events["patient_id"].map(dict(zip(ids, patients["followup_hours"])))
    events = events[events["hours_since_infusion"] <= follow]
    return events.sort_values(["patient_id", "hours_since_infusion", "event"], kind="stable").reset_index(drop=True)


def _truth(patients: pd.DataFrame, latent: Latent, seed: int, p: SimulationParams) -> pd.DataFrame:
    """True label probabilities given the latent state: Monte-Carlo over fresh outcome noise only."""
    rng = np.random.default_rng([seed, 7919])  # a sub-seed: the truth never shifts the cohort's draws
    noise = draw_noise(rng, (p.truth_draws, len(patients)), p)
    labels = outcome_labels(clinical_course(latent, noise, p))
    columns = {}
    for name, values in labels.items():  # p_toci_refractory: among draws where tocilizumab was given
        given = (~np.isnan(values)).sum(axis=0)
        total = np.nansum(values, axis=0)
        columns[name] = np.round(np.divide(total, given, out=np.full(total.shape, np.nan), where=given > 0), 4)
    return pd.DataFrame(
        {"patient_id": patients["patient_id"], **columns, "latent_response": np.round(latent.response, 4)}
    )


def simulate_cohort(
    n: int, seed: int, params: SimulationParams | None = None, shift: Shift | None = None
) -> SimulatedCohort:
    """Simulate ``n`` infusions; the same ``n``, ``seed``, shift and package version give identical tables.

    ``shift`` moves the case mix or the outcomes (see ``Shift``); without one the cohort is the default one.
    """
    if n < 1:
        raise InputError(f"n: expected at least 1 infusion, got {n}")
    shift = shift or Shift()
    p = shift.params(params or SimulationParams())
    rng = np.random.default_rng(seed)
    patients = _patients(n, rng, p, shift, np.random.default_rng([seed, SHIFT_SUBSEED]))
    labs = _baseline_labs(patients, rng, p)
    latent = _latent(patients, labs, rng, p, shift)
    course = clinical_course(latent, draw_noise(rng, (n,), p), p)
    measurements = _measurements(patients, labs, latent, course, rng, p)
    events = _events(patients, latent, course)
    truth = _truth(patients, latent, seed, p)
    metadata = {
        "synthetic": True,
        "generator": "crsrisk.simulate",
        "version": crsrisk.__version__,
        "seed": seed,
        "n": n,
        "note": "SYNTHETIC cohort generated from published effect sizes; not clinical evidence",
    }
    if not shift.is_default:
        metadata["shift"] = shift.to_dict()
    return SimulatedCohort(_blank_costim(patients.drop(columns="_centre"), rng), measurements, events, truth, metadata)


def _blank_costim(patients: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Centres often leave costim_domain blank for licensed products (the loader derives it)."""
    blank = (patients["product"] != "other").to_numpy() & (rng.random(len(patients)) < 0.5)
    out = patients.copy()
    out["costim_domain"] = out["costim_domain"].where(~blank, None)
    return out
