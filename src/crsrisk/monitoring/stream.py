"""Reading the audit log for monitoring: every audited prediction, in log order, without holding the log.

A line is parsed by the audit chain's own parser (``crsrisk.audit.chain.parse_line``); with ``verify`` the chain is
checked on the same pass by ``crsrisk.audit.verify_log`` (HMAC, order, witness), whose problems are reported beside
the figures. A ``prediction`` record gives one prediction per scored output; a ``batch_prediction`` record (``predict
COHORT``) one per scored row. A streamed batch (``batch_prediction_stream``) keeps its scores in a separate file, so
it is counted, not joined. What a record may hold is ``crsrisk.audit.records``'s business; this module only reads.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

from crsrisk.audit.chain import DuplicateKeyError, parse_line
from crsrisk.audit.verify import VerifyResult, verify_log
from crsrisk.errors import AuditLogError, InputError


@dataclass(frozen=True)
class Prediction:
    """One audited probability: who (pseudonym), when (record time, as-of hour), which model, task and landmark."""

    seq: int
    utc_time: str
    model_sha256: str
    task: str
    landmark_hours: float
    probability: float
    band: str | None
    patient_hash: str
    now_hours: float | None


@dataclass
class LogReading:
    """What reading the log found besides predictions: records by kind, outputs it could not read, the chain."""

    kinds: Counter = field(default_factory=Counter)
    unreadable: int = 0  # lines or outputs that are not what the writer makes (counted, never guessed at)
    verified: VerifyResult | None = None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _prediction(record: Mapping[str, Any], output: Mapping[str, Any], patient_hash: Any) -> Prediction | None:
    """A prediction from one output of a record, or None when a field the join needs is missing or malformed."""
    probability, hours = _number(output.get("probability")), _number(output.get("landmark_hours"))
    task, sha = output.get("task"), record.get("model_sha256")
    if probability is None or hours is None or not 0 <= probability <= 1:
        return None
    if not (isinstance(task, str) and isinstance(sha, str) and isinstance(patient_hash, str)):
        return None
    band = output.get("band")
    return Prediction(
        int(record["seq"]),
        str(record.get("utc_time", "")),
        sha,
        task,
        hours,
        probability,
        band if isinstance(band, str) else None,
        patient_hash,
        _number(record.get("now_hours")),
    )


def predictions_of(record: Mapping[str, Any], reading: LogReading) -> Iterator[Prediction]:
    """Every scored prediction a record holds (none for other kinds); unreadable outputs are counted in
    ``reading``."""
    kind = record.get("kind")
    reading.kinds[str(kind)] += 1
    if kind == "prediction":
        outputs = record.get("outputs")
        for output in outputs if isinstance(outputs, list) else []:
            if isinstance(output, dict) and "probability" in output:
                found = _prediction(record, output, record.get("patient_hash"))
                reading.unreadable += found is None
                if found is not None:
                    yield found
    elif kind == "batch_prediction":
        columns, rows = record.get("columns"), record.get("rows")
        if not (isinstance(columns, list) and isinstance(rows, list) and "patient_hash" in columns):
            reading.unreadable += 1
            return
        for row in rows:
            if not isinstance(row, list) or len(row) != len(columns):
                reading.unreadable += 1
                continue
            cells = dict(zip(columns, row))
            if cells.get("status", "scored") != "scored":
                continue
            found = _prediction(record, cells, cells.get("patient_hash"))
            reading.unreadable += found is None
            if found is not None:
                yield found


def audit_log_file(path: str | os.PathLike) -> Path:
    """The audit log at ``path``, refused (naming the path) when no such file exists."""
    log = Path(path)
    if not log.is_file():
        raise InputError(f"audit log: no file at {log}")
    return log


def read_predictions(path: str | os.PathLike, verify: bool = True) -> tuple[Iterator[Prediction], LogReading]:
    """The log's predictions as a stream, and the reading's bookkeeping (filled in as the stream is consumed).

    ``verify`` first checks the whole chain (``verify_log``: a streaming pass, the chain key must be reachable as for
    ``crsrisk audit-log verify``); the predictions are then read up to the head that was checked, so records
    appended meanwhile are left for the next run rather than reported unchecked."""
    log = audit_log_file(path)
    reading = LogReading()
    last: int | None = None
    if verify:
        reading.verified = verify_log(log)
        last = -1 if reading.verified.head is None else reading.verified.head[0]
    try:
        handle = open(log, "rb")
    except OSError as error:
        raise AuditLogError(f"{log}: cannot read the audit log ({error})") from None

    def records() -> Iterator[Prediction]:
        with handle:
            for raw in handle:
                try:
                    record = parse_line(raw)
                except DuplicateKeyError:
                    record = None
                if record is None:
                    reading.unreadable += 1
                    continue
                if last is not None and record["seq"] > last:
                    return
                yield from predictions_of(record, reading)

    return records(), reading
