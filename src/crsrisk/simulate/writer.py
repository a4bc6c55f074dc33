"""Write a simulated cohort as a contract folder plus its truth file and metadata, byte-reproducibly."""

from __future__ import annotations

import json
from pathlib import Path

from crsrisk.cohort.io import METADATA_FILE, TRUTH_FILE, write_tables
from crsrisk.simulate.generator import SimulatedCohort


def write_simulated(sim: SimulatedCohort, out_dir: str | Path, overwrite: bool = False) -> Path:
    """The three contract tables, ``truth.csv`` (not part of the cohort) and ``cohort.json``, atomically."""
    tables = {
        "patients.csv": sim.patients,
        "measurements.csv": sim.measurements,
        "events.csv": sim.events,
        TRUTH_FILE: sim.truth,
    }
    meta = json.dumps(sim.metadata, sort_keys=True, indent=1).encode()
    return write_tables(tables, out_dir, {METADATA_FILE: meta}, overwrite=overwrite, float_format="%.10g")
