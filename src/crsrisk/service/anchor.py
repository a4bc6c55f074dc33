"""The audit log's head anchored on the served MLflow model version: a tag ``crsrisk.audit_head`` = ``SEQ:HASH``.

When ``crsrisk serve`` serves a registered model (``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``) from a
tracking store, every audited answer also writes the log's latest head to that model version's tags, where a
writer of the log's folder cannot reach it; check a log against it with ``crsrisk audit-log verify
--expect-head SEQ:HASH``. Optional and best effort: the record is appended first, and a tag that cannot be
written is a warning, never a lost record or a refused answer.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from crsrisk.audit import log_head

TAG = "crsrisk.audit_head"
_LOG = logging.getLogger(__name__)
_REGISTERED = re.compile(r"models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))/?")


@dataclass(frozen=True)
class VersionTag:
    """The served model version whose tags carry the audit head, and the tracking store that holds it."""

    name: str
    version: str
    tracking_uri: str

    @classmethod
    def for_model(cls, model: str | os.PathLike | None) -> "VersionTag | None":
        """The model version ``model`` names, when it is a registered model URI (None for a folder). A registry
        that cannot say which version an alias points at disables the tag, with a warning."""
        found = _REGISTERED.fullmatch(str(model)) if model is not None else None
        if found is None:
            return None
        import mlflow

        uri = mlflow.get_tracking_uri()
        version = found["version"]
        try:
            if version is None:
                client = mlflow.MlflowClient(tracking_uri=uri)
                version = str(client.get_model_version_by_alias(found["name"], found["alias"]).version)
        except Exception as error:  # the registry is not ours to fail on: the answer goes on without the tag
            _LOG.warning("audit head not tagged on %s: cannot resolve its version (%s)", model, error)
            return None
        return cls(found["name"], version, uri)

    def tag(self, log: Path) -> str | None:
        """Write ``log``'s latest head to the version's tags; the head written, or None (with a warning) when
        the tag could not be written."""
        import mlflow

        try:
            seq, digest = log_head(log)
            head = f"{seq}:{digest}"
            mlflow.MlflowClient(tracking_uri=self.tracking_uri).set_model_version_tag(
                self.name, self.version, TAG, head
            )
        except Exception as error:  # never lose an answer (its record is already appended) over an anchor
            _LOG.warning("audit head not tagged on models:/%s/%s (%s)", self.name, self.version, error)
            return None
        return head
