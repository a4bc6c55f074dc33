"""Checking an audit log: every line's canonical encoding, HMAC and place in the chain, recovery files, and
the log's end against the latest witnessed head (and an ``--expect-head`` anchored by hand)."""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from crsrisk.audit.chain import GENESIS, DuplicateKeyError, canonical, mac, parse_line
from crsrisk.audit.keys import chain_key, legacy_key_note
from crsrisk.audit.location import witness_path
from crsrisk.audit.witness import latest_witnessed
from crsrisk.errors import AuditLogError, InputError

MAX_PROBLEMS = 50


def parse_head(text: str) -> tuple[int, str]:
    """``SEQ:HASH`` (as printed by ``crsrisk audit-log head``) as a pair; InputError naming what is wrong."""
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


def _mac_matches(key: bytes, record: dict[str, Any]) -> bool:
    """Whether a parsed record's ``hash`` is its HMAC (False, not an error, for content JSON cannot re-encode)."""
    try:
        return hmac.compare_digest(record["hash"].encode(), mac(key, record).encode())
    except ValueError:  # NaN or infinity smuggled into a record: never written by AuditLog
        return False


def _is_canonical(raw: bytes, record: dict[str, Any]) -> bool:
    """Whether a line is exactly the bytes the writer produces for its record."""
    try:
        return raw == (canonical(record) + "\n").encode()
    except ValueError:  # NaN or infinity
        return False


def _lines(handle: Any, size: int) -> Iterator[bytes]:
    """The file's lines within its first ``size`` bytes: what was there when reading began."""
    left = size
    for line in handle:
        if left <= 0:
            return
        yield line[:left]
        left -= len(line)


def _settled(fd: int, log: Path, witness: bool) -> tuple[int, tuple[int, str] | None]:
    """The log's size and latest witnessed head, read together under a shared lock (between two appends)."""
    fcntl.flock(fd, fcntl.LOCK_SH)
    try:
        return os.fstat(fd).st_size, latest_witnessed(log) if witness else None
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _recovery_note(log: Path, number: int, record: dict[str, Any], result: VerifyResult) -> None:
    """Report a recovery record, and check the recovery file it names still holds the torn bytes."""
    name = str(record.get("recovered_to", ""))
    text = (
        f"line {number} (seq {record['seq']}): a torn last line ({record.get('torn_bytes')} bytes) was moved "
        f"aside into {name!r} at {record.get('utc_time')}"
    )
    saved = log.with_name(name)
    if "/" in name or not name.startswith(log.name + ".recovered-") or not saved.is_file():
        result.notes.append(f"{text}; that file is not beside the log any more")
    elif hashlib.sha256(saved.read_bytes()).hexdigest() != record.get("torn_sha256"):
        result.problems.append(f"{text}; but that file no longer holds the torn bytes: recovery file edited")
    else:
        result.notes.append(f"{text}; the file holds exactly those bytes")


def _check_line(number: int, raw: bytes, key: bytes, state: dict[str, Any], result: VerifyResult) -> None:
    """Check one line: a record, canonical, its HMAC, chained to the one before; say what is wrong."""
    try:
        record = parse_line(raw)
    except DuplicateKeyError as error:
        result.problems.append(
            f"line {number}: names the key {error.key!r} twice: a record with a duplicate key "
            "(the writer never makes one; readers would disagree on its value)"
        )
        return
    if record is None:
        result.problems.append(
            f"line {number}: not a valid record (bad JSON, wrong field types or garbage: {raw[:40]!r}): record garbled"
        )
        return
    result.n_records += 1
    seq = record["seq"]
    if not _is_canonical(raw, record):
        result.problems.append(
            f"line {number} (seq {seq}): not the canonical encoding (keys sorted, no spaces, "
            "ASCII) the writer produces: record re-encoded or hand-edited"
        )
    elif not _mac_matches(key, record):
        result.problems.append(
            f"line {number} (seq {seq}): content does not match its HMAC: record edited, "
            "or the chain was recomputed without the key"
        )
    elif seq != state["seq"] or record["prev_hash"] != state["hash"]:
        result.problems.append(
            f"line {number} (seq {seq}): expected seq {state['seq']} chained to the "
            "previous record: a record before it was deleted, inserted or reordered"
        )
    elif record.get("kind") == "recovery":
        _recovery_note(Path(state["log"]), number, record, result)
    state["hash"], state["seq"] = record["hash"], seq + 1
    result.head = (seq, record["hash"])
    if seq in state["wanted"]:
        state["hashes"][seq] = record["hash"]


def _check_anchor(result: VerifyResult, hashes: dict[int, str], anchor: tuple[int, str], source: str) -> None:
    """The log must hold the anchored record with the anchored hash."""
    seq, digest = anchor
    if seq not in hashes:
        last = "is empty" if result.head is None else f"ends at seq {result.head[0]}"
        result.problems.append(
            f"{source} seq {seq} is not in the log, which {last}: records were dropped "
            "from the end, or the log was replaced"
        )
    elif not hmac.compare_digest(hashes[seq].encode(), digest.encode()):
        result.problems.append(
            f"record seq {seq} has hash {hashes[seq][:16]}..., the {source} says "
            f"{digest[:16]}...: the log was rewritten"
        )


def _check_witness(log: Path, result: VerifyResult, hashes: dict[int, str], witnessed: tuple[int, str] | None) -> None:
    """The log must end exactly at the latest witnessed head."""
    where = witness_path(log)
    if witnessed is None:
        result.notes.append(
            "the witness is syslog: compare its latest head with --expect-head"
            if where is None
            else f"no witnessed head at {where}: only the chain is checked (a log written before "
            "witnesses, or the witness was removed)"
        )
        return
    before = len(result.problems)
    _check_anchor(result, hashes, witnessed, f"witnessed head (in {where})")
    if len(result.problems) == before and result.head is not None and result.head[0] > witnessed[0]:
        result.problems.append(
            f"the log ends at seq {result.head[0]} but the latest witnessed head (in {where}) "
            f"is seq {witnessed[0]}: records appended without the writer (forged), or a writer "
            "stopped between the log and the witness"
        )
    elif len(result.problems) == before:
        result.notes.append(f"ends at the latest witnessed head {witnessed[0]} (in {where})")


def verify_log(
    path: str | os.PathLike,
    expect_head: tuple[int, str] | None = None,
    key: bytes | None = None,
    witness: bool = True,
    key_file: str | os.PathLike | None = None,
) -> VerifyResult:
    """Check every record's encoding, HMAC and place in the chain, naming each edited, deleted, inserted,
    reordered, forged, re-encoded or damaged line; with ``witness`` (default) also that the log ends at its
    latest witnessed head (truncation, re-chaining, renumbering, forged appends); with ``expect_head`` (an
    earlier ``log_head``) that it still holds that head. Never raises on damaged content; raises
    ``AuditLogError`` for a missing key or unreadable file."""
    log = Path(path)
    if not log.exists():
        raise FileNotFoundError(f"no audit log at {log}")
    result = VerifyResult(0)
    if key is None:
        key = chain_key(log, key_file=key_file)
        note = legacy_key_note(log, key_file)
        result.notes += [note] if note else []
    state: dict[str, Any] = {"seq": 0, "hash": GENESIS, "log": log, "hashes": {}, "wanted": set()}
    try:
        handle = open(log, "rb")
    except OSError as error:
        raise AuditLogError(f"{log}: cannot read the audit log ({error})") from None
    with handle:
        try:
            size, witnessed = _settled(handle.fileno(), log, witness)
        except OSError as error:
            raise AuditLogError(f"{log}: cannot read the audit log ({error})") from None
        state["wanted"] = {anchor[0] for anchor in (witnessed, expect_head) if anchor is not None}
        for number, raw in enumerate(_lines(handle, size), start=1):
            if len(result.problems) >= MAX_PROBLEMS:
                result.problems.append(f"... stopped after {MAX_PROBLEMS} problems")
                break
            if not raw.endswith(b"\n"):
                result.problems.append(
                    f"line {number}: incomplete last record (no newline): a torn write; the next writer moves it aside"
                )
                break
            _check_line(number, raw, key, state, result)
    if witness:
        _check_witness(log, result, state["hashes"], witnessed)
    if expect_head is not None:
        _check_anchor(result, state["hashes"], expect_head, "expected head")
    return result
