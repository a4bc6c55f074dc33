"""The one audit policy of the scoring paths: every request that scores for care writes exactly one record.

``predict``, the risk trajectory, ``explain`` of a patient, batch ``predict_cohort``, streaming batch scoring,
the pyfunc and the service all audit by default and skip only when the caller says so (``audit=False``,
``--no-audit``). A request that gives several answers (a prediction with its trajectory) writes one record
holding all of them. The record layouts themselves belong to ``crsrisk.audit``.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Mapping, Sequence

import pandas as pd

from crsrisk.audit import AuditLog, batch_record, prediction_record
from crsrisk.bundle.store import Bundle
from crsrisk.cohort.arrays import CohortArrays
from crsrisk.cohort.record import canonical_record


def audit_patient(
    arrays: CohortArrays,
    model_info: Mapping[str, Any],
    outputs: Sequence[Mapping[str, Any]],
    path: str | os.PathLike | None,
    now_hours: float | None = None,
) -> dict[str, Any]:
    """Append one record of what was said about one patient (patient 0 of ``arrays``) to the audit log: the
    pseudonymous patient key, the as-of hour, the fingerprint of the canonical input, the outputs; returns the
    record as stored."""
    log = AuditLog(path)
    inputs = canonical_record(arrays)
    fingerprint = hashlib.sha256(json.dumps(inputs, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return log.append(
        prediction_record(log, model_info, str(arrays.patient_ids[0]), fingerprint, outputs, inputs, now_hours)
    )


def audit_table(
    bundle: Bundle, table: pd.DataFrame, input_fingerprint: str, kind: str, path: str | os.PathLike | None
) -> None:
    """Append one record for a cohort's outputs (batch scores, SHAP importance), patient ids salted."""
    log = AuditLog(path)
    plain = table.astype(object).where(table.notna(), None)  # strict JSON: an unscored row's NaN is null
    log.append(batch_record(log, bundle.identity.to_dict(), plain, input_fingerprint, kind))


def audit_stream(
    bundle: Bundle,
    summary: Mapping[str, Any],
    input_fingerprint: str,
    output_sha256: str,
    path: str | os.PathLike | None,
) -> None:
    """Append one record for a streamed batch (a cohort larger than memory): what was scored and the SHA-256 of
    the score file written, so the file can be checked against the log without the log holding every row."""
    log = AuditLog(path)
    log.append(
        {
            "kind": "batch_prediction_stream",
            "model": bundle.identity.to_dict(),
            "input_fingerprint": input_fingerprint,
            "output_sha256": output_sha256,
            **dict(summary),
        }
    )
