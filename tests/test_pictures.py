"""The pictures a clinician and an auditor see: the reasons chart (probability scale), the SHAP waterfall
(log-odds) and the risk trajectory, checked on the images themselves: their size in pixels, nothing drawn at the
edge of the PNG, every label inside the figure and none on top of another, and the words they show."""

from __future__ import annotations

import pytest

from crsrisk.features.spec import THEMES, FeatureInfo, feature_info, feature_specs
from crsrisk.schema.analytes import ANALYTES


def test_every_feature_has_one_theme_and_an_analytes_features_share_its_theme() -> None:
    specs = feature_specs(True)
    assert {f.theme for f in specs} == set(THEMES)
    for a in ANALYTES.values():
        for name in (f"baseline_{a.name}", f"{a.name}_last", f"{a.name}_log_slope", f"{a.name}_missing"):
            assert feature_info(name).theme == a.theme
    assert feature_info("il6_last").theme == "cytokines" and feature_info("crs_grade_max").theme == "course so far"
    assert feature_info("marrow_blasts_pct").theme == "disease burden"
    assert feature_info("product_tisagenlecleucel").theme == "product and conditioning"
    with pytest.raises(ValueError, match="theme 'misc'"):
        FeatureInfo("x", "x", "", False, "patient", "misc")
