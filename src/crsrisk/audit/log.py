"""The append-only, HMAC-chained prediction audit log (JSON Lines; standard library only).

Format: one JSON object per line, keys sorted, no whitespace. Each record holds ``seq`` (0-based),
``prev_hash`` (the previous record's ``hash``; 64 zeros for the first) and ``hash`` = HMAC-SHA256, under the
log's key, of the record's canonical JSON without ``hash``. Editing, deleting, inserting or reordering a
record breaks the chain at that record, and without the key nobody can recompute a valid chain. Records
dropped from the end leave a valid chain: anchor the head (``crsrisk audit-log head``) elsewhere and check
it with ``verify_log(..., expect_head=...)``.

Location: an explicit path, else ``$CRSRISK_AUDIT_LOG``, else
``$XDG_DATA_HOME/crsrisk/audit/predictions.jsonl`` (``~/.local/share/...`` without XDG_DATA_HOME).
Key: ``$CRSRISK_AUDIT_KEY``, else ``<log>.key`` (made by the first writer, mode 0600). Patient ids are stored
only as HMAC-SHA256 with a salt from ``$CRSRISK_AUDIT_SALT`` or ``<log>.salt`` (likewise); raw ids and
inputs only with ``store_raw=True``. Writers in several processes append under an exclusive ``flock``. A torn
last line (a writer killed mid-write) is moved aside by the next writer into ``<log>.recovered-<UTC>`` and a
``recovery`` record says so.
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

from crsrisk.errors import AuditLogError, InputError

GENESIS = "0" * 64
ENV_PATH = "CRSRISK_AUDIT_LOG"
ENV_SALT = "CRSRISK_AUDIT_SALT"
ENV_KEY = "CRSRISK_AUDIT_KEY"
MIN_SECRET = 32  # characters of a key or salt
MAX_PROBLEMS = 50


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


def _mac(key: bytes, record: Mapping[str, Any]) -> str:
    """The record's chain hash: HMAC-SHA256 of its canonical JSON without ``hash``."""
    body = _canonical({k: v for k, v in record.items() if k != "hash"}).encode()
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def _mac_matches(key: bytes, record: dict[str, Any]) -> bool:
    """Whether a parsed record's ``hash`` is its HMAC (False, not an error, for content JSON cannot re-encode)."""
    try:
        return hmac.compare_digest(record["hash"].encode(), _mac(key, record).encode())
    except ValueError:  # NaN or infinity smuggled into a record: never written by AuditLog
        return False


def _private_folder(folder: Path) -> None:
    """Create ``folder`` and any missing parents readable by the owner only (0700)."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for path in reversed(missing):
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass


def _secret(path: Path, create: bool) -> bytes:
    """A key or salt kept in its own file. The first caller creates it all at once: the secret goes into a
    fresh private file (``O_CREAT | O_EXCL``, 0600) that is then hard-linked to ``path``, which fails if ``path``
    exists, so concurrent first writers all end up reading one complete secret, never an empty or partial one."""
    if not path.exists() and create:
        staging = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(8)}")
        fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, secrets.token_hex(32).encode())
            os.fsync(fd)
            os.close(fd)
            os.link(staging, path)
        except FileExistsError:
            pass  # another writer won: read its secret
        finally:
            staging.unlink(missing_ok=True)
    if not path.is_file():
        raise AuditLogError(f"{path}: no audit key or salt file (and ${ENV_KEY} / ${ENV_SALT} unset): "
                            "cannot check this log's HMACs")
    value = path.read_bytes().strip()
    if len(value) < MIN_SECRET:
        raise AuditLogError(f"{path}: holds {len(value)} characters, expected a secret of at least {MIN_SECRET}")
    return value


def _env_secret(name: str) -> bytes | None:
    value = os.environ.get(name)
    if not value:
        return None
    if len(value) < MIN_SECRET:
        raise AuditLogError(f"${name}: expected a secret of at least {MIN_SECRET} characters")
    return value.encode()


class AuditLog:
    """Appends records to one log file; safe across processes."""

    def __init__(self, path: str | os.PathLike | None = None, store_raw: bool = False) -> None:
        self.path = resolve_log_path(path)
        self.store_raw = store_raw
        self.key_path = self.path.with_name(self.path.name + ".key")
        self.salt_path = self.path.with_name(self.path.name + ".salt")
        self._salt_value: bytes | None = None

    def _prepare(self) -> None:
        """Make the log's folder (0700) or fail with a clear error."""
        try:
            _private_folder(self.path.parent)
            if not self.path.parent.is_dir():
                raise NotADirectoryError(f"{self.path.parent} is not a folder")
            if self.path.is_dir():
                raise IsADirectoryError(f"{self.path} is a directory")
        except OSError as error:
            raise AuditLogError(f"{self.path}: cannot write the audit log here ({error})") from None

    def key(self, create: bool = False) -> bytes:
        """The chain's HMAC key: $CRSRISK_AUDIT_KEY, else ``<log>.key`` (made when ``create`` and absent)."""
        from_env = _env_secret(ENV_KEY)
        if from_env is not None:
            return from_env
        if create:
            self._prepare()
            if not self.key_path.exists() and self.path.is_file() and self.path.stat().st_size > 0:
                raise AuditLogError(f"{self.path} holds records but its key {self.key_path} is missing: restore it "
                                    f"(or set ${ENV_KEY}); a new key would make every earlier record fail to verify")
        try:
            return _secret(self.key_path, create)
        except OSError as error:
            raise AuditLogError(f"{self.key_path}: cannot read or create the audit key ({error})") from None

    def _salt(self) -> bytes:
        if self._salt_value is None:
            from_env = _env_secret(ENV_SALT)
            if from_env is None:
                self._prepare()
                try:
                    from_env = _secret(self.salt_path, create=True)
                except OSError as error:
                    raise AuditLogError(f"{self.salt_path}: cannot read or create the salt ({error})") from None
            self._salt_value = from_env
        return self._salt_value

    def hash_patient_id(self, patient_id: str) -> str:
        """HMAC-SHA256 of the patient id with this log's salt (the raw id is never stored by default)."""
        return hmac.new(self._salt(), str(patient_id).encode(), hashlib.sha256).hexdigest()

    def append(self, content: Mapping[str, Any]) -> dict[str, Any]:
        """Add a record (time, seq and chain hashes are set here) and return it as stored. A torn last line
        left by a killed writer is first moved aside and a ``recovery`` record appended."""
        self._prepare()
        key = self.key(create=True)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        except OSError as error:
            raise AuditLogError(f"{self.path}: cannot write the audit log ({error})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            size = os.lseek(fd, 0, os.SEEK_END)
            last = _last_line(fd, size)
            previous = None
            if last and not last.endswith(b"\n"):
                previous = _record_or_error(_last_line(fd, size - len(last)), self.path)
                previous = self._write(fd, key, self._move_aside(fd, last, size), previous)
            elif last:
                previous = _record_or_error(last, self.path)
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
        return {"kind": "recovery", "recovered_to": target.name, "torn_bytes": len(torn),
                "torn_sha256": hashlib.sha256(torn).hexdigest(),
                "reason": "the log's last line was incomplete (a writer stopped mid-write); moved aside"}

    @staticmethod
    def _write(fd: int, key: bytes, content: Mapping[str, Any], previous: dict[str, Any] | None) -> dict[str, Any]:
        record = {**content, "utc_time": datetime.now(timezone.utc).isoformat(timespec="microseconds"),
                  "seq": 0 if previous is None else previous["seq"] + 1,
                  "prev_hash": GENESIS if previous is None else previous["hash"]}
        record["hash"] = _mac(key, record)
        _write_all(fd, (_canonical(record) + "\n").encode())
        os.fsync(fd)
        return record

    def records(self) -> Iterator[dict[str, Any]]:
        """The stored records, in order."""
        with open(self.path, encoding="utf-8") as handle:
            for line in handle:
                yield json.loads(line)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _record(line: bytes) -> dict[str, Any] | None:
    """A line parsed as a chained record, or None when it is not one (bad JSON, wrong types, garbage)."""
    try:
        record = json.loads(line)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not (isinstance(record, dict) and type(record.get("seq")) is int and record["seq"] >= 0
            and isinstance(record.get("hash"), str) and isinstance(record.get("prev_hash"), str)):
        return None
    return record


def _record_or_error(line: bytes, path: Path) -> dict[str, Any] | None:
    if not line:
        return None
    record = _record(line)
    if record is None:
        raise AuditLogError(f"{path}: the last complete line is not an audit record: not a crsrisk audit log, or "
                            "damaged; run `crsrisk audit-log verify` before appending")
    return record


def _last_line(fd: int, end: int) -> bytes:
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
    return data[body.rfind(b"\n") + 1:]


def _settled_size(fd: int) -> int:
    """The file's size between two appends (taken under a shared lock, so never in the middle of a record)."""
    fcntl.flock(fd, fcntl.LOCK_SH)
    try:
        return os.fstat(fd).st_size
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _lines(handle: Any, size: int) -> Iterator[bytes]:
    """The file's lines within its first ``size`` bytes: what was there when reading began."""
    left = size
    for line in handle:
        if left <= 0:
            return
        yield line[:left]
        left -= len(line)


def log_head(path: str | os.PathLike) -> tuple[int, str]:
    """The latest complete record's ``(seq, hash)``: the value to anchor elsewhere and pass to ``verify``."""
    log = Path(path)
    try:
        fd = os.open(log, os.O_RDONLY)
    except OSError as error:
        raise AuditLogError(f"{log}: cannot read the audit log ({error})") from None
    try:
        size = _settled_size(fd)
        last = _last_line(fd, size)
        if last and not last.endswith(b"\n"):
            last = _last_line(fd, size - len(last))
    except OSError as error:
        raise AuditLogError(f"{log}: cannot read the audit log ({error})") from None
    finally:
        os.close(fd)
    record = _record_or_error(last, log)
    if record is None:
        raise AuditLogError(f"{log}: the audit log holds no complete record")
    return record["seq"], record["hash"]


def parse_head(text: str) -> tuple[int, str]:
    """``SEQ:HASH`` (as printed by ``crsrisk audit-log head``) as a pair; ValueError naming what is wrong."""
    seq, _, digest = text.partition(":")
    if not (seq.isascii() and seq.isdigit() and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)):
        raise InputError(f"head {text!r:.100}: expected SEQ:HASH (a record number and 64 hex digits)")
    return int(seq), digest


@dataclass
class VerifyResult:
    """How many records were checked, what is broken (by line and seq), notes such as recoveries, and the head."""

    n_records: int
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    head: tuple[int, str] | None = None

    @property
    def ok(self) -> bool:
        """True when the whole chain is intact (and the expected head, if given, is in it)."""
        return not self.problems


def _recovery_note(log: Path, number: int, record: dict[str, Any], result: VerifyResult) -> None:
    """Report a recovery record, and check the recovery file it names still holds the torn bytes."""
    name = str(record.get("recovered_to", ""))
    text = (f"line {number} (seq {record['seq']}): a torn last line ({record.get('torn_bytes')} bytes) was moved "
            f"aside into {name!r} at {record.get('utc_time')}")
    saved = log.with_name(name)
    if "/" in name or not name.startswith(log.name + ".recovered-") or not saved.is_file():
        result.notes.append(f"{text}; that file is not beside the log any more")
    elif hashlib.sha256(saved.read_bytes()).hexdigest() != record.get("torn_sha256"):
        result.problems.append(f"{text}; but that file no longer holds the torn bytes: recovery file edited")
    else:
        result.notes.append(f"{text}; the file holds exactly those bytes")


def verify_log(path: str | os.PathLike, expect_head: tuple[int, str] | None = None,
               key: bytes | None = None) -> VerifyResult:
    """Check every record's HMAC and its place in the chain, naming each edited, deleted, inserted, reordered,
    forged or damaged line; with ``expect_head`` (an earlier ``log_head``), also records dropped from the end
    and rewrites. Never raises on damaged content; raises ``AuditLogError`` for a missing key or unreadable file."""
    log = Path(path)
    if not log.exists():
        raise FileNotFoundError(f"no audit log at {log}")
    key = AuditLog(log).key() if key is None else key
    result = VerifyResult(0)
    previous_hash, expected_seq, anchored = GENESIS, 0, None
    try:
        handle = open(log, "rb")
    except OSError as error:
        raise AuditLogError(f"{log}: cannot read the audit log ({error})") from None
    with handle:
        try:
            lines = _lines(handle, _settled_size(handle.fileno()))
        except OSError as error:
            raise AuditLogError(f"{log}: cannot read the audit log ({error})") from None
        for number, raw in enumerate(lines, start=1):
            if len(result.problems) >= MAX_PROBLEMS:
                result.problems.append(f"... stopped after {MAX_PROBLEMS} problems")
                break
            if not raw.endswith(b"\n"):
                result.problems.append(f"line {number}: incomplete last record (no newline): a torn write; the next "
                                       "writer moves it aside")
                break
            record = _record(raw)
            if record is None:
                result.problems.append(f"line {number}: not a valid record (bad JSON, wrong field types or "
                                       f"garbage: {raw[:40]!r}): record garbled")
                continue
            result.n_records += 1
            seq = record["seq"]
            if not _mac_matches(key, record):
                result.problems.append(f"line {number} (seq {seq}): content does not match its HMAC: record edited, "
                                       "or the chain was recomputed without the key")
            elif seq != expected_seq or record["prev_hash"] != previous_hash:
                result.problems.append(f"line {number} (seq {seq}): expected seq {expected_seq} chained to the "
                                       "previous record: a record before it was deleted, inserted or reordered")
            elif record.get("kind") == "recovery":
                _recovery_note(log, number, record, result)
            previous_hash, expected_seq = record["hash"], seq + 1
            result.head = (seq, record["hash"])
            if expect_head is not None and seq == expect_head[0]:
                anchored = record["hash"]
    if expect_head is not None:
        seq, digest = expect_head
        if anchored is None:
            last = "is empty" if result.head is None else f"ends at seq {result.head[0]}"
            result.problems.append(f"expected head seq {seq} is not in the log, which {last}: records were dropped "
                                   "from the end, or the log was replaced")
        elif not hmac.compare_digest(anchored.encode(), digest.encode()):
            result.problems.append(f"record seq {seq} has hash {anchored[:16]}..., the anchored head says "
                                   f"{digest[:16]}...: the log was rewritten")
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


def batch_record(log: AuditLog, model_info: Mapping[str, Any], table: Any, input_fingerprint: str,
                 kind: str = "batch_prediction") -> dict[str, Any]:
    """The content of one record for a whole table of outputs (a pandas DataFrame: a cohort's scores, its SHAP
    importance): columns and rows, with a ``patient_id`` column replaced by the salted patient hash."""
    columns = list(table.columns)
    rows = [[value.item() if hasattr(value, "item") else value for value in row]
            for row in table.itertuples(index=False, name=None)]
    record: dict[str, Any] = {"kind": kind, "model": dict(model_info), "input_fingerprint": input_fingerprint,
                              "n_rows": len(rows)}
    if "patient_id" in columns:
        at = columns.index("patient_id")
        hashes = {pid: log.hash_patient_id(pid) for pid in {str(row[at]) for row in rows}}
        if log.store_raw:
            record["patient_ids"] = [str(row[at]) for row in rows]
        rows = [[*row[:at], hashes[str(row[at])], *row[at + 1:]] for row in rows]
        columns[at] = "patient_hash"
    record.update(columns=columns, rows=rows)
    return record
