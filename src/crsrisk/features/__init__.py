"""Leakage-free landmark features, their human-readable descriptions, and the sklearn transformers."""

from crsrisk.features.build import build_features
from crsrisk.features.spec import FeatureInfo, describe_features, feature_info, feature_names, log_scale_columns
from crsrisk.features.transformer import LogTransform

__all__ = [
    "FeatureInfo",
    "LogTransform",
    "build_features",
    "describe_features",
    "feature_info",
    "feature_names",
    "log_scale_columns",
]
