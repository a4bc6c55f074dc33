"""Synthetic cohorts built from published effect sizes (always labelled synthetic)."""

from crsrisk.simulate.generator import SimulatedCohort, simulate_cohort
from crsrisk.simulate.params import Centre, SimulationParams
from crsrisk.simulate.shift import Shift, load_shift
from crsrisk.simulate.writer import write_simulated

__all__ = ["Centre", "Shift", "SimulatedCohort", "SimulationParams", "load_shift", "simulate_cohort", "write_simulated"]
