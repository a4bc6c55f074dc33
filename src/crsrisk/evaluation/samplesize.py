"""How much data is enough: Riley et al.'s minimum sample sizes for developing and validating a binary-outcome model.

Written from the published formulas (not from pmsampsize/pmvalsampsize, which are GPL-3):
- development: Riley et al., Stat Med 2019;38:1276-1296 ("Part II: binary and time-to-event outcomes"),
  criteria (i)-(iii), and Riley et al., BMJ 2020;368:m441 (the same criteria, worked through);
- R2_CS from a C-statistic: Riley, Van Calster, Collins, Stat Med 2021;40:859-864;
- external validation: Riley et al., Stat Med 2021;40:4230-4251, criteria for O/E, calibration slope and C.
Equation numbers were not re-read from the papers; each docstring names the criterion and the formula itself.
Every figure is deterministic: where the papers simulate a million patients, this module integrates numerically.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import brentq
from scipy.special import expit, logit
from scipy.stats import norm

from crsrisk.errors import InputError

Z = 1.96  # the papers' normal quantile for 95% intervals (not norm.ppf(0.975) = 1.95996...)
_NODES, _WEIGHTS = np.polynomial.hermite_e.hermegauss(160)  # Gauss-Hermite for E[g(Z)], Z ~ N(0, 1)
_WEIGHTS = _WEIGHTS / _WEIGHTS.sum()
_GRID = np.linspace(-9.0, 9.0, 6001)  # z-grid (standard units of the LP) for the C-statistic of a normal LP


def _check_fraction(name: str, value: float, low: float = 0.0, high: float = 1.0) -> float:
    """``value`` as a float strictly inside (low, high), else a ValueError naming the field."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not low < float(value) < high:
        raise InputError(f"{name}: expected a number strictly between {low} and {high}, got {value!r}")
    return float(value)


def _check_count(name: str, value: int, minimum: int = 1) -> int:
    """``value`` as an int of at least ``minimum``, else a ValueError naming the field."""
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise InputError(f"{name}: expected a whole number of at least {minimum}, got {value!r}")
    return int(value)


# ----------------------------------------------------------------------------------------------------------------
# Development (Riley et al., Stat Med 2019; BMJ 2020)


def max_r2_cs(prevalence: float) -> float:
    """Largest Cox-Snell R2 a binary outcome allows: 1 - exp(2 ln L_null / n), with
    ln L_null / n = phi ln(phi) + (1 - phi) ln(1 - phi) (Riley 2019, criterion (ii))."""
    phi = _check_fraction("prevalence", prevalence)
    return 1.0 - math.exp(2.0 * (phi * math.log(phi) + (1.0 - phi) * math.log(1.0 - phi)))


def n_for_shrinkage(parameters: int, r2_cs: float, shrinkage: float) -> float:
    """Criterion (i), expected uniform shrinkage >= S: n = p / ((S - 1) ln(1 - R2_CS / S)) (Riley 2019; BMJ 2020).
    Unrounded; the criteria round up."""
    s = _check_fraction("shrinkage", shrinkage)
    r2 = _check_fraction("r2_cs", r2_cs, 0.0, s)
    return _check_count("parameters", parameters) / ((s - 1.0) * math.log1p(-r2 / s))  # exact for a tiny R2


def shrinkage_for_optimism(r2_cs: float, prevalence: float, delta: float = 0.05) -> float:
    """Criterion (ii): the shrinkage that keeps optimism in Nagelkerke's R2 at most delta,
    S = R2_CS / (R2_CS + delta * max R2_CS) (Riley 2019; BMJ 2020); n then follows criterion (i)."""
    r2 = _check_fraction("r2_cs", r2_cs)
    return r2 / (r2 + _check_fraction("delta", delta) * max_r2_cs(prevalence))


def n_for_overall_risk(prevalence: float, margin: float = 0.05) -> float:
    """Criterion (iii), overall risk within +-margin: n = (1.96 / margin)^2 phi (1 - phi) (Riley 2019; BMJ 2020)."""
    phi = _check_fraction("prevalence", prevalence)
    return (Z / _check_fraction("margin", margin, 0.0, 0.5)) ** 2 * phi * (1.0 - phi)


def r2_cs_from_cstatistic(cstatistic: float, prevalence: float) -> float:
    """Cox-Snell R2 implied by a C-statistic (Riley, Van Calster, Collins, Stat Med 2021;40:859).

    The note assumes the LP is N(0, 1) in non-events and N(sqrt(2) * Phi^-1(C), 1) in events (so C is met exactly),
    simulates a million patients and fits a logistic model. With equal variances that model is exactly logistic,
    logit P(Y=1 | x) = logit(phi) + mu x - mu^2 / 2, so the large-sample LR per patient is twice the mutual
    information of LP and outcome; here it is integrated by Gauss-Hermite quadrature instead of simulated:
    R2_CS = 1 - exp(-LR / n) = 1 - exp(-2 I), reproducible to the last digit.
    """
    c = _check_fraction("cstatistic", cstatistic, 0.5, 1.0)
    phi = _check_fraction("prevalence", prevalence)
    mu = math.sqrt(2.0) * norm.ppf(c)

    def log_odds(x: np.ndarray) -> np.ndarray:  # the true model
        return logit(phi) + mu * x - mu * mu / 2.0

    events = np.sum(_WEIGHTS * np.log(expit(log_odds(mu + _NODES)) / phi))  # E[ln P(1|x)/phi | Y=1]
    non_events = np.sum(_WEIGHTS * np.log(expit(-log_odds(_NODES)) / (1.0 - phi)))  # E[ln P(0|x)/(1-phi) | Y=0]
    information = phi * events + (1.0 - phi) * non_events
    return float(1.0 - math.exp(-2.0 * information))


def conservative_r2_cs(prevalence: float) -> float:
    """R2_CS when nothing is known: 15% of its maximum (Nagelkerke R2 = 0.15), the conservative choice Riley et al.
    suggest for that case (Stat Med 2019; BMJ 2020; as widely cited, the passage not re-read)."""
    return 0.15 * max_r2_cs(prevalence)


@dataclass(frozen=True)
class Criterion:
    """One criterion's minimum sample size: n (rounded up), events, events per candidate parameter."""

    name: str
    description: str
    n: int
    events: int
    events_per_parameter: float | None  # None for validation criteria (no parameters are estimated)
    shrinkage: float | None = None  # the shrinkage the criterion's n gives, where it is defined by one


@dataclass(frozen=True)
class SampleSize:
    """Every criterion, what it assumed, and the minimum n that meets them all (the largest)."""

    purpose: str  # "development" or "validation"
    prevalence: float
    assumptions: dict[str, float | int | str]
    criteria: tuple[Criterion, ...]

    @property
    def minimum_n(self) -> int:
        """The largest n over the criteria: the smallest cohort that meets every one."""
        return max(c.n for c in self.criteria)

    @property
    def minimum_events(self) -> int:
        """Events expected in the minimum cohort."""
        return math.ceil(self.minimum_n * self.prevalence)

    def to_dict(self) -> dict:
        """Plain data for JSON output."""
        return {
            "purpose": self.purpose,
            "prevalence": self.prevalence,
            "assumptions": self.assumptions,
            "criteria": [asdict(c) for c in self.criteria],
            "minimum_n": self.minimum_n,
            "minimum_events": self.minimum_events,
        }


def _criterion(
    name: str, description: str, n: float, prevalence: float, parameters: int | None, shrinkage: float | None = None
) -> Criterion:
    """A criterion from its unrounded n: n and events rounded up, events per parameter from the rounded n."""
    whole = math.ceil(n - 1e-9)  # a value a rounding error above an integer is that integer
    epp = None if parameters is None else round(whole * prevalence / parameters, 2)
    return Criterion(
        name,
        description,
        whole,
        math.ceil(whole * prevalence - 1e-9),
        epp,
        None if shrinkage is None else round(shrinkage, 4),
    )


MIN_R2_CS = 1e-6  # below it the criteria ask for more patients than exist: no model is worth developing


def _check_r2(r2: float, shrinkage: float, said: str) -> None:
    """The one rule for an anticipated Cox-Snell R2, given or derived: above ``MIN_R2_CS`` and below the
    shrinkage target (criterion (i) has no answer otherwise); InputError opening with ``said``."""
    if not MIN_R2_CS < r2 < shrinkage:
        raise InputError(
            f"{said}; a sample size needs one above {MIN_R2_CS:g} and below the shrinkage target {shrinkage}"
        )


def development_sample_size(
    prevalence: float,
    parameters: int,
    r2_cs: float | None = None,
    cstatistic: float | None = None,
    shrinkage: float = 0.9,
    delta: float = 0.05,
    margin: float = 0.05,
) -> SampleSize:
    """Riley's three criteria for developing a binary-outcome model with ``parameters`` candidate parameters.

    Give the anticipated Cox-Snell R2 (``r2_cs``) or a C-statistic to derive it from; with neither, the
    conservative default (Nagelkerke R2 0.15) is used and recorded as such.
    """
    if r2_cs is not None and cstatistic is not None:
        raise InputError("r2_cs, cstatistic: expected one of them, got both")
    if r2_cs is not None:
        r2, source = _check_fraction("r2_cs", r2_cs), "given"
        _check_r2(r2, shrinkage, f"r2_cs: got {r2_cs!r}")
    elif cstatistic is not None:
        r2, source = r2_cs_from_cstatistic(cstatistic, prevalence), f"from C-statistic {cstatistic}"
        _check_r2(
            r2, shrinkage, f"cstatistic: {cstatistic} implies a Cox-Snell R2 of {r2:.3g} at prevalence {prevalence}"
        )
    else:
        r2, source = conservative_r2_cs(prevalence), "conservative default (Nagelkerke R2 0.15)"
    phi = _check_fraction("prevalence", prevalence)
    s_optimism = shrinkage_for_optimism(r2, phi, delta)
    criteria = (
        _criterion(
            "shrinkage",
            f"expected uniform shrinkage >= {shrinkage}",
            n_for_shrinkage(parameters, r2, shrinkage),
            phi,
            parameters,
            shrinkage,
        ),
        _criterion(
            "optimism",
            f"optimism in Nagelkerke R2 <= {delta}",
            n_for_shrinkage(parameters, r2, s_optimism),
            phi,
            parameters,
            s_optimism,
        ),
        _criterion("overall_risk", f"overall risk within +-{margin}", n_for_overall_risk(phi, margin), phi, parameters),
    )
    assumptions: dict[str, float | int | str] = {
        "parameters": parameters,
        "r2_cs": round(r2, 6),
        "r2_cs_source": source,
        "max_r2_cs": round(max_r2_cs(phi), 6),
        "shrinkage": shrinkage,
        "delta": delta,
        "margin": margin,
    }
    if cstatistic is not None:
        assumptions["cstatistic"] = cstatistic
    return SampleSize("development", phi, assumptions, criteria)


def expected_shrinkage(n: int, parameters: int, r2_cs: float) -> float:
    """The shrinkage criterion (i) expects at a given n: the S solving n = p / ((S - 1) ln(1 - R2_CS / S))."""
    n, p, r2 = _check_count("n", n), _check_count("parameters", parameters), _check_fraction("r2_cs", r2_cs)

    def shrinkage(u: float) -> float:  # solved in u = ln(1 - R2/S): S can sit within 1e-300 of R2 (tiny n, many p)
        return r2 / -math.expm1(u)

    def gap(u: float) -> float:  # falls from about n (1 - R2) |u| - p to -p as u rises to ln(1 - R2), where S = 1
        return n * (shrinkage(u) - 1.0) * u - p

    return shrinkage(brentq(gap, -(2.0 * p / (n * (1.0 - r2)) + 50.0), math.log1p(-r2), xtol=1e-14))


@dataclass(frozen=True)
class Readiness:
    """Whether a cohort meets Riley's criteria for its candidate parameters, and what to expect if not."""

    meets: bool
    statement: str
    required: SampleSize | None  # None when the cohort has no events or no non-events
    expected_shrinkage: float | None
    risk_margin: float | None  # 95% margin of error of the overall risk at this n


def train_readiness(
    n: int, events: int, parameters: int, r2_cs: float | None = None, shrinkage: float = 0.9
) -> Readiness:
    """A short statement, before fitting, of whether ``n`` infusions with ``events`` events are enough for
    ``parameters`` candidate parameters (Riley's criteria), and the overfitting to expect if not. Never refuses a
    cohort: one with no events (or only events) gets a statement saying so."""
    n, events = _counts(n, events)
    if events in (0, n):
        return Readiness(
            False,
            f"{n} infusions with {events} events: with {_one_class(n, events)} no model of this "
            f"outcome can be fitted or checked.",
            None,
            None,
            None,
        )
    required = development_sample_size(events / n, parameters, r2_cs=r2_cs, shrinkage=shrinkage)
    r2 = float(required.assumptions["r2_cs"])
    s_now = expected_shrinkage(n, parameters, r2)
    margin = Z * math.sqrt((events / n) * (1 - events / n) / n)
    need = required.minimum_n
    head = (
        f"{n} infusions with {events} events ({events / parameters:.1f} per candidate parameter, "
        f"{parameters} parameters, R2_CS {r2:.3f}, {required.assumptions['r2_cs_source']})"
    )
    if n >= need:
        statement = f"{head} meet Riley et al.'s criteria (minimum {need}); expected shrinkage {s_now:.2f}."
    else:
        worst = max(required.criteria, key=lambda c: c.n)
        statement = (
            f"{head} fall short of Riley et al.'s minimum of {need} ({worst.description}). Expect "
            f"overfitting: an expected shrinkage of {s_now:.2f} (predictions too extreme; a calibration "
            f"slope near {s_now:.2f} in new patients) and the overall risk known to +-{margin:.3f}. "
            f"Fewer parameters, penalisation, or more data would help."
        )
    return Readiness(n >= need, statement, required, round(s_now, 4), round(margin, 4))


# ----------------------------------------------------------------------------------------------------------------
# External validation (Riley et al., Stat Med 2021;40:4230)


def oe_ci_width(se_log_oe: float, oe: float = 1.0) -> float:
    """Width of the 95% CI exp(ln(O/E) +- 1.96 SE) of O/E: O/E * 2 sinh(1.96 SE)."""
    return oe * 2.0 * math.sinh(Z * se_log_oe)


def n_for_oe(prevalence: float, width: float = 0.2, oe: float = 1.0) -> float:
    """O/E criterion: SE(ln(O/E)) = sqrt((1 - phi) / (n phi)) (Riley 2021), with the SE that gives a 95% CI of
    the target width, SE = asinh(width / (2 O/E)) / 1.96; so n = (1 - phi) / (phi SE^2). Unrounded."""
    phi = _check_fraction("prevalence", prevalence)
    if not width > 0 or not oe > 0:
        raise InputError(f"width, oe: expected positive numbers, got width={width!r}, oe={oe!r}")
    se = math.asinh(width / (2.0 * oe)) / Z
    return (1.0 - phi) / (phi * se * se)


def _normal_lp_cstatistic(mean: float, sd: float) -> float:
    """C-statistic of a calibrated model whose LP is N(mean, sd^2): P(LP_event > LP_non-event), integrated on a grid."""
    x = mean + sd * _GRID
    density = np.exp(-0.5 * _GRID**2)
    event, non_event = density * expit(x), density * expit(-x)
    below = np.cumsum(non_event) - 0.5 * non_event  # non-events below each point, ties counted half
    return float(np.sum(event * below) / (event.sum() * non_event.sum()))


def _normal_lp_mean(prevalence: float, sd: float) -> float:
    """The LP mean that makes E[expit(LP)] = prevalence for LP ~ N(mean, sd^2)."""

    def gap(mean: float) -> float:
        return float(np.sum(_WEIGHTS * expit(mean + sd * _NODES))) - prevalence

    return brentq(gap, -200.0, 200.0, xtol=1e-12)


def lp_distribution(prevalence: float, cstatistic: float) -> tuple[float, float]:
    """Mean and SD of a normal LP for a calibrated model with this prevalence and C-statistic (Riley 2021 assume a
    distribution for the LP; pmvalsampsize's ``lpcstat`` finds it by simulation, this by root finding on integrals)."""
    phi = _check_fraction("prevalence", prevalence)
    c = _check_fraction("cstatistic", cstatistic, 0.5, 0.99)
    try:
        sd = brentq(lambda s: _normal_lp_cstatistic(_normal_lp_mean(phi, s), s) - c, 1e-4, 12.0, xtol=1e-10)
        return _normal_lp_mean(phi, sd), sd
    except ValueError:  # brentq: no root in the bracket
        raise InputError(
            f"prevalence, cstatistic: no normal linear predictor with an SD from 0.0001 to 12 gives "
            f"prevalence {phi} and C-statistic {c}"
        ) from None


def _slope_variance_unit(mean: float, sd: float) -> float:
    """n * Var(calibration slope) for a calibrated model, LP ~ N(mean, sd^2): from the Fisher information of
    logit P(Y=1) = a + b LP per patient, I = E[p (1 - p) (1, LP; LP, LP^2)], Var(b) = I_aa / (n (I_aa I_bb - I_ab^2))
    (Riley 2021, calibration slope criterion)."""
    lp = mean + sd * _NODES
    w = _WEIGHTS * expit(lp) * expit(-lp)
    i_aa, i_ab, i_bb = w.sum(), np.sum(w * lp), np.sum(w * lp * lp)
    return float(i_aa / (i_aa * i_bb - i_ab * i_ab))


def n_for_calibration_slope(
    prevalence: float, cstatistic: float, width: float = 0.2, lp: tuple[float, float] | None = None
) -> float:
    """Calibration slope criterion: the n whose 95% CI for the slope has the target width, SE = width / (2 * 1.96),
    n = I_aa / (SE^2 (I_aa I_bb - I_ab^2)) (Riley 2021). The LP is N(lp) when a published (mean, SD) is given,
    else the normal that matches this prevalence and C. Unrounded."""
    if not width > 0:
        raise InputError(f"width: expected a positive number, got {width!r}")
    if lp is not None and not (len(lp) == 2 and lp[1] > 0):
        raise InputError(f"lp: expected (mean, SD) with SD > 0, got {lp!r}")
    se = width / (2.0 * Z)
    return _slope_variance_unit(*(lp or lp_distribution(prevalence, cstatistic))) / (se * se)


def cstatistic_se(cstatistic: float, prevalence: float, n: float) -> float:
    """SE of the C-statistic by Newcombe's formula as Riley 2021 use it:
    Var(C) = C (1 - C) [1 + (n/2 - 1)(1 - C)/(2 - C) + (n/2 - 1) C/(1 + C)] / (n^2 phi (1 - phi))."""
    c = _check_fraction("cstatistic", cstatistic, 0.0, 1.0)
    phi = _check_fraction("prevalence", prevalence)
    half = n / 2.0 - 1.0
    return math.sqrt(c * (1 - c) * (1 + half * (1 - c) / (2 - c) + half * c / (1 + c)) / (n * n * phi * (1 - phi)))


def n_for_cstatistic(cstatistic: float, prevalence: float, width: float = 0.1) -> float:
    """C-statistic criterion: the n at which the 95% CI (C +- 1.96 SE, Newcombe's SE) has the target width; the CI
    narrows as n grows, so 2 when even two infusions give it."""
    width = _check_fraction("width", width, 0.0, 1.0)

    def gap(n: float) -> float:  # decreasing in n
        return 2 * Z * cstatistic_se(cstatistic, prevalence, n) - width

    if gap(2.0) <= 0:
        return 2.0
    if gap(1e15) > 0:
        raise InputError(f"width: a C-statistic CI of width {width} needs more than 1e15 infusions")
    return brentq(gap, 2.0, 1e15, xtol=1e-6, rtol=1e-14)


def validation_sample_size(
    prevalence: float,
    cstatistic: float,
    oe_width: float = 0.2,
    slope_width: float = 0.2,
    cstatistic_width: float = 0.1,
    oe: float = 1.0,
    lp: tuple[float, float] | None = None,
) -> SampleSize:
    """Riley 2021's criteria for externally validating a model: target 95% CI widths of O/E, calibration slope and
    C-statistic (pmvalsampsize's defaults: 0.2, 0.2, 0.1), the model assumed calibrated; ``lp`` as in
    ``n_for_calibration_slope``."""
    phi = _check_fraction("prevalence", prevalence)
    criteria = (
        _criterion("oe", f"95% CI width of O/E <= {oe_width}", n_for_oe(phi, oe_width, oe), phi, None),
        _criterion(
            "calibration_slope",
            f"95% CI width of the calibration slope <= {slope_width}",
            n_for_calibration_slope(phi, cstatistic, slope_width, lp),
            phi,
            None,
        ),
        _criterion(
            "cstatistic",
            f"95% CI width of the C-statistic <= {cstatistic_width}",
            n_for_cstatistic(cstatistic, phi, cstatistic_width),
            phi,
            None,
        ),
    )
    mean, sd = lp or lp_distribution(phi, cstatistic)
    assumptions = {
        "cstatistic": cstatistic,
        "oe": oe,
        "lp_mean": round(mean, 4),
        "lp_sd": round(sd, 4),
        "lp_source": "given" if lp else "normal matching prevalence and C-statistic",
    }
    return SampleSize("validation", phi, assumptions, criteria)


@dataclass(frozen=True)
class Precision:
    """The 95% CI widths a validation cohort of this size can give (the model assumed calibrated)."""

    n: int
    events: int
    oe_width: float | None  # None: not estimable (no events, or no non-events)
    slope_width: float | None  # None also when no normal LP has this prevalence and C (e.g. C <= 0.5)
    cstatistic_width: float | None
    statement: str


def _width(width: float) -> float:
    """A CI width as reported: to 4 decimals, or to 4 significant figures when it is smaller than 4 decimals show
    (78,401 infusions with one non-event: an O/E width of 5e-05, never 0)."""
    return round(width, 4) if width >= 1e-3 else float(f"{width:.4g}")


def validation_precision(n: int, events: int, cstatistic: float, oe: float = 1.0) -> Precision:
    """The CI widths of O/E, calibration slope and C-statistic that ``n`` infusions with ``events`` events give,
    inverting Riley 2021's formulas; ``cstatistic`` is the anticipated C (e.g. the model card's). Never refuses a
    cohort: what cannot be estimated is None, and the statement says why."""
    n, events = _counts(n, events)
    c = _check_fraction("cstatistic", cstatistic)
    if events in (0, n):
        return Precision(
            n,
            events,
            None,
            None,
            None,
            f"{n} infusions with {events} events: with "
            f"{_one_class(n, events)} neither calibration nor discrimination can be estimated.",
        )
    phi = events / n
    oe_w = _width(oe_ci_width(math.sqrt((1 - phi) / (n * phi)), oe))
    c_w = _width(2 * Z * cstatistic_se(c, phi, n))
    try:
        slope_w: float | None = _width(2 * Z * math.sqrt(_slope_variance_unit(*lp_distribution(phi, c)) / n))
        slope = f"the calibration slope to {slope_w:.2f}"
    except ValueError:  # no normal LP with this prevalence and C (C at or below 0.5, or 0.99 and above)
        slope_w, slope = None, f"the calibration slope: not sized (no normal LP gives C {c} at this prevalence)"
    statement = (
        f"{n} infusions with {events} events can estimate O/E to a 95% CI width of about {oe_w:.2f}, "
        f"{slope} and a C-statistic near {c} to {c_w:.3f} "
        f"(the default targets of validation_sample_size: 0.2, 0.2 and 0.1)."
    )
    return Precision(n, events, oe_w, slope_w, c_w, statement)


def _counts(n: int, events: int) -> tuple[int, int]:
    """``n`` >= 1 infusions and 0 <= ``events`` <= n, else a ValueError naming the field."""
    n, events = _check_count("n", n), _check_count("events", events, minimum=0)
    if events > n:
        raise InputError(f"events: expected at most n={n}, got {events}")
    return n, events


def _one_class(n: int, events: int) -> str:
    """How a cohort with one outcome class is described."""
    return "no events" if events == 0 else "no infusion without the event"
