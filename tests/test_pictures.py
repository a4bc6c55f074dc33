"""The pictures a clinician and an auditor see: the reasons chart (probability scale), the SHAP waterfall
(log-odds) and the risk trajectory, checked on the images themselves: their size in pixels, nothing drawn at the
edge of the PNG, every label inside the figure and none on top of another, and the words they show."""

from __future__ import annotations

import io
import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.transforms import Bbox
from PIL import Image

from crsrisk.bundle.store import Bundle
from crsrisk.cohort.validated import Cohort
from crsrisk.features.spec import THEMES, FeatureInfo, feature_info, feature_specs
from crsrisk.reporting.explain import explain_patient, reasons_chart, shap_waterfall
from crsrisk.reporting.figures import png_bytes
from crsrisk.reporting.steps import log_odds_steps, probability_steps
from crsrisk.schema.analytes import ANALYTES
from crsrisk.scoring import load_model, predict
from tests_support import patient_record

TOP = 8


@pytest.fixture(scope="module")
def default_bundle() -> Bundle:
    """The bundle shipped with the package: the one a clinician's ``crsrisk explain`` uses."""
    return load_model(None)


@pytest.fixture(scope="module")
def record(small_cohort: Cohort, default_bundle: Bundle) -> dict:
    """A patient with CRS treated by hour 40, so every task (tocilizumab-refractory CRS too) is scored then."""
    for patient_id in small_cohort.patients["patient_id"]:
        candidate = patient_record(small_cohort, patient_id)
        tasks = {p["task"] for p in predict(candidate, model=default_bundle, now_hours=40, audit=False).predictions}
        if len(tasks) == 5:
            return candidate
    raise AssertionError("no simulated patient has all five tasks scored at hour 40")


def drawn_texts(figure: Figure) -> list[tuple[str, Bbox]]:
    """Every non-empty text matplotlib draws when the figure is rendered (not tick labels outside the view, which
    exist but are not drawn), with its extent in pixels."""
    drawn: list[tuple[str, Bbox]] = []
    draw = Text.draw

    def record(self: Text, renderer: Any) -> None:
        if self.get_visible() and self.get_text().strip():
            drawn.append((self.get_text(), self.get_window_extent(renderer)))
        draw(self, renderer)

    Text.draw = record  # type: ignore[method-assign]
    try:
        figure.canvas.draw()
    finally:
        Text.draw = draw  # type: ignore[method-assign]
    return drawn


def assert_legible(figure: Figure) -> list[str]:
    """Every drawn text lies inside the figure and overlaps no other; returns the texts."""
    drawn = drawn_texts(figure)
    width, height = figure.bbox.width, figure.bbox.height
    for text, box in drawn:
        assert box.x0 >= 0 and box.y0 >= 0 and box.x1 <= width and box.y1 <= height, f"clipped: {text!r}"
    for (a, box_a), (b, box_b) in itertools.combinations(drawn, 2):
        overlap_x = min(box_a.x1, box_b.x1) - max(box_a.x0, box_b.x0)
        overlap_y = min(box_a.y1, box_b.y1) - max(box_a.y0, box_b.y0)
        assert overlap_x <= 1 or overlap_y <= 1, f"overlap: {a!r} and {b!r}"
    return [text for text, _ in drawn]


def assert_png(data: bytes, figure: Figure, height: tuple[int, int]) -> None:
    """The PNG is the figure measured (900 px wide, height within bounds) and nothing is drawn on its edges."""
    image = np.asarray(Image.open(io.BytesIO(data)).convert("L"))
    assert image.shape == (round(figure.bbox.height), round(figure.bbox.width)) and image.shape[1] == 900
    assert height[0] <= image.shape[0] <= height[1]
    for edge in (image[0], image[-1], image[:, 0], image[:, -1]):
        assert edge.min() == 255, "something is drawn at the edge of the picture"


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


def test_probability_steps_go_from_the_base_value_to_exactly_the_risk(record: dict, default_bundle: Bundle) -> None:
    result = predict(record, model=default_bundle, now_hours=40, audit=False)
    for p in result.predictions:
        steps, exact = probability_steps(p, TOP), log_odds_steps(p, TOP)
        calibrate = p.model.calibrator.transform
        assert steps.base == pytest.approx(float(calibrate(np.array([p["base_value"]]))[0]), abs=1e-12)
        assert steps.final == pytest.approx(p["probability"], abs=1e-12) and exact.final == p["raw_score"]
        chain = [steps.base] + [s.end for s in steps.steps]
        assert [s.start for s in steps.steps] == chain[:-1] and steps.steps[-1].end == steps.final
        assert [s.label for s in steps.steps[:TOP]] == [c["phrase"] for c in p["contributions"][:TOP]]
        for step, c in zip(exact.steps[:TOP], p["contributions"][:TOP]):  # log-odds steps are the SHAP values
            assert step.end - step.start == pytest.approx(c["shap"], abs=1e-5)
        groups = [s for s in exact.steps if s.group]
        counted = sum(int(s.label.split(": ")[1].split()[0]) for s in groups)
        assert counted == len(p.model.feature_names) - TOP and not any("other features" in s.label for s in groups)
        rest = float(p.shap.sum()) - sum(c["shap"] for c in p["contributions"][:TOP])
        assert sum(s.end - s.start for s in groups) == pytest.approx(rest, abs=1e-4)
        assert {s.label.split(":")[0] for s in groups} <= set(THEMES)


def test_reasons_chart_is_legible_on_the_probability_scale_and_says_what_it_is(
    record: dict, default_bundle: Bundle
) -> None:
    result = predict(record, model=default_bundle, now_hours=40, audit=False)
    for p in result.predictions:
        figure = reasons_chart(p, result.model, TOP)
        shown = assert_legible(figure)
        assert_png(png_bytes(figure), figure, (600, 1600))
        words = " ".join(shown)
        assert p["question"] in words.replace("\n", " ") and p["task"] not in words  # the title in words
        assert "model's attribution" in words and "SYNTHETIC model" in words and "nan" not in words
        assert f"{p['probability']:.1%}" in shown  # ends at the risk predict reports
        assert any(label.endswith("pts") for label in shown) and "other features" not in words
        assert any("more input" in label for label in shown)
        assert figure.axes[0].get_xlabel() == "calibrated risk"


def test_shap_waterfall_is_in_labelled_log_odds_with_whole_labels_and_no_nan(
    record: dict, default_bundle: Bundle
) -> None:
    result = predict(record, model=default_bundle, now_hours=40, audit=False)
    saw_missing = False
    for p in result.predictions:
        figure = shap_waterfall(p, result.model, TOP)
        shown = assert_legible(figure)
        assert_png(png_bytes(figure), figure, (600, 1600))
        assert "log-odds" in figure.axes[0].get_xlabel() and "nan" not in " ".join(shown)
        for c in p["contributions"][:TOP]:
            assert f"{c['shap']:+.3f}" in shown  # every bar's label whole, to three decimals
            if c["value"] is None:
                saw_missing = True
                assert any(label.replace("\n", " ").endswith("= not measured") for label in shown)
        assert f"{p['raw_score']:+.3f}" in shown and f"{p['base_value']:+.3f}" in shown
    assert saw_missing  # the patient's top reasons include a missing input, shown as such


def test_explain_writes_both_pictures_per_task(record: dict, default_bundle: Bundle, tmp_path: Path) -> None:
    _, files = explain_patient(record, model=default_bundle, now_hours=40, out_dir=tmp_path, audit=False)
    names = {f.name for f in files}
    assert {"reasons_toci_refractory_first_tocilizumab.png", "waterfall_toci_refractory_first_tocilizumab.png"} <= names
    assert len(files) == 10
    for f in files:
        width, height = Image.open(f).size
        assert width == 900 and 600 <= height <= 1600
        assert f.stat().st_mode & 0o077 == 0  # a patient's values: owner only
