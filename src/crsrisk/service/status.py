"""The sentence every output of a served model carries about its status: the notice's banner, and unverified when
let through without a trusted signature (the page's banner, RiskAssessment notes, CDS Hooks cards)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from crsrisk import notice
from crsrisk.bundle.trust import UNVERIFIED


def warning(model: Mapping[str, Any]) -> str:
    """The sentence every output of this model carries (RiskAssessment note, card detail); for a bundle let
    through unverified (research use), its trust status too."""
    text = notice.banner(notice.is_synthetic(model))
    signature = str(model.get("signature", ""))
    return f"{text} Model bundle {signature}." if signature.startswith(UNVERIFIED) else text
