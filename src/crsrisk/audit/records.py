"""The layouts of the audit log's records: one patient's prediction, a whole table of outputs.

A prediction record carries what monitoring needs to join outcomes later: ``model_sha256`` (the bundle's
SHA-256), ``now_hours`` (the as-of hour), ``patient_hash`` (the pseudonymous patient key,
``crsrisk.audit.keys.pseudonym``: an outcome cohort holding the pseudonym key reproduces it) and, per output,
``task``, ``landmark_hours``, ``horizon_hours``, ``probability`` and ``band``. No raw identifier unless the log
was opened with ``store_raw=True``.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from crsrisk.audit.chain import AuditLog


def prediction_record(
    log: AuditLog,
    model_info: Mapping[str, Any],
    patient_id: str,
    input_fingerprint: str,
    outputs: Sequence[Mapping[str, Any]],
    raw_inputs: Mapping[str, Any] | None = None,
    now_hours: float | None = None,
) -> dict[str, Any]:
    """The content of one prediction's record: model hash, as-of hour, pseudonymous patient key, input
    fingerprint, outputs (with SHAP)."""
    record: dict[str, Any] = {
        "kind": "prediction",
        "model": dict(model_info),
        "model_sha256": model_info.get("bundle_sha256"),
        "now_hours": now_hours,
        "patient_hash": log.hash_patient_id(patient_id),
        "input_fingerprint": input_fingerprint,
        "outputs": list(outputs),
    }
    if log.store_raw:
        record["patient_id"] = patient_id
        record["inputs"] = raw_inputs
    return record


def batch_record(
    log: AuditLog, model_info: Mapping[str, Any], table: Any, input_fingerprint: str, kind: str = "batch_prediction"
) -> dict[str, Any]:
    """The content of one record for a whole table of outputs (a pandas DataFrame: a cohort's scores, its SHAP
    importance): columns and rows, with a ``patient_id`` column replaced by the pseudonymous patient key."""
    columns = list(table.columns)
    rows = [
        [value.item() if hasattr(value, "item") else value for value in row]
        for row in table.itertuples(index=False, name=None)
    ]
    record: dict[str, Any] = {
        "kind": kind,
        "model": dict(model_info),
        "model_sha256": model_info.get("bundle_sha256"),
        "input_fingerprint": input_fingerprint,
        "n_rows": len(rows),
    }
    if "patient_id" in columns:
        at = columns.index("patient_id")
        hashes = {pid: log.hash_patient_id(pid) for pid in {str(row[at]) for row in rows}}
        if log.store_raw:
            record["patient_ids"] = [str(row[at]) for row in rows]
        rows = [[*row[:at], hashes[str(row[at])], *row[at + 1 :]] for row in rows]
        columns[at] = "patient_hash"
    record.update(columns=columns, rows=rows)
    return record
