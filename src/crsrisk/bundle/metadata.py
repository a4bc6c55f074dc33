"""What a bundle says about itself (``BundleMetadata``), and the one identity every output names a model by.

``bundle.json`` holds the models and these fields. ``from_dict`` refuses a missing required field, a field of
the wrong type and an unknown field, each by name; ``to_dict`` gives back exactly what ``from_dict`` read.
A bundle that does not say whether it was trained on synthetic data is taken as synthetic (the one default):
a model of unknown provenance is never presented as clinical evidence.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from crsrisk.errors import BundleIntegrityError

SYNTHETIC_DEFAULT = True  # a bundle silent about its data is treated as synthetic


@dataclass(frozen=True)
class BundleMetadata:
    """Provenance and training facts of a bundle, typed."""

    format_version: int
    crsrisk_version: str
    created: str
    synthetic: bool = SYNTHETIC_DEFAULT
    not_for_clinical_use: bool = True
    disclaimer: str = ""
    training_cohort_fingerprint: str | None = None
    training_cohort_size: int | None = None
    git_commit: str | None = None
    mlflow_run_id: str | None = None
    mlflow_tracking_uri: str | None = None
    mlflow_tracking_store: str = "local"
    training_metrics: dict[str, Any] = field(default_factory=dict)
    training_population: dict[str, Any] | None = None
    recalibration: dict[str, Any] | None = None  # lineage of a local recalibration
    update: dict[str, Any] | None = None  # lineage of a model update to a new centre

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "bundle.json") -> "BundleMetadata":
        """Validated metadata from ``bundle.json``'s fields (``models`` excluded)."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise BundleIntegrityError(
                f"{where}: unknown metadata field(s) {unknown}; expected some of {sorted(fields)}"
            )
        values: dict[str, Any] = {}
        for name, spec in fields.items():
            if name not in data:
                if spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
                    raise BundleIntegrityError(f"{where}: metadata field {name!r} is missing")
                continue
            value = data[name]
            if not _is(value, _TYPES[name]):
                raise BundleIntegrityError(
                    f"{where}: metadata field {name!r} must be {_TYPES[name]}, got {type(value).__name__}"
                )
            values[name] = value
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The plain-JSON form ``from_dict`` reads back (unset optional lineages left out)."""
        data = dataclasses.asdict(self)
        return {k: v for k, v in data.items() if not (k in ("recalibration", "update") and v is None)}


_TYPES: dict[str, tuple[type, ...] | type] = {
    "format_version": int,
    "crsrisk_version": str,
    "created": str,
    "synthetic": bool,
    "not_for_clinical_use": bool,
    "disclaimer": str,
    "training_cohort_fingerprint": (str, type(None)),
    "training_cohort_size": (int, type(None)),
    "git_commit": (str, type(None)),
    "mlflow_run_id": (str, type(None)),
    "mlflow_tracking_uri": (str, type(None)),
    "mlflow_tracking_store": str,
    "training_metrics": dict,
    "training_population": (dict, type(None)),
    "recalibration": (dict, type(None)),
    "update": (dict, type(None)),
}


def _is(value: Any, kinds: tuple[type, ...] | type) -> bool:
    """``isinstance``, except that a boolean is not an integer."""
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    if isinstance(value, bool) and bool not in kinds:
        return False
    return isinstance(value, kinds)


@dataclass(frozen=True)
class ModelIdentity:
    """The one identity of a model, as every output that names the model shows it."""

    name: str
    crsrisk_version: str
    bundle_sha256: str
    synthetic: bool
    not_for_clinical_use: bool
    created: str
    training_cohort_fingerprint: str | None
    path: str
    signature: str

    @classmethod
    def of(cls, path: Path, metadata: BundleMetadata, digest: str, trust: str) -> "ModelIdentity":
        """The identity of a loaded bundle."""
        return cls(
            name=f"crsrisk {path.name}",
            crsrisk_version=metadata.crsrisk_version,
            bundle_sha256=digest,
            synthetic=metadata.synthetic,
            not_for_clinical_use=metadata.not_for_clinical_use,
            created=metadata.created,
            training_cohort_fingerprint=metadata.training_cohort_fingerprint,
            path=str(path),
            signature=trust,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON, as outputs and audit records carry it."""
        return dataclasses.asdict(self)
