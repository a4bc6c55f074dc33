"""Every number the synthetic cohort generator uses, in one place, each with where it comes from.

Sources are the entries of shared/clinical-facts.md ("confirmed" = read in the publication there,
"to confirm" = widely cited, not re-read). "assumption" marks a number the literature we hold does
not give: chosen so the cohort's rates land inside the published ranges, and documented as such.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Centre:
    """How one treating centre reports: its unit habits, draw schedule density and missed draws."""

    name: str
    share: float
    crp_unit: str = "mg/L"
    temperature_unit: str = "degC"
    sgp130_unit: str = "pg/mL"
    creatinine_unit: str = "mg/dL"
    fibrinogen_unit: str = "mg/dL"
    missed_draw: float = 0.08  # assumption: share of scheduled samples never drawn
    cytokine_panel: float = 0.95  # assumption: share of infusions whose cytokines are measured at all
    extra_early_draws: bool = False  # q12h cytokines on days 0-2 (research protocols)


def _centres() -> tuple[Centre, ...]:
    # assumption: five centres; unit mixes as DESIGN.md says real centres report (CRP mg/dL,
    # temperature degF, sgp130 ng/mL, creatinine umol/L, fibrinogen g/L).
    return (
        Centre("C1", 0.30, extra_early_draws=True),
        Centre("C2", 0.22, crp_unit="mg/dL"),
        Centre("C3", 0.20, crp_unit="mg/dL", temperature_unit="degF", missed_draw=0.12),
        Centre(
            "C4", 0.16, sgp130_unit="ng/mL", creatinine_unit="umol/L", fibrinogen_unit="g/L", extra_early_draws=True
        ),
        Centre("C5", 0.12, missed_draw=0.2, cytokine_panel=0.6),
    )


@dataclass(frozen=True)
class SimulationParams:
    """Parameters of the causal story: patient -> burden/product -> response -> labs, CRS, ICANS, drugs."""

    centres: tuple[Centre, ...] = field(default_factory=_centres)

    # --- patients: children and young adults with B-ALL (Galan-Gomez 2025, 118 children/AYA; confirmed)
    age_range: tuple[float, float] = (1.0, 26.0)  # pediatric/AYA CAR-T cohorts (ELIANA 3-23 y; to confirm)
    male_share: float = 0.56  # assumption
    prior_hsct_share: float = 0.35  # assumption
    extramedullary_share: float = 0.10  # assumption
    cns_shares: tuple[float, float, float] = (0.85, 0.10, 0.05)  # assumption: CNS1/2/3
    low_burden_share: float = 0.40  # assumption: share with < 5 % marrow blasts before infusion

    # --- product and dose
    # assumption: a tisagenlecleucel-dominated pediatric practice with some CD28 and obe-cel use
    product_shares: dict[str, float] = field(
        default_factory=lambda: {
            "tisagenlecleucel": 0.72,
            "brexucabtagene_autoleucel": 0.12,
            "obecabtagene_autoleucel": 0.10,
            "other": 0.06,
        }
    )
    # tisagenlecleucel label 0.2-5.0 x 10^6 CAR+ T cells/kg for <= 50 kg (clinical-facts.md; to confirm)
    tisa_dose_range: tuple[float, float] = (0.2, 5.0)
    flu_cy_share: float = 0.92  # assumption; Cy/Flu raises CRS risk (Hay 2017; confirmed)

    # --- baseline labs (orders of magnitude: clinical-facts.md table "for simulation"; to confirm)
    ldh_median: float = 250.0  # U/L, 200-300, higher with high blasts
    ldh_per_blast_pct: float = 0.012  # assumption: log-LDH slope per % blasts
    platelets_median: float = 90.0  # 10^9/L, often < 100 in heavily treated ALL
    crp_baseline_median: float = 4.0  # mg/L, < 10
    ferritin_baseline_median: float = 900.0  # ng/mL, hundreds to a few thousand (transfused)

    # --- latent inflammatory response R (log scale). Directions from Hay 2017 (burden, Cy/Flu, dose,
    # low platelets; confirmed), costimulation (CD28 more and earlier toxicity; obe-cel much less
    # severe CRS: to confirm); magnitudes are assumptions tuned to the published rates below.
    response_intercept: float = -0.35
    response_blasts: float = 0.75  # per SD of log(1 + blasts)
    response_dose: float = 0.30  # per SD of log dose
    response_cd28: float = 0.45
    response_obecel: float = -1.3
    response_flu_cy: float = 0.35
    response_platelets: float = 0.25  # per SD of -log(platelets)
    response_noise: float = 0.75  # unexplained patient-to-patient variation

    # --- CRS. Any CRS ~80 % (Galan-Gomez 82 %, ELIANA 77 %, pooled 79 %; confirmed/to confirm);
    # ASTCT grade >= 3 12-30 % (CIBMTR 16.4 %; ZUMA-3 24 %; confirmed/to confirm).
    crs_intercept: float = 1.9
    crs_slope: float = 1.6
    grade_noise: float = 0.55  # outcome noise: the part of severity no early measurement can see
    grade_cuts: tuple[float, float, float] = (-0.15, 0.95, 1.75)  # severity cut-offs for grades 2, 3, 4
    # onset: 4-1BB median ~3 days, CD28 ~1-2 days (clinical-facts.md "Timing"; to confirm)
    onset_median_hours: dict[str, float] = field(default_factory=lambda: {"4-1BB": 66.0, "CD28": 32.0})
    onset_spread: float = 0.4  # log-scale SD of onset time
    onset_response: float = 0.5  # assumption: stronger responses start earlier (log-hours per unit response)
    hours_to_next_grade: tuple[float, float] = (6.0, 30.0)  # assumption: uniform range between grade steps
    crs_duration_hours: tuple[float, float] = (48.0, 168.0)  # assumption

    # --- tocilizumab policy and refractoriness (tocilizumab in ~40 % of infusions, pooled ELIANA+ENSIGN;
    # 46/65 treated first with tocilizumab, 13 tocilizumab-refractory, Galan-Gomez 2025; confirmed)
    toci_grade1_share: float = 0.12  # assumption: persistent grade-1 fever treated anyway
    toci_at_grade2_share: float = 0.55  # assumption: the rest wait for grade 3 (or 12 h of grade 2)
    refractory_intercept: float = -2.6
    refractory_slope: float = 1.3  # per unit of latent response
    second_dose_share: float = 0.25  # assumption: a repeat dose without refractoriness
    escalation_shares: dict[str, float] = field(
        default_factory=lambda: {"siltuximab": 0.45, "corticosteroid": 0.55, "third_tocilizumab": 0.3, "anakinra": 0.1}
    )

    # --- ICANS ~22 % (Galan-Gomez 22 %, CIBMTR 22.2 %; confirmed); follows CRS, median day 5-7,
    # earlier with CD28 (to confirm); grade >= 3 ~9 % (CIBMTR; confirmed)
    icans_intercept: float = -1.85
    icans_slope: float = 1.25
    icans_cd28: float = 0.6
    icans_grade_cuts: tuple[float, float, float] = (0.6, 1.3, 2.1)
    icans_delay_median_hours: dict[str, float] = field(default_factory=lambda: {"4-1BB": 72.0, "CD28": 36.0})

    # --- cytokine trajectories: baseline (median, canonical unit) and log fold-rise per unit of response.
    # Orders of magnitude from clinical-facts.md "for simulation" (to confirm): IL-6 < 10 -> hundreds to
    # > 10,000; IFN-gamma < 10 -> hundreds-thousands; sgp130 ~250 ng/mL, modest rise; IL-1RA hundreds ->
    # thousands+; MCP-1 hundreds -> above 1,343.5 (Hay threshold); ferritin hundreds-thousands -> tens of
    # thousands (CART-PICU 2023 peak medians 2,035 / 5,467 / 92,204; confirmed); CRP < 10 -> > 100 mg/L.
    cytokine_baseline: dict[str, float] = field(
        default_factory=lambda: {
            "il6": 5.0,
            "ifng": 4.0,
            "sgp130": 250_000.0,
            "il1ra": 350.0,
            "mcp1": 450.0,
            "il10": 6.0,
            "ferritin": 900.0,
            "crp": 4.0,
        }
    )
    cytokine_rise: dict[str, tuple[float, float]] = field(
        default_factory=lambda: {
            # (log-fold at zero response, extra log-fold per unit response) for a CRS that occurs
            "il6": (2.0, 1.9),
            "ifng": (1.8, 1.7),
            "sgp130": (0.15, 0.22),
            "il1ra": (1.5, 1.2),
            "mcp1": (0.7, 0.9),
            "il10": (1.2, 1.2),
            "ferritin": (0.8, 1.0),
            "crp": (2.2, 1.0),
        }
    )
    crp_ceiling: float = 500.0  # mg/L: CRP saturates (hepatic synthesis); values approach, never pass it
    cytokine_peak_lag_hours: float = 12.0  # cytokines peak in the first days of CRS (to confirm)
    acute_phase_lag_hours: float = 36.0  # CRP and ferritin peak later (assumption)
    assay_noise: float = 0.25  # log-scale measurement noise
    fever_peak_c: tuple[float, float] = (38.6, 0.45)  # peak temperature with CRS + per unit response
    toci_il6_rise: float = 1.0  # log-fold: IL-6 rises after IL-6 receptor blockade (assumption)

    # --- follow-up
    short_followup_share: float = 0.06  # assumption: transfer, early death or withdrawal before day 28
    truth_draws: int = 400  # Monte-Carlo draws of the outcome noise for the truth file
