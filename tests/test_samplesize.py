"""Riley et al.'s sample sizes: the published worked examples, independent computations of each formula, the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.integrate import quad
from scipy.special import expit
from scipy.stats import norm
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from crsrisk.cli import app
from crsrisk.evaluation.samplesize import (
    conservative_r2_cs,
    cstatistic_se,
    development_sample_size,
    expected_shrinkage,
    lp_distribution,
    max_r2_cs,
    n_for_calibration_slope,
    n_for_cstatistic,
    n_for_oe,
    n_for_overall_risk,
    n_for_shrinkage,
    r2_cs_from_cstatistic,
    train_readiness,
    validation_precision,
    validation_sample_size,
)


def ns(result) -> list[int]:
    return [c.n for c in result.criteria]


# --- published worked examples ------------------------------------------------------------------------------


def test_pmsampsize_documented_binary_example_rsquared() -> None:
    # pmsampsize(type="b", csrsquared=0.288, parameters=24, prevalence=0.174), the example of its README and of
    # Riley et al. Stat Med 2019: the Python port's test holds [623, 662, 221] and minimum 662; the R package's
    # test file holds 668 for criterion (ii) (an older release) and EPP 4.52 for criterion (i). We match 623/662/221.
    result = development_sample_size(0.174, 24, r2_cs=0.288)
    assert ns(result) == [623, 662, 221]
    assert result.minimum_n == 662
    assert result.criteria[0].events_per_parameter == 4.52
    # Riley 2019's abstract: "a new diagnostic model for Chagas disease requires an EPP of at least 4.8"; we take
    # this to be that example (pmsampsize says its examples come from the paper; the full text was not re-read)
    assert result.criteria[1].events_per_parameter == 4.8
    assert result.criteria[0].events == 109  # 623 * 0.174 = 108.4, rounded up


def test_pmsampsize_documented_binary_example_cstatistic() -> None:
    # pmsampsize(type="b", cstatistic=0.89, parameters=24, prevalence=0.174): the Python port's test holds
    # [615, 660, 221], minimum 660 (by simulating a million patients with a seed); our integration agrees exactly.
    result = development_sample_size(0.174, 24, cstatistic=0.89)
    assert ns(result) == [615, 660, 221]
    assert result.minimum_n == 660


def test_pmvalsampsize_documented_example() -> None:
    # pmvalsampsize(type="b", prevalence=0.018, cstatistic=0.8, lpnormal=c(-5, 2.5), oeciwidth=1): its tests
    # hold O/E 905, calibration slope 4544 (a seeded simulation of 1e6 LPs; 4501 with simobs=1000) and C 4252.
    result = validation_sample_size(0.018, 0.8, oe_width=1.0, lp=(-5.0, 2.5))
    oe, slope, c = ns(result)
    assert c == 4252
    # O/E: they step SE up by 1e-4 until the CI is wide enough, which lands just below the exact 905.06
    assert n_for_oe(0.018, 1.0) == pytest.approx(905.06, abs=0.01) and oe == 906
    # slope: the exact integral gives 4553.9; their simulated 4544 is within its Monte-Carlo error (0.2 %)
    assert slope == 4554 and abs(slope - 4544) / 4544 < 0.005
    assert result.minimum_n == 4554


# --- each formula against an independent computation ------------------------------------------------------------


def test_max_r2_cs_is_the_null_model_likelihood_bound() -> None:
    y = np.r_[np.ones(174), np.zeros(826)]
    log_l_null = np.sum(y * np.log(0.174) + (1 - y) * np.log(0.826))  # the intercept-only model's log-likelihood
    assert max_r2_cs(0.174) == pytest.approx(1 - math.exp(2 * log_l_null / 1000), rel=1e-12)
    assert conservative_r2_cs(0.174) == pytest.approx(0.15 * 0.603209, abs=1e-6)


@settings(max_examples=60, deadline=None)
@given(st.floats(0.02, 0.6), st.integers(1, 200), st.floats(0.02, 0.5), st.floats(0.8, 0.97))
def test_shrinkage_criterion_gives_back_its_target(prevalence: float, parameters: int, r2: float, s: float) -> None:
    r2 = min(r2, 0.95 * max_r2_cs(prevalence), 0.95 * s)
    n = development_sample_size(prevalence, parameters, r2_cs=r2, shrinkage=s).criteria[0].n
    assert expected_shrinkage(n, parameters, r2) >= s - 1e-9  # n is enough ...
    if n > 1:
        assert expected_shrinkage(n - 1, parameters, r2) < s  # ... and one fewer is not


def test_optimism_criterion_keeps_nagelkerke_optimism_at_delta() -> None:
    # Riley 2019: apparent R2_CS = R2_CS / S, so the optimism in Nagelkerke's R2 is (R2/S - R2) / max R2
    r2, phi = 0.15, 0.22
    result = development_sample_size(phi, 30, r2_cs=r2)
    n = result.criteria[1].n
    s = expected_shrinkage(n, 30, r2)
    assert (r2 / s - r2) / max_r2_cs(phi) <= 0.05 + 1e-9
    assert (r2 / expected_shrinkage(n - 1, 30, r2) - r2) / max_r2_cs(phi) > 0.05


@pytest.mark.parametrize("phi", [0.05, 0.174, 0.22, 0.5])
def test_overall_risk_criterion_is_the_smallest_n_with_margin_005(phi: float) -> None:
    n = math.ceil(n_for_overall_risk(phi))
    assert 1.96 * math.sqrt(phi * (1 - phi) / n) <= 0.05 < 1.96 * math.sqrt(phi * (1 - phi) / (n - 1))


def test_r2_cs_from_cstatistic_equals_a_simulation_of_the_note() -> None:
    # Riley, Van Calster, Collins 2021: events' LP ~ N(sqrt(2) Phi^-1(C), 1), non-events' N(0, 1), fit a logistic
    # model, R2_CS = 1 - exp(-LR / n). Simulated here with 400,000 patients and a fixed seed.
    rng = np.random.default_rng(2021)
    n, phi, c = 400_000, 0.174, 0.8
    y = rng.random(n) < phi
    x = rng.normal(0, 1, n) + y * math.sqrt(2) * norm.ppf(c)
    fit = LogisticRegression(C=np.inf).fit(x[:, None], y)
    p = fit.predict_proba(x[:, None])[:, 1]
    log_l = np.sum(np.where(y, np.log(p), np.log1p(-p)))
    log_l_null = n * (y.mean() * np.log(y.mean()) + (1 - y.mean()) * np.log(1 - y.mean()))
    simulated = 1 - math.exp(-2 * (log_l - log_l_null) / n)
    assert r2_cs_from_cstatistic(c, phi) == pytest.approx(simulated, abs=0.003)
    assert r2_cs_from_cstatistic(0.5 + 1e-9, phi) == pytest.approx(0.0, abs=1e-6)  # no discrimination, no R2


def test_lp_distribution_gives_the_prevalence_and_c() -> None:
    mean, sd = lp_distribution(0.1, 0.75)
    rng = np.random.default_rng(5)
    lp = rng.normal(mean, sd, 400_000)
    y = rng.random(lp.size) < expit(lp)
    assert y.mean() == pytest.approx(0.1, abs=0.002)
    assert roc_auc_score(y, lp) == pytest.approx(0.75, abs=0.004)


def test_calibration_slope_n_matches_adaptive_quadrature() -> None:
    mean, sd = lp_distribution(0.22, 0.75)

    def moment(k: int) -> float:
        return quad(lambda x: norm.pdf(x, mean, sd) * expit(x) * expit(-x) * x**k, mean - 12 * sd, mean + 12 * sd)[0]

    i_aa, i_ab, i_bb = moment(0), moment(1), moment(2)
    expected = i_aa / (i_aa * i_bb - i_ab**2) / (0.2 / 3.92) ** 2
    assert n_for_calibration_slope(0.22, 0.75, 0.2) == pytest.approx(expected, rel=1e-8)


def test_oe_and_cstatistic_criteria_are_the_smallest_n_meeting_the_width() -> None:
    phi = 0.22
    n = math.ceil(n_for_oe(phi, 0.2))

    def width(m: int) -> float:  # the 95% CI exp(ln(O/E) +- 1.96 SE) at O/E = 1
        se = math.sqrt((1 - phi) / (m * phi))
        return math.exp(1.96 * se) - math.exp(-1.96 * se)

    assert width(n) <= 0.2 < width(n - 1)

    def newcombe_width(m: int, c: float = 0.75) -> float:  # Newcombe 2006 with m * phi events and m (1 - phi) others
        events, others = m * phi, m * (1 - phi)
        star = (events + others) / 2
        var = c * (1 - c) * (1 + (star - 1) * (1 - c) / (2 - c) + (star - 1) * c / (1 + c)) / (events * others)
        return 2 * 1.96 * math.sqrt(var)

    n = math.ceil(n_for_cstatistic(0.75, phi, 0.1))
    assert newcombe_width(n) <= 0.1 < newcombe_width(n - 1)
    assert 2 * 1.96 * cstatistic_se(0.75, phi, n) == pytest.approx(newcombe_width(n), rel=1e-12)


def test_validation_precision_inverts_the_sample_size() -> None:
    size = validation_sample_size(0.22, 0.75)
    oe, slope, c = ns(size)
    assert validation_precision(oe, round(oe * 0.22), 0.75).oe_width == pytest.approx(0.2, abs=0.002)
    assert validation_precision(slope, round(slope * 0.22), 0.75).slope_width == pytest.approx(0.2, abs=0.002)
    assert validation_precision(c, round(c * 0.22), 0.75).cstatistic_width == pytest.approx(0.1, abs=0.002)
    small = validation_precision(59, 12, 0.73)
    assert small.oe_width > 1.0 and small.slope_width > 1.0 and "59 infusions with 12 events" in small.statement


def test_train_readiness_says_whether_the_cohort_is_enough() -> None:
    required = development_sample_size(0.2, 30, r2_cs=0.15).minimum_n
    enough = train_readiness(required, round(required * 0.2), 30, r2_cs=0.15)
    short = train_readiness(202, 40, 30, r2_cs=0.15)
    assert enough.meets and "meet Riley" in enough.statement
    assert not short.meets and "fall short" in short.statement and str(short.required.minimum_n) in short.statement
    assert short.expected_shrinkage < 0.9 and f"{short.expected_shrinkage:.2f}" in short.statement
    assert short.risk_margin == pytest.approx(1.96 * math.sqrt(40 / 202 * 162 / 202 / 202), abs=1e-4)
    default = train_readiness(202, 40, 30)  # no R2 known: Riley's conservative default, said so
    assert "conservative default" in default.statement


# --- bad input --------------------------------------------------------------------------------------------------

_NOT_A_FRACTION = st.one_of(
    st.floats(allow_nan=True).filter(lambda x: not 0 < x < 1), st.booleans(), st.text(), st.none()
)


@settings(max_examples=80, deadline=None)
@given(_NOT_A_FRACTION)
def test_bad_prevalence_is_refused_naming_the_field(value: object) -> None:
    with pytest.raises(ValueError, match="prevalence"):
        development_sample_size(value, 10, r2_cs=0.1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="prevalence"):
        validation_sample_size(value, 0.7)  # type: ignore[arg-type]


@settings(max_examples=40, deadline=None)
@given(st.one_of(st.integers(max_value=0), st.floats(), st.booleans(), st.text()))
def test_bad_parameters_are_refused_naming_the_field(value: object) -> None:
    with pytest.raises(ValueError, match="parameters"):
        development_sample_size(0.2, value, r2_cs=0.1)  # type: ignore[arg-type]


def test_r2_beyond_the_shrinkage_target_is_refused() -> None:
    with pytest.raises(ValueError, match="r2_cs"):
        development_sample_size(0.5, 10, r2_cs=0.95)
    with pytest.raises(ValueError, match="r2_cs, cstatistic"):
        development_sample_size(0.5, 10, r2_cs=0.1, cstatistic=0.7)
    with pytest.raises(ValueError, match="events"):
        train_readiness(10, 11, 3)
    with pytest.raises(ValueError, match="events"):
        validation_precision(10, -1, 0.7)


def test_regression_a_vanishing_r2_is_refused_by_the_one_rule_not_a_division_by_zero() -> None:
    """Fuzzing found R2 9.4e-250: ln(1 - R2/S) rounded to 0 and the shrinkage criterion divided by it (exit 3).
    A given R2 now meets the rule a derived one met (above 1e-6, below the shrinkage target), and the criterion
    itself is computed with log1p, exact for a small R2."""
    with pytest.raises(
        ValueError,
        match=r"r2_cs: got 9\.39\S*; a sample size needs one above 1e-06 and below the shrinkage target 0\.9",
    ):
        development_sample_size(0.5, 1, r2_cs=9.39320514776725e-250)
    done = CliRunner().invoke(app, ["samplesize", "--prevalence", "0.5", "--parameters", "1", "--r2-cs", "9.39e-250"])
    assert done.exit_code == 2 and "above 1e-06" in " ".join(done.output.split())
    assert n_for_shrinkage(1, 1e-12, 0.9) == pytest.approx(1 / (0.1 * 1e-12 / 0.9), rel=1e-9)


@pytest.mark.parametrize("events", [0, 40])
def test_one_outcome_class_gets_a_statement_not_an_error(events: int) -> None:
    readiness, precision = train_readiness(40, events, 5), validation_precision(40, events, 0.7)
    assert not readiness.meets and readiness.required is None and "no model" in readiness.statement
    assert precision.oe_width is None and precision.slope_width is None and "neither" in precision.statement


def test_a_c_statistic_at_or_below_one_half_leaves_the_slope_unsized() -> None:
    precision = validation_precision(200, 40, 0.45)  # a model that ranks worse than chance on a local cohort
    assert precision.slope_width is None and "not sized" in precision.statement
    assert precision.cstatistic_width == pytest.approx(2 * 1.96 * cstatistic_se(0.45, 0.2, 200), abs=1e-4)


# --- the command ------------------------------------------------------------------------------------------------


def test_cli_json_minimum_n_is_the_largest_criterion() -> None:
    result = CliRunner().invoke(
        app, ["samplesize", "--prevalence", "0.22", "--parameters", "30", "--r2-cs", "0.15", "--json"]
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert [c["n"] for c in document["criteria"]] == [1646, 835, 264]
    assert document["minimum_n"] == 1646 == development_sample_size(0.22, 30, r2_cs=0.15).minimum_n


def test_cli_prints_each_criterion_and_takes_a_cstatistic() -> None:
    result = CliRunner().invoke(
        app, ["samplesize", "--prevalence", "0.174", "--parameters", "24", "--cstatistic", "0.89"]
    )
    assert result.exit_code == 0, result.output
    for n in ("615", "660", "221"):
        assert n in result.output
    assert "minimum n = 660" in result.output
    validation = CliRunner().invoke(
        app, ["samplesize", "--prevalence", "0.018", "--cstatistic", "0.8", "--validation", "--oe-width", "1", "--json"]
    )
    assert json.loads(validation.output)["criteria"][2]["n"] == 4252


@pytest.mark.parametrize(
    "args",
    [
        ["--prevalence", "1.5", "--parameters", "3", "--r2-cs", "0.1"],
        ["--prevalence", "0.2", "--parameters", "3", "--r2-cs", "0.1", "--cstatistic", "0.7"],
        ["--prevalence", "0.2"],
        ["--prevalence", "0.2", "--validation"],
    ],
)
def test_cli_bad_input_exits_2_with_a_message(args: list[str]) -> None:
    result = CliRunner().invoke(app, ["samplesize", *args])
    assert result.exit_code == 2 and "Traceback" not in result.output


_NUMBER_TEXT = st.one_of(
    st.floats(0, 1).map(str),
    st.floats(0.49, 1.01).map(str),
    st.integers(-2, 10**7).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.text(max_size=8),
)


@settings(max_examples=150, deadline=None)
@given(_NUMBER_TEXT, _NUMBER_TEXT, _NUMBER_TEXT, st.booleans(), _NUMBER_TEXT, _NUMBER_TEXT)
def test_fuzz_cli_samplesize_exits_0_or_2(
    prevalence: str, parameters: str, measure: str, validation: bool, width: str, shrinkage: str
) -> None:
    args = [
        "samplesize",
        "--prevalence",
        prevalence,
        "--parameters",
        parameters,
        "--cstatistic" if validation else "--r2-cs",
        measure,
        "--shrinkage",
        shrinkage,
        "--json",
    ]
    if validation:
        args += ["--validation", "--c-width", width, "--oe-width", width, "--slope-width", width]
    result = CliRunner().invoke(app, args)
    assert result.exit_code in (0, 2), (args, result.output, result.exception)
    if result.exit_code == 0:
        document = json.loads(result.output)
        assert document["minimum_n"] == max(c["n"] for c in document["criteria"]) >= 1


def test_regression_a_tiny_ci_width_is_never_reported_as_zero() -> None:
    """Hypothesis found 78,401 infusions with one non-event: the O/E width (5e-05) was rounded to 4 decimals, 0.0,
    as if O/E were known exactly."""
    precision = validation_precision(78401, 78400, 0.5)
    assert precision.oe_width == pytest.approx(2 * math.sinh(1.96 * math.sqrt(1 / 78401 / 78400)), rel=1e-3)
    assert precision.oe_width > 0


@settings(max_examples=120, deadline=None)
@given(st.integers(1, 10**6), st.floats(0, 1), st.integers(1, 500), st.floats(0.001, 0.999))
def test_readiness_and_precision_never_refuse_a_real_cohort(n: int, share: float, parameters: int, c: float) -> None:
    events = round(n * share)
    readiness, precision = train_readiness(n, events, parameters), validation_precision(n, events, c)
    assert readiness.statement.startswith(f"{n} infusions with {events} events")
    assert precision.statement.startswith(f"{n} infusions with {events} events")
    if 0 < events < n:
        assert 0 < readiness.expected_shrinkage <= 1 and readiness.meets == (n >= readiness.required.minimum_n)
        assert precision.oe_width > 0 and precision.cstatistic_width > 0


def test_regression_expected_shrinkage_of_a_tiny_cohort_with_many_parameters() -> None:
    """Was: n=2 with 50 parameters put the root within 1e-12 of R2 and the root finder's bracket failed."""
    s = expected_shrinkage(2, 50, 0.1125)
    assert 0.1125 <= s < 0.1126
    assert 2 * (s - 1) * math.log(1 - 0.1125 / s) == pytest.approx(50, rel=1e-3)
    assert "2 infusions with 1 events" in train_readiness(2, 1, 50).statement
