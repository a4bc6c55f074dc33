"""The one trust policy: where care happens, a bundle must be signed by a trusted key; research may read any.

Care (``crsrisk predict``, ``serve``, the MLflow pyfunc, the CDS Hooks service, batch scoring) calls
``for_care``: a bundle whose signature is missing, invalid or not from a trusted key (keyring.py) is refused with
the fix, unless the caller explicitly accepts unverified bundles for research use (``--allow-unverified``, or
``$CRSRISK_ALLOW_UNVERIFIED=1`` for the service and the pyfunc); the bundle's trust text then starts with
``UNVERIFIED``, so every output that names the model says so. Research (``evaluate``, ``audit``, ``explain`` of a
cohort, the model card) calls ``for_research``, which reads any bundle and says so the same way.
"""

from __future__ import annotations

import dataclasses
import os

from crsrisk.bundle.signing import ENV_TRUSTED_KEYS
from crsrisk.bundle.store import Bundle
from crsrisk.errors import BundleIntegrityError, InputError

ENV_ALLOW = "CRSRISK_ALLOW_UNVERIFIED"
UNVERIFIED = "UNVERIFIED"  # how every output's model line starts for a bundle let through unverified


def unverified_allowed(explicit: bool = False) -> bool:
    """Whether unverified bundles are accepted for research use: ``explicit``, or ``$CRSRISK_ALLOW_UNVERIFIED``
    set to 1 (0 or unset: refused; anything else is an error, so a typo never lowers the check unseen)."""
    value = os.environ.get(ENV_ALLOW, "").strip()
    if value not in ("", "0", "1"):
        raise InputError(f"${ENV_ALLOW}: expected 1 (accept unverified bundles for research use) or 0, got {value!r}")
    return explicit or value == "1"


def _accepted(bundle: Bundle, use: str) -> Bundle:
    return dataclasses.replace(bundle, trust=f"{UNVERIFIED} ({bundle.trust}): {use}", unverified_accepted=True)


def for_care(bundle: Bundle, allow_unverified: bool = False) -> Bundle:
    """The bundle, if a trusted key signed it (or it was already accepted); else refused with the fix, unless
    unverified bundles are allowed for research use (then marked so in every output)."""
    if bundle.verified or bundle.unverified_accepted:
        return bundle
    if unverified_allowed(allow_unverified):
        return _accepted(bundle, f"accepted for research use only (--allow-unverified / ${ENV_ALLOW}=1)")
    raise BundleIntegrityError(
        f"{bundle.path}: {bundle.trust}: refused, a bundle used for care must be signed by a trusted key. "
        f"Fix: use a bundle you trained here (`crsrisk train` signs it with your own key), sign it "
        f"(`crsrisk sign BUNDLE --key KEY`), or trust its maker's public key (${ENV_TRUSTED_KEYS}=PATH.pub); "
        f"for research use only, pass --allow-unverified (${ENV_ALLOW}=1 for the service and the MLflow model)"
    )


def for_research(bundle: Bundle) -> Bundle:
    """The bundle for a research path (evaluation, audit, explanation of a cohort, model card): any bundle whose
    files match its manifest, an unverified one marked so in every output."""
    if bundle.verified or bundle.unverified_accepted:
        return bundle
    return _accepted(bundle, "read for research use")
