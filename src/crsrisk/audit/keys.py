"""The audit log's secrets: the chain key (HMAC of every record) and the pseudonym key (patient ids).

Both are 64 hex characters (256 random bits) in a file of their own, mode 0600 in a 0700 folder, made by the
first caller all at once: the secret goes into a fresh private file (``O_CREAT | O_EXCL``) that is then
hard-linked into place, which fails if the target exists, so writers starting together all read one complete
secret, never an empty or partial one (no check-then-act). Where the files live: ``crsrisk.audit.location``.

The chain key is per log and lives outside the log's folder by default, so whoever can write the log cannot
re-chain it without also reaching the key. ``$CRSRISK_AUDIT_KEY`` (the key itself) or a ``key_file``
argument / ``$CRSRISK_AUDIT_KEY_FILE`` override it; a legacy ``<log>.key`` beside an existing log is still read.

The pseudonym key is per user (not per log) and separate from the chain key: a record's ``patient_hash`` is
HMAC-SHA256(pseudonym key, patient id as UTF-8), hex. Whoever holds the pseudonym key (``crsrisk monitor``
joining an outcome cohort) computes the same value from the cohort's patient ids; whoever holds only the log
or the chain key cannot. ``$CRSRISK_AUDIT_SALT`` (the key itself) overrides it; a legacy ``<log>.salt``
beside a log is still read, so that log's earlier pseudonyms stay reproducible.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from crsrisk.audit.location import ENV_KEY_FILE, key_path, legacy_key_path, legacy_salt_path, pseudonym_key_path
from crsrisk.errors import AuditLogError

ENV_KEY = "CRSRISK_AUDIT_KEY"
ENV_SALT = "CRSRISK_AUDIT_SALT"
MIN_SECRET = 32  # characters of a key


def private_folder(folder: Path) -> None:
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
    """The secret kept in ``path``, made there atomically first when ``create`` and absent."""
    if create and not path.exists():
        private_folder(path.parent)
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
        raise AuditLogError(
            f"{path}: no audit key file (and ${ENV_KEY} / ${ENV_SALT} unset): cannot check this log's HMACs"
        )
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


def chain_key_file(log: Path, key_file: str | os.PathLike | None = None) -> Path:
    """The chain key's file: ``key_file``, else $CRSRISK_AUDIT_KEY_FILE, else a legacy ``<log>.key`` that
    exists, else the per-log file in the user's config folder."""
    if key_file:
        return Path(key_file)
    legacy = legacy_key_path(log)
    if not os.environ.get(ENV_KEY_FILE) and legacy.is_file():
        return legacy
    return key_path(log)


def legacy_key_note(log: Path, key_file: str | os.PathLike | None = None) -> str | None:
    """A note when the chain key is the legacy ``<log>.key`` beside the log, saying where it belongs now."""
    if os.environ.get(ENV_KEY) or chain_key_file(log, key_file) != legacy_key_path(log):
        return None
    return (
        f"the chain key is read from {legacy_key_path(log)} beside the log (an older crsrisk put it there): "
        f"whoever can write the log's folder can reach it; move it to {key_path(log)} or set ${ENV_KEY_FILE}"
    )


def chain_key(log: Path, create: bool = False, key_file: str | os.PathLike | None = None) -> bytes:
    """The chain's HMAC key: $CRSRISK_AUDIT_KEY, else its file (made when ``create`` and the log is empty)."""
    from_env = _env_secret(ENV_KEY)
    if from_env is not None:
        return from_env
    path = chain_key_file(log, key_file)
    try:
        # the log first: a writer links the key before it writes a record, so a log seen holding records
        # whose key is then absent has lost it (the other order raced a first writer in 2 of 1800 appends)
        if create and log.is_file() and log.stat().st_size > 0 and not path.exists():
            raise AuditLogError(
                f"{log} holds records but its key {path} is missing: restore it (or set "
                f"${ENV_KEY}); a new key would make every earlier record fail to verify"
            )
        return _secret(path, create)
    except OSError as error:
        raise AuditLogError(f"{path}: cannot read or create the audit key ({error})") from None


def pseudonym_key(log: Path | None = None, create: bool = True) -> bytes:
    """The pseudonym key: $CRSRISK_AUDIT_SALT, else a legacy ``<log>.salt`` beside ``log``, else the
    per-user file (made on first use when ``create``; a reader such as ``crsrisk monitor`` passes False, so a
    missing key is said rather than replaced by a new one that matches nothing)."""
    from_env = _env_secret(ENV_SALT)
    if from_env is not None:
        return from_env
    path = legacy_salt_path(log) if log is not None and legacy_salt_path(log).is_file() else pseudonym_key_path()
    try:
        return _secret(path, create=create)
    except OSError as error:
        raise AuditLogError(f"{path}: cannot read or create the pseudonym key ({error})") from None


def pseudonym(key: bytes, patient_id: str) -> str:
    """A patient's pseudonymous key in the audit log: HMAC-SHA256 of the id (UTF-8) under ``key``, hex."""
    return hmac.new(key, str(patient_id).encode(), hashlib.sha256).hexdigest()
