"""Where an audit log, its chain key, its pseudonym key and its witness live (paths only, nothing is created).

The log: an explicit path, else ``$CRSRISK_AUDIT_LOG``, else ``$XDG_DATA_HOME/crsrisk/audit/predictions.jsonl``.
The chain key, by default outside the log's folder, one per log: ``$CRSRISK_AUDIT_KEY_FILE``, else
``$XDG_CONFIG_HOME/crsrisk/audit-keys/<log id>.key`` (``~/.config`` without XDG_CONFIG_HOME), where the log id is
the first 32 hex digits of the SHA-256 of the log's resolved path. The pseudonym key, one per user so that every
log and ``crsrisk monitor`` share it: ``$CRSRISK_AUDIT_PSEUDONYM_KEY_FILE``, else
``$XDG_CONFIG_HOME/crsrisk/pseudonym.key``. The witness: ``$CRSRISK_AUDIT_WITNESS`` (a folder, or ``syslog``),
else ``$XDG_STATE_HOME/crsrisk/witness`` (``~/.local/state`` without XDG_STATE_HOME), holding ``<log id>.heads``.
Logs made before keys moved out keep their ``<log>.key`` / ``<log>.salt`` beside them; those are still read.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

ENV_PATH = "CRSRISK_AUDIT_LOG"
ENV_KEY_FILE = "CRSRISK_AUDIT_KEY_FILE"
ENV_PSEUDONYM_KEY_FILE = "CRSRISK_AUDIT_PSEUDONYM_KEY_FILE"
ENV_WITNESS = "CRSRISK_AUDIT_WITNESS"
SYSLOG = "syslog"


def _xdg(variable: str, *default: str) -> Path:
    return Path(os.environ.get(variable) or Path.home().joinpath(*default))


def resolve_log_path(explicit: str | os.PathLike | None = None) -> Path:
    """The log file: explicit argument, else $CRSRISK_AUDIT_LOG, else the XDG data folder."""
    if explicit:
        return Path(explicit)
    if os.environ.get(ENV_PATH):
        return Path(os.environ[ENV_PATH])
    return _xdg("XDG_DATA_HOME", ".local", "share") / "crsrisk" / "audit" / "predictions.jsonl"


def log_id(log: Path) -> str:
    """A log's name in the key and witness folders: 32 hex digits of the SHA-256 of its resolved path."""
    return hashlib.sha256(str(log.resolve()).encode()).hexdigest()[:32]


def key_path(log: Path) -> Path:
    """The chain key's file for ``log``: $CRSRISK_AUDIT_KEY_FILE, else one per log in the user's config folder."""
    if os.environ.get(ENV_KEY_FILE):
        return Path(os.environ[ENV_KEY_FILE])
    return _xdg("XDG_CONFIG_HOME", ".config") / "crsrisk" / "audit-keys" / f"{log_id(log)}.key"


def legacy_key_path(log: Path) -> Path:
    """Where logs made before keys moved out keep their chain key: ``<log>.key`` beside the log."""
    return log.with_name(log.name + ".key")


def pseudonym_key_path() -> Path:
    """The per-user pseudonym key's file: $CRSRISK_AUDIT_PSEUDONYM_KEY_FILE, else the user's config folder."""
    if os.environ.get(ENV_PSEUDONYM_KEY_FILE):
        return Path(os.environ[ENV_PSEUDONYM_KEY_FILE])
    return _xdg("XDG_CONFIG_HOME", ".config") / "crsrisk" / "pseudonym.key"


def legacy_salt_path(log: Path) -> Path:
    """Where logs made before the per-user pseudonym key keep their salt: ``<log>.salt`` beside the log."""
    return log.with_name(log.name + ".salt")


def witness_path(log: Path) -> Path | None:
    """The file of ``log``'s witnessed heads, or None when the witness is syslog ($CRSRISK_AUDIT_WITNESS)."""
    where = os.environ.get(ENV_WITNESS)
    if where == SYSLOG:
        return None
    folder = Path(where) if where else _xdg("XDG_STATE_HOME", ".local", "state") / "crsrisk" / "witness"
    return folder / f"{log_id(log)}.heads"
