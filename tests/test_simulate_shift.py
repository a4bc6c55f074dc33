"""The generator's shift knobs: no shift changes nothing; each knob moves what it should, by real values."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from crsrisk.cli import app
from crsrisk.cohort.io import load_cohort
from crsrisk.simulate import Shift, load_shift, simulate_cohort, write_simulated

CD28 = ("brexucabtagene_autoleucel", "axicabtagene_ciloleucel")


@pytest.fixture(scope="module")
def base() -> object:
    return simulate_cohort(1000, 3)


@pytest.mark.parametrize(
    ("n", "seed", "fingerprint"),
    [
        # recorded on main at 2530c44, before the knobs existed
        (400, 0, "4ef50568287ded01f7d57a79e233ee60d23c012448c1049a2b0db274292b2d1a"),
        (250, 7, "7f5c5b6797c307d304ad2834ac3dffabc4ac7e0109d204c9a5d74b85ec5376ab"),
    ],
)
def test_no_shift_keeps_the_cohort_of_before(n: int, seed: int, fingerprint: str, tmp_path: Path) -> None:
    write_simulated(simulate_cohort(n, seed), tmp_path / "plain")
    write_simulated(simulate_cohort(n, seed, shift=Shift()), tmp_path / "default")
    assert load_cohort(tmp_path / "plain").fingerprint() == fingerprint
    assert load_cohort(tmp_path / "default").fingerprint() == fingerprint
    files = sorted(p.name for p in (tmp_path / "plain").iterdir())
    assert all((tmp_path / "plain" / f).read_bytes() == (tmp_path / "default" / f).read_bytes() for f in files)
    assert "shift" not in json.loads((tmp_path / "plain" / "cohort.json").read_text())


def test_adult_fraction_moves_ages_and_nothing_causal(base) -> None:
    shifted = simulate_cohort(1000, 3, shift=Shift(adult_fraction=0.6))
    before, after = (base.patients["age_years"] >= 18).mean(), (shifted.patients["age_years"] >= 18).mean()
    assert before == pytest.approx(0.212, abs=0.001)
    assert after == pytest.approx(before * 0.4 + 0.6, abs=0.04)  # 0.6 re-drawn as adults, the rest as before
    assert shifted.patients["age_years"].median() > 25 > base.patients["age_years"].median()
    assert shifted.patients["age_years"].max() <= 80 and shifted.patients["age_years"].between(1, 80).all()
    adults = shifted.patients["age_years"] >= 30
    assert shifted.patients.loc[adults, "weight_kg"].median() == pytest.approx(74, abs=6)  # levels off (assumption)
    # age is not a cause of the response in the generator: products, burden and truth stay exactly as they were
    for column in ("product", "marrow_blasts_pct", "center"):
        assert shifted.patients[column].equals(base.patients[column])
    pd.testing.assert_frame_equal(shifted.truth, base.truth)
    assert shifted.metadata["shift"] == {"adult_fraction": 0.6}


def test_product_mix_moves_costimulation_and_risk(base) -> None:
    shifted = simulate_cohort(1000, 3, shift=Shift(product_mix={"brexucabtagene_autoleucel": 3, "tisagenlecleucel": 2}))
    assert base.patients["product"].isin(CD28).mean() == pytest.approx(0.115, abs=0.001)
    assert shifted.patients["product"].isin(CD28).mean() == pytest.approx(0.6, abs=0.04)  # normalised: 3/(3+2)
    assert set(shifted.patients["product"]) == {"brexucabtagene_autoleucel", "tisagenlecleucel"}
    # CD28 raises the latent response (params.response_cd28): more severe CRS and ICANS
    assert shifted.truth["p_severe_crs"].mean() - base.truth["p_severe_crs"].mean() > 0.03
    assert shifted.truth["p_icans"].mean() - base.truth["p_icans"].mean() > 0.05


def test_centre_effect_raises_outcomes_without_touching_pretreatment_inputs() -> None:
    plain = simulate_cohort(600, 3, shift=Shift(centre_shares={"C2": 1}))
    shifted = simulate_cohort(600, 3, shift=Shift(centre_shares={"C2": 1}, centre_effect={"C2": 0.8}))
    assert set(plain.patients["center"]) == {"C2"}
    pd.testing.assert_frame_equal(plain.patients, shifted.patients)
    assert np.array_equal(plain.truth["latent_response"], shifted.truth["latent_response"])
    severe = plain.truth["p_severe_crs"].mean(), shifted.truth["p_severe_crs"].mean()
    assert severe[1] - severe[0] > 0.12  # 0.21 -> 0.40 for this seed

    def observed_severe(sim) -> float:
        grades = sim.events[sim.events["event"] == "crs_grade"].groupby("patient_id")["value"].max()
        return float((grades.reindex(sim.patients["patient_id"]).fillna(0) >= 3).mean())

    assert observed_severe(shifted) - observed_severe(plain) > 0.1
    # what a model sees before treatment is the same: a pure miscalibration
    toci = pd.concat(
        [
            s.events[s.events["event"] == "tocilizumab"].groupby("patient_id")["hours_since_infusion"].min()
            for s in (plain, shifted)
        ],
        axis=1,
    ).min(axis=1)
    keys = ["patient_id", "hours_since_infusion", "analyte"]
    both = plain.measurements.merge(shifted.measurements, on=keys, suffixes=("_a", "_b"))
    assert len(both) == len(plain.measurements) == len(shifted.measurements)
    before = both[both["hours_since_infusion"] < both["patient_id"].map(toci).fillna(np.inf)]
    assert len(before) > 0.5 * len(both) and (before["value_a"] == before["value_b"]).all()


def test_centre_effect_applies_only_at_its_centre(base) -> None:
    shifted = simulate_cohort(1000, 3, shift=Shift(centre_effect={"C3": -1.0}))
    at = (base.patients["center"] == "C3").to_numpy()
    assert np.array_equal(shifted.truth["p_severe_crs"][~at], base.truth["p_severe_crs"][~at])
    assert shifted.truth["p_severe_crs"][at].mean() < base.truth["p_severe_crs"][at].mean() - 0.08


def test_centre_shares_make_a_single_centre_cohort() -> None:
    sim = simulate_cohort(300, 1, shift=Shift(centre_shares={"C3": 1, "C5": 1}))
    counts = sim.patients["center"].value_counts()
    assert set(counts.index) == {"C3", "C5"} and abs(counts["C3"] - 150) < 30


# --- bad knobs --------------------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.one_of(st.floats().filter(lambda x: not 0 <= x <= 1), st.booleans(), st.text()))
def test_bad_adult_fraction_is_refused_naming_it(value: object) -> None:
    with pytest.raises(ValueError, match="adult_fraction"):
        Shift(adult_fraction=value)  # type: ignore[arg-type]


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.text(max_size=12), st.floats(allow_nan=True), max_size=3))
def test_bad_product_mix_is_refused_or_normalised(mix: dict) -> None:
    valid = (
        mix
        and all(
            k
            in (
                "tisagenlecleucel",
                "brexucabtagene_autoleucel",
                "obecabtagene_autoleucel",
                "axicabtagene_ciloleucel",
                "lisocabtagene_maraleucel",
                "other",
            )
            for k in mix
        )
        and all(0 <= v < np.inf for v in mix.values())
        and sum(mix.values()) > 0
    )
    if valid:
        assert sum(Shift(product_mix=mix).product_mix.values()) == pytest.approx(1.0)
    else:
        with pytest.raises(ValueError, match="product_mix"):
            Shift(product_mix=mix)


def test_unknown_centres_and_knobs_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="centre_effect: unknown centre 'C9'"):
        simulate_cohort(10, 0, shift=Shift(centre_effect={"C9": 1.0}))
    with pytest.raises(ValueError, match="centre_shares: unknown name 'X'"):
        simulate_cohort(10, 0, shift=Shift(centre_shares={"X": 1.0}))
    (tmp_path / "bad.yaml").write_text("adult_share: 0.5\n")
    with pytest.raises(ValueError, match="unknown knob.*adult_share"):
        load_shift(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ValueError, match="expected a mapping"):
        load_shift(tmp_path / "list.yaml")


# --- the command ------------------------------------------------------------------------------------------------


def test_simulate_command_reads_a_shift_file_and_options(tmp_path: Path) -> None:
    example = Path(__file__).parents[1] / "examples" / "shifts" / "adult-centre.yaml"
    assert load_shift(example).centre_effect == {"C2": 0.8}
    out = tmp_path / "cohort"
    result = CliRunner().invoke(
        app,
        [
            "simulate",
            "--n",
            "120",
            "--seed",
            "2",
            "--out",
            str(out),
            "--shift",
            str(example),
            "--centre-effect",
            "C2=1.5",
        ],
    )
    assert result.exit_code == 0, result.output
    shift = json.loads((out / "cohort.json").read_text())["shift"]
    assert shift["centre_effect"] == {"C2": 1.5} and shift["adult_fraction"] == 0.6  # option over file
    cohort = load_cohort(out)
    assert set(cohort.patients["center"]) == {"C2"}
    same = simulate_cohort(
        120,
        2,
        shift=Shift(
            adult_fraction=0.6,
            product_mix=load_shift(example).product_mix,
            centre_shares={"C2": 1.0},
            centre_effect={"C2": 1.5},
        ),
    )
    assert np.array_equal(pd.read_csv(out / "truth.csv")["p_severe_crs"], same.truth["p_severe_crs"])


@pytest.mark.parametrize(
    "args",
    [["--centre-effect", "C2"], ["--centre-effect", "C9=1"], ["--adult-fraction", "2"], ["--product-mix", "aspirin=1"]],
)
def test_simulate_command_bad_knob_exits_2(args: list[str], tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["simulate", "--n", "10", "--out", str(tmp_path / "c"), *args])
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_regression_shift_file_that_is_a_fifo_or_not_yaml_is_named_without_blocking(tmp_path: Path) -> None:
    """A FIFO as ``--shift`` must be refused at once (a subprocess, so a hang fails by timeout), and bad YAML named."""
    os.mkfifo(tmp_path / "shift.yaml")
    code = f"from crsrisk.simulate import load_shift; load_shift({str(tmp_path / 'shift.yaml')!r})"
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert done.returncode == 1 and "FIFO" in done.stderr
    (tmp_path / "bad.yaml").write_bytes(b"\xff\x00: [")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_shift(tmp_path / "bad.yaml")
