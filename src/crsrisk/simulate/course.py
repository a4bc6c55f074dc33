"""The clinical course of each infusion given its latent state and the outcome noise (vectorised).

Written over arrays of any shape so the same code both simulates one cohort (shape ``(n,)``) and
computes the truth file by Monte-Carlo over fresh outcome noise (shape ``(draws, n)``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit

from crsrisk.simulate.params import SimulationParams


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function (overflow-safe)."""
    return expit(x)


@dataclass(frozen=True)
class Latent:
    """What the patient and product fix before any outcome noise: response, CRS occurrence and timing."""

    response: np.ndarray  # latent inflammatory response R (drives every measurement)
    crs: np.ndarray  # bool: CRS occurs at all
    cd28: np.ndarray  # bool: CD28 costimulation
    onset: np.ndarray  # hours: CRS onset (fever) when CRS occurs
    steps: np.ndarray  # (3, n) hours between grade 1->2, 2->3, 3->4
    duration: np.ndarray  # hours from onset to resolution
    icans_delay: np.ndarray  # hours from CRS onset (or 48 h) to ICANS onset
    severity_shift: np.ndarray | float = 0.0  # a centre effect on the outcomes only (simulate.shift)


@dataclass(frozen=True)
class Noise:
    """The outcome noise: nothing measured before the outcomes depends on it."""

    grade: np.ndarray  # N(0, grade_noise) added to the response for the CRS grade
    icans: np.ndarray  # U(0,1) for ICANS occurrence
    icans_grade: np.ndarray  # N(0, 0.5) for the ICANS grade
    toci_grade1: np.ndarray  # U(0,1): grade-1 CRS treated anyway
    toci_delay: np.ndarray  # U(1, 4) hours from the triggering grade to the first dose
    toci_policy: np.ndarray  # U(0,1): treat at grade 2, or wait
    refractory: np.ndarray  # U(0,1)
    escalation: np.ndarray  # (4, ...) U(0,1) for siltuximab, steroid, third dose, anakinra
    escalation_time: np.ndarray  # (4, ...) U(6, 40) hours after the first dose
    second_dose: np.ndarray  # U(0,1)


def draw_noise(rng: np.random.Generator, shape: tuple[int, ...], p: SimulationParams) -> Noise:
    """Fresh outcome noise of the given shape."""
    return Noise(
        rng.normal(0, p.grade_noise, shape),
        rng.random(shape),
        rng.normal(0, 0.5, shape),
        rng.random(shape),
        rng.uniform(1, 4, shape),
        rng.random(shape),
        rng.random(shape),
        rng.random((4, *shape)),
        rng.uniform(6, 40, (4, *shape)),
        rng.random(shape),
    )


ESCALATIONS = ("siltuximab", "corticosteroid", "third_tocilizumab", "anakinra")


@dataclass(frozen=True)
class Course:
    """Outcome of each infusion: CRS grade path, first tocilizumab dose, escalation, ICANS."""

    grade: np.ndarray  # max CRS grade 0-4
    grade_times: np.ndarray  # (4, ...) time each grade 1..4 is reached (nan if never)
    toci: np.ndarray  # first tocilizumab dose time (nan if none)
    refractory: np.ndarray  # bool: escalation drugs after the first dose
    escalated: np.ndarray  # (4, ...) bool per escalation kind
    escalation_time: np.ndarray  # (4, ...)
    second_dose: np.ndarray  # bool
    icans_grade: np.ndarray  # max ICANS grade 0-4
    icans_onset: np.ndarray  # hours (nan if none)


def clinical_course(latent: Latent, noise: Noise, p: SimulationParams) -> Course:
    """Grades, treatment and ICANS from the latent state and the noise, by the policy in ``params``."""
    severity = latent.response + latent.severity_shift + noise.grade
    cuts = np.asarray(p.grade_cuts)
    grade = np.where(latent.crs, 1 + (severity[..., None] > cuts).sum(-1), 0)
    reach = latent.onset + np.concatenate([np.zeros((1, *latent.onset.shape)), np.cumsum(latent.steps, 0)])
    reach = reach.reshape(4, *([1] * (grade.ndim - 1)), -1)  # broadcast over Monte-Carlo draws
    grade_times = np.where(np.arange(1, 5).reshape(4, *([1] * grade.ndim)) <= grade, reach, np.nan)
    treated_low = (grade == 1) & (noise.toci_grade1 < p.toci_grade1_share)
    early = noise.toci_policy < p.toci_at_grade2_share
    at_grade2 = np.where(early, grade_times[1], np.where(grade >= 3, grade_times[2], grade_times[1] + 12.0))
    toci = np.where(
        grade >= 2,
        at_grade2 + noise.toci_delay,
        np.where(treated_low, latent.onset + 12 * noise.toci_delay + 12, np.nan),
    )
    given = ~np.isnan(toci)
    refractory = given & (noise.refractory < sigmoid(p.refractory_intercept + p.refractory_slope * severity))
    shares = np.asarray([p.escalation_shares[k] for k in ESCALATIONS]).reshape(4, *([1] * grade.ndim))
    escalated = refractory & (noise.escalation < shares)
    escalated[1] |= refractory & ~escalated.any(0)  # a refractory course gets at least steroids
    icans_p = sigmoid(p.icans_intercept + p.icans_slope * severity + p.icans_cd28 * latent.cd28)
    has_icans = noise.icans < icans_p
    icans_cuts = np.asarray(p.icans_grade_cuts)
    icans_grade = np.where(has_icans, 1 + ((severity + noise.icans_grade)[..., None] > icans_cuts).sum(-1), 0)
    start = np.where(latent.crs, latent.onset, 48.0)
    icans_onset = np.where(has_icans, start + latent.icans_delay, np.nan)
    return Course(
        grade,
        grade_times,
        toci,
        refractory,
        escalated,
        toci + noise.escalation_time,
        given & ~refractory & (noise.second_dose < p.second_dose_share),
        icans_grade,
        icans_onset,
    )


ICANS_HOURS = 96.0  # assumption: an ICANS episode lasts four days before its grade returns to 0


def outcome_labels(course: Course, window_hours: float = 48.0) -> dict[str, np.ndarray]:
    """The task labels a course implies under the default rules (nan where the task does not apply)."""
    t3 = course.grade_times[2]
    at_toci = np.sum(course.grade_times <= course.toci, axis=0)
    next_grade_time = np.take_along_axis(course.grade_times, np.clip(at_toci, 0, 3)[None], 0)[0]
    rose = (course.grade > at_toci) & (next_grade_time <= course.toci + window_hours)
    steroid_time = course.escalation_time[1]
    during_icans = (course.icans_onset <= steroid_time) & (steroid_time < course.icans_onset + ICANS_HOURS)
    counted = course.escalated.copy()
    counted[1] &= ~during_icans  # steroids during ICANS are taken to be for ICANS (toci-refractory-v1)
    refractory = (counted.any(0) | rose).astype(float)
    return {
        "p_severe_crs": (course.grade >= 3).astype(float),
        "p_severe_crs_after_36h": ((course.grade >= 3) & (t3 >= 36.0)).astype(float),
        "p_icans": (course.icans_grade >= 1).astype(float),
        "p_icans_severe": (course.icans_grade >= 3).astype(float),
        "p_toci_refractory": np.where(np.isnan(course.toci), np.nan, refractory),
    }
