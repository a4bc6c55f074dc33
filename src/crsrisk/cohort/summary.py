"""Plain-data summaries of a cohort, for the CLI and for reports."""

from __future__ import annotations

from typing import Any

from crsrisk.cohort.validated import Cohort


def cohort_summary(cohort: Cohort) -> dict[str, Any]:
    """Counts a person checks first: infusions, centres, measurements per analyte, events per kind."""
    patients = cohort.patients
    return {
        "infusions": int(len(patients)),
        "centres": {str(k): int(v) for k, v in patients["center"].fillna("(none)").value_counts().sort_index().items()},
        "measurements_per_analyte": {
            str(k): int(v) for k, v in cohort.measurements["analyte"].value_counts().sort_index().items()
        },
        "events_per_kind": {str(k): int(v) for k, v in cohort.events["event"].value_counts().sort_index().items()},
        "units_converted": dict(cohort.metadata.get("units_converted", {})),
        "synthetic": cohort.synthetic,
        "fingerprint": cohort.fingerprint(),
        "notes": list(cohort.metadata.get("notes", [])),
    }


def same_cohort_as_training(training_fingerprint: str | None, cohort: Cohort) -> bool:
    """The one "same cohort as training" check: the bundle's recorded training-cohort fingerprint equals this
    cohort's (no recorded fingerprint: not known to be the same)."""
    return training_fingerprint is not None and training_fingerprint == cohort.fingerprint()


def cohort_section(cohort: Cohort) -> dict[str, Any]:
    """The ``cohort`` entry of a metrics document: fingerprint, size, synthetic flag, centres, source."""
    summary = cohort_summary(cohort)
    return {
        "fingerprint": summary["fingerprint"],
        "size": summary["infusions"],
        "synthetic": summary["synthetic"],
        "centres": summary["centres"],
        "source": cohort.metadata.get("source"),
    }
