"""The model bundle: what a trained crsrisk model is on disk (no pickle; SHA-256 manifest; Ed25519 signature)."""

from crsrisk.bundle.format import TaskModel
from crsrisk.bundle.store import Bundle, load_bundle, save_bundle, sign_bundle, verify_bundle

__all__ = ["Bundle", "TaskModel", "load_bundle", "save_bundle", "sign_bundle", "verify_bundle"]
