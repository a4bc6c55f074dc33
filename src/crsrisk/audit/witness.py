"""The witness: every appended record's ``SEQ:HASH`` head, written outside the log as it is appended, so that a
log truncated, re-chained or renumbered after the fact no longer ends at the witnessed head.

A witness file holds one ``SEQ:HASH`` line per append (0600, folder 0700; where: ``crsrisk.audit.location``).
With ``$CRSRISK_AUDIT_WITNESS=syslog`` the heads go to syslog instead (``crsrisk audit: LOG SEQ:HASH``), which
``verify`` cannot read back: check those with ``--expect-head``.
"""

from __future__ import annotations

import os
import re
import syslog
from pathlib import Path

from crsrisk.audit.keys import private_folder
from crsrisk.audit.location import witness_path

_HEAD = re.compile(rb"(\d+):([0-9a-f]{64})\n")


def witness_head(log: Path, seq: int, digest: str) -> None:
    """Record that ``log`` now ends at ``seq`` with hash ``digest`` (called under the log's lock)."""
    path = witness_path(log)
    if path is None:
        syslog.syslog(syslog.LOG_INFO, f"crsrisk audit: {log.resolve()} {seq}:{digest}")
        return
    private_folder(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, f"{seq}:{digest}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def latest_witnessed(log: Path) -> tuple[int, str] | None:
    """The last complete ``SEQ:HASH`` line in ``log``'s witness file, or None (no file, syslog, no head)."""
    path = witness_path(log)
    if path is None or not path.is_file():
        return None
    with open(path, "rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        handle.seek(max(0, size - 4096))
        tail = handle.read()
    heads = [_HEAD.fullmatch(line + b"\n") for line in tail.split(b"\n")[:-1]]
    found = [head for head in heads if head]
    return (int(found[-1][1]), found[-1][2].decode()) if found else None
