"""The audit record of what was said about one patient, appended to the prediction audit log."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Mapping

from crsrisk.audit import AuditLog, prediction_record
from crsrisk.cohort.arrays import CohortArrays
from crsrisk.cohort.record import canonical_record


def audit_patient(arrays: CohortArrays, model_info: Mapping[str, Any], outputs: list[Mapping[str, Any]],
                  path: str | os.PathLike | None, now_hours: float | None = None) -> None:
    """Append one record of what was said about one patient (patient 0 of ``arrays``) to the audit log: the
    pseudonymous patient key, the as-of hour, the fingerprint of the canonical input, the outputs."""
    log = AuditLog(path)
    inputs = canonical_record(arrays)
    fingerprint = hashlib.sha256(json.dumps(inputs, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    log.append(prediction_record(log, model_info, str(arrays.patient_ids[0]), fingerprint, outputs, inputs,
                                 now_hours))
