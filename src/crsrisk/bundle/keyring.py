"""Which public keys verify a bundle, and the user's own signing key (made on first use).

Trusted, in this order: the project's release key pinned in the package (``release_key.pub``: it signs the
shipped default bundle), the user's own key (``$XDG_CONFIG_HOME/crsrisk/signing.key``, ``~/.config`` without
XDG_CONFIG_HOME: every bundle this user's ``crsrisk train`` or ``recalibrate`` writes is signed with it), and
``$CRSRISK_TRUSTED_KEYS`` (another team's public keys, read by ``signing.trusted_keys``).

The user's key is made by the first caller all at once: the PEM goes into a fresh private file (``O_EXCL``,
0600, folder 0700) that is then hard-linked into place, which fails if the key exists, so callers starting
together all read one complete key, never an empty or partial one.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from crsrisk.audit.keys import private_folder
from crsrisk.bundle.signing import TrustedKey, key_id, load_private_key, load_public_key, trusted_keys

RELEASE_KEY = Path(__file__).with_name("release_key.pub")
RELEASE, OWN, CONFIGURED = "the crsrisk release key", "your own key", "$CRSRISK_TRUSTED_KEYS"
_PUBLIC_PEM = (serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def user_key_path() -> Path:
    """The user's own signing key: ``$XDG_CONFIG_HOME/crsrisk/signing.key`` (``~/.config`` without it)."""
    config = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(config) / "crsrisk" / "signing.key"


def _link_new(path: Path, data: bytes, mode: int) -> None:
    """Put ``data`` at ``path`` all at once unless ``path`` exists (another caller won: keep theirs)."""
    staging = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(8)}")
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
        os.close(fd)
        os.link(staging, path)
    except FileExistsError:
        pass
    finally:
        staging.unlink(missing_ok=True)


def user_signing_key() -> Ed25519PrivateKey:
    """The user's own signing key, made on first use (atomically, 0600), with its ``signing.pub`` beside it
    (the file to give another team for their ``$CRSRISK_TRUSTED_KEYS``)."""
    path = user_key_path()
    if not path.exists():
        private_folder(path.parent)
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        _link_new(path, pem, 0o600)
    key = load_private_key(path)
    public = path.with_suffix(".pub")
    if not public.exists():
        _link_new(public, key.public_key().public_bytes(*_PUBLIC_PEM), 0o644)
    return key


def keyring() -> dict[str, TrustedKey]:
    """Every trusted public key by id: the pinned release key, the user's own key (when it exists; reading
    never makes one) and ``$CRSRISK_TRUSTED_KEYS``."""
    release = load_public_key(RELEASE_KEY, "the pinned release key")
    keys = {key_id(release): TrustedKey(release, RELEASE)}
    own = user_key_path()
    if own.is_file():
        public = load_private_key(own).public_key()
        keys.setdefault(key_id(public), TrustedKey(public, OWN))
    for identifier, key in trusted_keys().items():
        keys.setdefault(identifier, TrustedKey(key, CONFIGURED))
    return keys
