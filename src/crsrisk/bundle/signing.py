"""Ed25519 signatures over a bundle's manifest, and the trusted public keys that verify them.

The signature (``signature.json``: algorithm, key id, signature) signs the exact bytes of ``manifest.json``;
the manifest pins every other file by SHA-256, so one signature covers the whole bundle. Which keys are trusted
is ``crsrisk.bundle.keyring``'s (the pinned release key, the user's own key, and ``$CRSRISK_TRUSTED_KEYS``: a
list of PEM public-key files or folders of them, separated by ``os.pathsep``, read here).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from crsrisk.errors import BundleIntegrityError, InputError

SIGNATURE = "signature.json"
ENV_TRUSTED_KEYS = "CRSRISK_TRUSTED_KEYS"
KEY_SUFFIXES = (".pem", ".pub")
UNSIGNED = "unsigned"


@dataclass(frozen=True)
class TrustedKey:
    """A public key that verifies bundles, and where its trust comes from (shown in every model line)."""

    key: Ed25519PublicKey
    source: str


def key_id(public_key: Ed25519PublicKey) -> str:
    """A public key's id: the first 16 hex digits of the SHA-256 of its raw 32 bytes."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` (never overwrite it) with ``mode`` and write ``data``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def generate_keypair(prefix: str | os.PathLike) -> tuple[Path, Path]:
    """Write a new Ed25519 key pair: ``PREFIX.key`` (private, PEM, mode 0600) and ``PREFIX.pub`` (public, PEM).

    Refuses to overwrite either file, so an existing key is never lost."""
    private_path, public_path = Path(f"{prefix}.key"), Path(f"{prefix}.pub")
    for path in (private_path, public_path):
        if path.exists():
            raise FileExistsError(f"{path} already exists: choose another prefix")
    private_path.parent.mkdir(parents=True, exist_ok=True)
    private = Ed25519PrivateKey.generate()
    _write_new(
        private_path,
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        0o600,
    )
    _write_new(
        public_path,
        private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        0o644,
    )
    return private_path, public_path


def load_private_key(path: str | os.PathLike) -> Ed25519PrivateKey:
    """An Ed25519 private key from an unencrypted PEM file, or a clear error."""
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (ValueError, TypeError, OSError) as error:
        raise InputError(f"{path}: not a readable unencrypted PEM private key ({error})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise InputError(f"{path}: expected an Ed25519 private key, got {type(key).__name__}")
    return key


def load_public_key(path: Path, setting: str = ENV_TRUSTED_KEYS) -> Ed25519PublicKey:
    """An Ed25519 public key from a PEM file, or a ``BundleIntegrityError`` naming the ``setting`` it came from."""
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (ValueError, OSError) as error:
        raise BundleIntegrityError(f"{setting}: {path} is not a PEM public key ({error})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise BundleIntegrityError(f"{setting}: {path} is not an Ed25519 public key")
    return key


def trusted_keys(setting: str | None = None) -> dict[str, Ed25519PublicKey]:
    """The trusted public keys by id, from ``setting`` (default ``$CRSRISK_TRUSTED_KEYS``); empty when unset.

    A listed path that is missing, or a folder without any ``.pem``/``.pub`` key, is an error: a typo must
    not silently turn verification off."""
    text = os.environ.get(ENV_TRUSTED_KEYS, "") if setting is None else setting
    keys: dict[str, Ed25519PublicKey] = {}
    for entry in filter(None, (part.strip() for part in text.split(os.pathsep))):
        path = Path(entry)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix in KEY_SUFFIXES and p.is_file())
            if not files:
                raise BundleIntegrityError(f"{ENV_TRUSTED_KEYS}: folder {path} holds no .pem or .pub public key")
        elif path.is_file():
            files = [path]
        else:
            raise BundleIntegrityError(f"{ENV_TRUSTED_KEYS}: {path} is neither a key file nor a folder of keys")
        for file in files:
            key = load_public_key(file)
            keys[key_id(key)] = key
    return keys


def signature_document(manifest: bytes, private_key: Ed25519PrivateKey) -> bytes:
    """The bytes of ``signature.json`` for these manifest bytes."""
    document = {
        "algorithm": "ed25519",
        "key_id": key_id(private_key.public_key()),
        "signature": base64.b64encode(private_key.sign(manifest)).decode(),
    }
    return json.dumps(document, indent=1, sort_keys=True).encode()


@dataclass(frozen=True)
class SignatureStatus:
    """What a bundle's signature says: ``verified`` only when a trusted key signed these very manifest bytes;
    ``text`` is the status every output shows (or why it is not verified), ``signer`` the claimed key id."""

    verified: bool
    text: str
    signer: str | None = None


def check_signature(manifest: bytes, signature: bytes | None, keys: Mapping[str, TrustedKey]) -> SignatureStatus:
    """The signature's status against the trusted ``keys``: verified, or why not (unsigned, unreadable, an
    unknown key, or a signature that does not match the manifest). Whether that is refused is the caller's
    policy (``crsrisk.bundle.trust``)."""
    if signature is None:
        return SignatureStatus(False, UNSIGNED)
    try:
        document = json.loads(signature)
        if document.get("algorithm") != "ed25519":
            raise InputError(f"algorithm {document.get('algorithm')!r}, expected 'ed25519'")
        signer, value = str(document["key_id"]), base64.b64decode(document["signature"], validate=True)
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as error:
        return SignatureStatus(False, f"unreadable {SIGNATURE} ({error})")
    if signer not in keys:
        return SignatureStatus(False, f"signed by key {signer}, which is not a trusted key", signer)
    try:
        keys[signer].key.verify(value, manifest)
    except InvalidSignature:
        return SignatureStatus(
            False,
            f"the signature by key {signer} does not match manifest.json: the bundle was changed after it was signed",
            signer,
        )
    return SignatureStatus(True, f"signed by trusted key {signer} ({keys[signer].source}), verified", signer)
