"""The append-only, hash-chained prediction audit log (JSON Lines; standard library only).

Format: one JSON object per line, keys sorted, no whitespace. Each record holds ``seq`` (0-based),
``prev_hash`` (the previous record's ``hash``; 64 zeros for the first) and ``hash`` = SHA-256 of the
record's canonical JSON without ``hash``. Editing, deleting, inserting or reordering any record breaks
the chain at that record, which ``verify_log`` names.

Location: an explicit path, else ``$CRSRISK_AUDIT_LOG``, else
``$XDG_DATA_HOME/crsrisk/audit/predictions.jsonl`` (``~/.local/share/...`` without XDG_DATA_HOME).
Patient ids are stored only as HMAC-SHA256 with a salt from ``$CRSRISK_AUDIT_SALT`` or a per-log salt
file ``<log>.salt`` (created once, mode 0600); raw ids and inputs only with ``store_raw=True``.
Writers in several processes append under an exclusive ``flock``, each record as one ``write``.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Mapping

GENESIS = "0" * 64
ENV_PATH = "CRSRISK_AUDIT_LOG"
ENV_SALT = "CRSRISK_AUDIT_SALT"


def resolve_log_path(explicit: str | os.PathLike | None = None) -> Path:
    """The log file: explicit argument, else $CRSRISK_AUDIT_LOG, else the XDG data folder."""
    if explicit:
        return Path(explicit)
    if os.environ.get(ENV_PATH):
        return Path(os.environ[ENV_PATH])
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "crsrisk" / "audit" / "predictions.jsonl"


def _canonical(record: Mapping[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), allow_nan=False, default=str)


def _digest(record: Mapping[str, Any]) -> str:
    return hashlib.sha256(_canonical({k: v for k, v in record.items() if k != "hash"}).encode()).hexdigest()


class AuditLog:
    """Appends records to one log file; safe across processes."""

    def __init__(self, path: str | os.PathLike | None = None, store_raw: bool = False) -> None:
        self.path = resolve_log_path(path)
        self.store_raw = store_raw

    def _salt(self) -> bytes:
        if os.environ.get(ENV_SALT):
            return os.environ[ENV_SALT].encode()
        salt_file = self.path.with_name(self.path.name + ".salt")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(salt_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return salt_file.read_bytes().strip()
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
        return salt_file.read_bytes().strip()

    def hash_patient_id(self, patient_id: str) -> str:
        """HMAC-SHA256 of the patient id with this log's salt (the raw id is never stored by default)."""
        return hmac.new(self._salt(), str(patient_id).encode(), hashlib.sha256).hexdigest()

    def append(self, content: Mapping[str, Any]) -> dict[str, Any]:
        """Add a record (time, seq and chain hashes are set here) and return it as stored."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            last = _last_line(fd)
            if last and not last.endswith(b"\n"):
                raise RuntimeError(f"{self.path}: the last record is incomplete; run `crsrisk audit-log verify` "
                                   "and repair the log before appending")
            previous = json.loads(last) if last else None
            record = {**content, "utc_time": datetime.now(timezone.utc).isoformat(timespec="microseconds"),
                      "seq": 0 if previous is None else previous["seq"] + 1,
                      "prev_hash": GENESIS if previous is None else previous["hash"]}
            record["hash"] = _digest(record)
            os.write(fd, (_canonical(record) + "\n").encode())
            os.fsync(fd)
            return record
        finally:
            os.close(fd)

    def records(self) -> Iterator[dict[str, Any]]:
        """The stored records, in order."""
        with open(self.path, encoding="utf-8") as handle:
            for line in handle:
                yield json.loads(line)


def _last_line(fd: int) -> bytes:
    """The file's last line (with its newline if it has one), read backwards from the end."""
    size = os.lseek(fd, 0, os.SEEK_END)
    if size == 0:
        return b""
    chunk, data = 4096, b""
    position = size
    while position > 0:
        step = min(chunk, position)
        position -= step
        data = os.pread(fd, step, position) + data
        if data.count(b"\n") >= 2 or (data.count(b"\n") == 1 and not data.endswith(b"\n")):
            break
    body = data[:-1] if data.endswith(b"\n") else data
    start = body.rfind(b"\n") + 1
    return data[start:]


@dataclass
class VerifyResult:
    """How many records were checked and what, if anything, is broken (by line and seq)."""

    n_records: int
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the whole chain is intact."""
        return not self.problems


def verify_log(path: str | os.PathLike) -> VerifyResult:
    """Walk the chain and name the first record that was edited, deleted, inserted or reordered."""
    log = Path(path)
    if not log.exists():
        raise FileNotFoundError(f"no audit log at {log}")
    result = VerifyResult(0)
    previous_hash, expected_seq = GENESIS, 0
    with open(log, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.endswith(b"\n"):
                result.problems.append(f"line {number}: incomplete last record (no newline): truncated write")
                break
            try:
                record = json.loads(raw)
            except ValueError:
                result.problems.append(f"line {number}: not valid JSON: record garbled")
                break
            result.n_records += 1
            seq = record.get("seq")
            if record.get("hash") != _digest(record):
                result.problems.append(f"line {number} (seq {seq}): content does not match its hash: record edited")
                break
            if seq != expected_seq or record.get("prev_hash") != previous_hash:
                result.problems.append(f"line {number} (seq {seq}): expected seq {expected_seq} chained to the "
                                       "previous record: a record before it was deleted, inserted or reordered")
                break
            previous_hash, expected_seq = record["hash"], expected_seq + 1
    return result


def prediction_record(log: AuditLog, model_info: Mapping[str, Any], patient_id: str, input_fingerprint: str,
                      outputs: list[Mapping[str, Any]], raw_inputs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The content of one prediction's record: salted patient hash, input fingerprint, outputs with SHAP."""
    record: dict[str, Any] = {"kind": "prediction", "model": dict(model_info),
                              "patient_hash": log.hash_patient_id(patient_id),
                              "input_fingerprint": input_fingerprint, "outputs": list(outputs)}
    if log.store_raw:
        record["patient_id"] = patient_id
        record["inputs"] = raw_inputs
    return record
