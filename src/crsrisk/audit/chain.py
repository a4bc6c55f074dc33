"""Appending to the HMAC-chained audit log (JSON Lines), safe across processes.

Format: one JSON object per line in its canonical encoding (keys sorted, no whitespace, ASCII). Each record
holds ``seq`` (0-based), ``prev_hash`` (the previous record's ``hash``; 64 zeros for the first) and ``hash`` =
HMAC-SHA256, under the log's chain key (``crsrisk.audit.keys``), of the record's canonical JSON without
``hash``. Writers append under an exclusive ``flock`` and witness each new head (``crsrisk.audit.witness``).
A torn last line (a writer killed mid-write) is moved aside by the next writer into
``<log>.recovered-<UTC>`` and a ``recovery`` record says so.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Mapping

from crsrisk.audit.keys import chain_key, private_folder, pseudonym, pseudonym_key
from crsrisk.audit.location import resolve_log_path
from crsrisk.audit.witness import witness_head
from crsrisk.errors import AuditLogError

GENESIS = "0" * 64


def canonical(record: Mapping[str, Any]) -> str:
    """The one encoding of a record the writer produces (and ``verify`` requires)."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), allow_nan=False, default=str)


def mac(key: bytes, record: Mapping[str, Any]) -> str:
    """The record's chain hash: HMAC-SHA256 of its canonical JSON without ``hash``."""
    body = canonical({k: v for k, v in record.items() if k != "hash"}).encode()
    return hmac.new(key, body, hashlib.sha256).hexdigest()


class AuditLog:
    """Appends records to one log file; safe across processes."""

    def __init__(
        self, path: str | os.PathLike | None = None, store_raw: bool = False, key_file: str | os.PathLike | None = None
    ) -> None:
        self.path = resolve_log_path(path)
        self.store_raw = store_raw
        self.key_file = key_file
        self._pseudonym_key: bytes | None = None

    def _prepare(self) -> None:
        """Make the log's folder (0700) or fail with a clear error."""
        try:
            private_folder(self.path.parent)
            if not self.path.parent.is_dir():
                raise NotADirectoryError(f"{self.path.parent} is not a folder")
            if self.path.is_dir():
                raise IsADirectoryError(f"{self.path} is a directory")
        except OSError as error:
            raise AuditLogError(f"{self.path}: cannot write the audit log here ({error})") from None

    def key(self, create: bool = False) -> bytes:
        """The chain's HMAC key (made when ``create`` and absent; see ``crsrisk.audit.keys``)."""
        if create:
            self._prepare()
        return chain_key(self.path, create, self.key_file)

    def hash_patient_id(self, patient_id: str) -> str:
        """The patient's pseudonymous key (HMAC-SHA256 under the pseudonym key; the raw id is never stored by
        default)."""
        if self._pseudonym_key is None:
            self._prepare()
            self._pseudonym_key = pseudonym_key(self.path)
        return pseudonym(self._pseudonym_key, patient_id)

    def append(self, content: Mapping[str, Any]) -> dict[str, Any]:
        """Add a record (time, seq and chain hashes are set here) and return it as stored. A torn last line
        left by a killed writer is first moved aside and a ``recovery`` record appended."""
        key = self.key(create=True)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        except OSError as error:
            raise AuditLogError(f"{self.path}: cannot write the audit log ({error})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            size = os.lseek(fd, 0, os.SEEK_END)
            last = last_line(fd, size)
            previous = None
            if last and not last.endswith(b"\n"):
                previous = record_or_error(last_line(fd, size - len(last)), self.path)
                previous = self._write(fd, key, self._move_aside(fd, last, size), previous)
            elif last:
                previous = record_or_error(last, self.path)
            return self._write(fd, key, content, previous)
        except OSError as error:  # disk full, recovery file not creatable, ...: said, never a traceback
            raise AuditLogError(f"{self.path}: cannot append to the audit log ({error})") from None
        finally:
            os.close(fd)

    def _move_aside(self, fd: int, torn: bytes, size: int) -> dict[str, Any]:
        """Save a torn last line into a recovery file, cut it from the log, and return the record saying so."""
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
        target = self.path.with_name(f"{self.path.name}.recovered-{stamp}")
        saved = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            _write_all(saved, torn)
            os.fsync(saved)
        finally:
            os.close(saved)
        os.ftruncate(fd, size - len(torn))
        os.fsync(fd)
        return {
            "kind": "recovery",
            "recovered_to": target.name,
            "torn_bytes": len(torn),
            "torn_sha256": hashlib.sha256(torn).hexdigest(),
            "reason": "the log's last line was incomplete (a writer stopped mid-write); moved aside",
        }

    def _write(
        self, fd: int, key: bytes, content: Mapping[str, Any], previous: dict[str, Any] | None
    ) -> dict[str, Any]:
        record = {
            **content,
            "utc_time": datetime.now(timezone.utc).isoformat(timespec="microseconds"),
            "seq": 0 if previous is None else previous["seq"] + 1,
            "prev_hash": GENESIS if previous is None else previous["hash"],
        }
        record["hash"] = mac(key, record)
        _write_all(fd, (canonical(record) + "\n").encode())
        os.fsync(fd)
        witness_head(self.path, record["seq"], record["hash"])
        return record

    def records(self) -> Iterator[dict[str, Any]]:
        """The stored records, in order."""
        with open(self.path, encoding="utf-8") as handle:
            for line in handle:
                yield json.loads(line)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class DuplicateKeyError(ValueError):
    """A JSON object in a log line names the same key twice."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object from its pairs, refusing a key given twice (JSON allows it; the writer never makes one)."""
    record = dict(pairs)
    if len(record) != len(pairs):
        seen: set[str] = set()
        twice = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]  # add records k, then falls through
        raise DuplicateKeyError(twice)
    return record


def parse_line(line: bytes) -> dict[str, Any] | None:
    """A line parsed as a chained record, or None when it is not one (bad JSON, wrong types, garbage); raises
    ``DuplicateKeyError`` for an object naming a key twice."""
    try:
        record = json.loads(line, object_pairs_hook=_no_duplicates)
    except DuplicateKeyError:
        raise
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not (
        isinstance(record, dict)
        and type(record.get("seq")) is int
        and record["seq"] >= 0
        and isinstance(record.get("hash"), str)
        and isinstance(record.get("prev_hash"), str)
    ):
        return None
    return record


def record_or_error(line: bytes, path: Path) -> dict[str, Any] | None:
    """The record a complete last line holds (None for no line), or the error saying this is no audit log."""
    if not line:
        return None
    try:
        record = parse_line(line)
    except DuplicateKeyError:
        record = None
    if record is None:
        raise AuditLogError(
            f"{path}: the last complete line is not an audit record: not a crsrisk audit log, or "
            "damaged; run `crsrisk audit-log verify` before appending"
        )
    return record


def last_line(fd: int, end: int) -> bytes:
    """The last line of the file's first ``end`` bytes (with its newline if it has one), read backwards."""
    chunks: list[bytes] = []
    position, newlines = end, 0
    while position > 0:
        step = min(65536, position)
        position -= step
        chunk = os.pread(fd, step, position)
        chunks.insert(0, chunk)
        newlines += chunk.count(b"\n")
        if newlines >= 2 or (newlines == 1 and not (chunks[-1].endswith(b"\n"))):
            break
    data = b"".join(chunks)
    body = data[:-1] if data.endswith(b"\n") else data
    return data[body.rfind(b"\n") + 1 :]


def log_head(path: str | os.PathLike) -> tuple[int, str]:
    """The latest complete record's ``(seq, hash)``: the value to anchor elsewhere and pass to ``verify``."""
    log = Path(path)
    try:
        fd = os.open(log, os.O_RDONLY)
    except OSError as error:
        raise AuditLogError(f"{log}: cannot read the audit log ({error})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        size = os.fstat(fd).st_size
        last = last_line(fd, size)
        if last and not last.endswith(b"\n"):
            last = last_line(fd, size - len(last))
    except OSError as error:
        raise AuditLogError(f"{log}: cannot read the audit log ({error})") from None
    finally:
        os.close(fd)
    record = record_or_error(last, log)
    if record is None:
        raise AuditLogError(f"{log}: the audit log holds no complete record")
    return record["seq"], record["hash"]
