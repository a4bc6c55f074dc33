"""The synthetic cohort: published rates, determinism, the contract round trip, and realism checks."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from crsrisk.cohort.validated import Cohort
from crsrisk.cohort.io import load_cohort
from crsrisk.simulate import simulate_cohort, write_simulated
from crsrisk.tasks import label_table


@pytest.fixture(scope="module")
def cohort_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sim") / "cohort"
    write_simulated(simulate_cohort(n=2000, seed=11), out)
    return out


@pytest.fixture(scope="module")
def cohort(cohort_dir: Path) -> Cohort:
    return load_cohort(cohort_dir)


def max_grade(cohort: Cohort, event: str) -> pd.Series:
    events = cohort.events[cohort.events["event"] == event]
    return events.groupby("patient_id")["value"].max().reindex(cohort.patients["patient_id"]).fillna(0)


def test_rates_are_in_the_published_ranges(cohort: Cohort) -> None:
    crs, icans = max_grade(cohort, "crs_grade"), max_grade(cohort, "icans_grade")
    toci = cohort.events.loc[cohort.events["event"] == "tocilizumab", "patient_id"].nunique() / len(crs)
    assert 0.70 <= (crs >= 1).mean() <= 0.90  # any CRS ~80 % (Galan-Gomez 2025; pooled ELIANA+ENSIGN 79 %)
    assert 0.12 <= (crs >= 3).mean() <= 0.30  # ASTCT grade >= 3 (CIBMTR 16.4 %; ZUMA-3 24 %)
    assert 0.15 <= (icans >= 1).mean() <= 0.40  # ICANS ~22 %
    assert 0.35 <= toci <= 0.65  # tocilizumab in ~40 % (pooled ELIANA + ENSIGN)


def test_cytokine_orders_of_magnitude(cohort: Cohort) -> None:
    severe = (max_grade(cohort, "crs_grade") >= 3).to_numpy()
    after = cohort.measurements[cohort.measurements["hours_since_infusion"] >= 0]
    peak = after.groupby(["patient_id", "analyte"])["value"].max().unstack().reindex(cohort.patients["patient_id"])
    assert 100 <= peak.loc[severe, "il6"].median() <= 20_000 and peak.loc[~severe, "il6"].median() < 50
    assert peak.loc[severe, "mcp1"].median() > 1343.5 > peak.loc[~severe, "mcp1"].median()
    assert 150_000 <= peak["sgp130"].median() <= 600_000  # ~200-300 ng/mL with a modest rise
    assert peak.loc[severe, "ferritin"].median() > 3 * peak.loc[~severe, "ferritin"].median()
    assert peak.loc[severe, "crp"].median() > 50 > peak.loc[~severe, "crp"].median()


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path, cohort_dir: Path) -> None:
    def digest(folder: Path) -> str:
        return hashlib.sha256(b"".join(f.read_bytes() for f in sorted(folder.iterdir()))).hexdigest()

    write_simulated(simulate_cohort(n=2000, seed=11), tmp_path / "again")
    write_simulated(simulate_cohort(n=2000, seed=12), tmp_path / "other")
    assert digest(tmp_path / "again") == digest(cohort_dir)
    assert digest(tmp_path / "other") != digest(cohort_dir)


def test_round_trip_mixed_units_and_labelled_synthetic(cohort_dir: Path, cohort: Cohort) -> None:
    raw = pd.read_csv(cohort_dir / "measurements.csv")
    assert {"mg/dL", "degF", "ng/mL", "umol/L", "g/L"} <= set(raw["unit"])
    assert cohort.synthetic and cohort.metadata["seed"] == 11
    assert len(cohort.metadata["units_converted"]) == 5
    assert cohort.patients["costim_domain"].notna().all()  # blanks derived from the product
    assert pd.read_csv(cohort_dir / "patients.csv")["costim_domain"].isna().any()


def test_hay_rule_discriminates_as_reported(cohort: Cohort) -> None:
    # Hay 2017: fever >= 38.9 C and MCP-1 >= 1343.5 pg/mL within 36 h flags severe CRS with high specificity.
    crs = max_grade(cohort, "crs_grade")
    early = cohort.measurements[cohort.measurements["hours_since_infusion"].between(0, 36, inclusive="left")]
    peak = early.groupby(["patient_id", "analyte"])["value"].max().unstack().reindex(crs.index)
    rule = ((peak["temperature"] >= 38.9) & (peak["mcp1"] >= 1343.5)).astype(int)
    severe = (crs >= 3).astype(int)
    assert 1 - rule[severe == 0].mean() >= 0.95  # specificity
    assert roc_auc_score(severe, rule) >= 0.6
    assert rule[crs >= 4].mean() > rule[crs == 3].mean()  # it picks grade 4 best, as in the paper


def test_truth_is_calibrated_and_is_a_ceiling(cohort_dir: Path, cohort: Cohort) -> None:
    truth = pd.read_csv(cohort_dir / "truth.csv").set_index("patient_id").reindex(cohort.patients["patient_id"])
    severe = (max_grade(cohort, "crs_grade") >= 3).astype(int)
    assert abs(truth["p_severe_crs"].mean() - severe.mean()) < 0.03
    labels = label_table(cohort, "toci_refractory", "first_tocilizumab")
    labels = labels[~labels["excluded"]]
    p = truth.loc[labels["patient_id"], "p_toci_refractory"]
    assert abs(p.mean() - labels["label"].astype(float).mean()) < 0.05
    assert roc_auc_score(severe, truth["p_severe_crs"]) > 0.85


def test_n_must_be_positive() -> None:
    with pytest.raises(ValueError, match="n: expected at least 1"):
        simulate_cohort(n=0, seed=1)
    assert np.isfinite(simulate_cohort(n=1, seed=1).measurements["value"]).all()
