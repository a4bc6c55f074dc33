"""The pictures a clinician and an auditor see: the reasons chart (probability scale), the SHAP waterfall
(log-odds) and the risk trajectory, checked on the images themselves: their size in pixels, nothing drawn at the
edge of the PNG, every label inside the figure and none on top of another, and the words they show."""

from __future__ import annotations

import io
import itertools
import math
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
from crsrisk.features.phrases import absent_words, log_odds
from crsrisk.features.spec import THEMES, FeatureInfo, feature_info, feature_specs
from crsrisk.reporting.explain import explain_patient, reasons_chart, shap_waterfall
from crsrisk.reporting.figures import png_bytes
from crsrisk.reporting.steps import audit_label, log_odds_steps, probability_steps
from crsrisk.reporting.trajectory_figure import trajectory_figure
from crsrisk.schema.analytes import ANALYTES
from crsrisk.scoring import load_model, predict
from crsrisk.scoring.trajectory import Trajectory, risk_trajectory
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
            assert log_odds(c["shap"]) in shown  # every bar's label whole, to three decimals
            if c["value"] is None:
                saw_missing = True
                said = absent_words(c["feature"])  # "not measured", or "no CRS so far" for an event yet to come
                assert any(label.replace("\n", " ").endswith(f"= {said}") for label in shown)
        assert f"{p['raw_score']:+.3f}" in shown and f"{p['base_value']:+.3f}" in shown
    assert saw_missing  # the patient's top reasons include a missing input, shown as such


def test_a_one_hot_input_and_a_tiny_step_read_as_words_in_both_charts(default_bundle: Bundle) -> None:
    """The pre-infusion example's product is ``other``: its reason names what the patient has, in the phrases'
    words, on the clinician's chart and the auditor's waterfall alike (not ``product obecabtagene_autoleucel =
    no``); a step too small for three decimals reads ``<0.001`` with its sign, never ``-0.000``."""
    example = Path(__file__).resolve().parents[1] / "examples" / "patient.json"
    result = predict(example, model=default_bundle, audit=False)
    p = next(p for p in result.predictions if p["task"] == "severe_crs")
    said = "another product, not obecabtagene autoleucel"
    assert any(c["phrase"] == f"{said} (raised the risk)" for c in p["contributions"][:TOP])
    charts = {"reasons": reasons_chart(p, result.model, TOP), "waterfall": shap_waterfall(p, result.model, TOP)}
    labels = {name: [label.replace("\n", " ") for label in assert_legible(f)] for name, f in charts.items()}
    for shown in labels.values():
        assert any(label.startswith(said) for label in shown)
        assert not any("obecabtagene_autoleucel" in label or label.endswith("= no") for label in shown)
        assert "-0.000" not in shown and "+0.000" not in shown
    assert any(abs(s.end - s.start) < 0.0005 for s in log_odds_steps(p, TOP).steps)  # a step this small exists
    assert "-<0.001" in labels["waterfall"] or "+<0.001" in labels["waterfall"]


def test_an_auditors_label_says_what_a_missing_value_means() -> None:
    """A NaN of hours since CRS onset is no CRS so far, not a value nobody measured; a NaN of IL-6 is."""
    onset = {"feature": "hours_since_crs_onset", "label": "hours since CRS onset", "value": None}
    il6 = {"feature": "il6_last", "label": "IL-6, latest value", "value": None}
    assert audit_label(onset, {}) == "hours since CRS onset = no CRS so far"
    assert audit_label(il6, {}) == "IL-6, latest value = not measured"


def test_explain_writes_both_pictures_per_task(record: dict, default_bundle: Bundle, tmp_path: Path) -> None:
    _, files = explain_patient(record, model=default_bundle, now_hours=40, out_dir=tmp_path, audit=False)
    names = {f.name for f in files}
    assert {"reasons_toci_refractory_first_tocilizumab.png", "waterfall_toci_refractory_first_tocilizumab.png"} <= names
    assert len(files) == 10
    for f in files:
        width, height = Image.open(f).size
        assert width == 900 and 600 <= height <= 1600
        assert f.stat().st_mode & 0o077 == 0  # a patient's values: owner only


def test_trajectory_is_drawn_as_steps_with_legible_events(record: dict, default_bundle: Bundle) -> None:
    trajectory = risk_trajectory(record, default_bundle, until_hours=96, audit=False)
    figure = trajectory_figure(trajectory)
    shown = assert_legible(figure)
    assert_png(png_bytes(figure), figure, (500, 1200))
    risk = figure.axes[0]
    tasks = [line for line in risk.get_lines() if not line.get_label().startswith("_")]  # not the dose lines
    assert len(tasks) == 5 and all(line.get_drawstyle() == "steps-post" for line in tasks)
    grades = [t for t in figure.axes[1].texts if "grade" in t.get_text()]
    assert grades and all(t.get_fontsize() >= 8 for t in grades)
    assert not any("_" in label for label in shown)  # no internal names (crs_grade, severe_crs_dynamic)


def test_the_trajectory_is_drawn_to_the_hour_it_was_read_to_not_its_last_point() -> None:
    """Risk read at 0 to 36 h and a dose at 60 h, the course read to 72 h: the axis ends at 72 h, every task's
    last risk is drawn on to it, and the dose within it is named."""
    points = [_point(h, "severe CRS by day 28", 0.2) for h in (0.0, 12.0, 24.0, 36.0)]
    events = [{"hours": 60.0, "event": "tocilizumab", "value": 8.0}, {"hours": 80.0, "event": "anakinra", "value": 1}]
    figure = trajectory_figure(Trajectory(points, {}, events, {"synthetic": True}, until_hours=72.0))
    risk = figure.axes[0]
    assert 72.0 <= risk.get_xlim()[1] <= 73.0
    (line,) = [line for line in risk.get_lines() if not line.get_label().startswith("_")]
    assert line.get_xdata()[-1] == 72.0
    shown = assert_legible(figure)
    assert "tocilizumab" in shown and "anakinra" not in shown


def test_a_scored_trajectory_reads_to_its_until_hours(record: dict, default_bundle: Bundle) -> None:
    trajectory = risk_trajectory(record, default_bundle, until_hours=100, audit=False)
    assert trajectory.until_hours == 100.0 and trajectory.to_dict()["until_hours"] == 100.0
    assert max(p["hours"] for p in trajectory.points) < 100.0  # the last point is earlier: the axis still reaches 100
    assert trajectory_figure(trajectory).axes[0].get_xlim()[1] >= 100.0


def _point(hours: float, task: str, probability: float) -> dict:
    return {"hours": hours, "task": task, "probability": probability, "band": "high", "horizon_text": task}


def test_crowded_events_at_the_right_edge_take_lanes_and_stay_inside() -> None:
    """Grade changes and doses minutes apart at the very end of the course (as when CRS reaches grade 3 and ICANS
    begins together): each label whole, none on another; an event after the course drawn is left out."""
    points = [_point(h, "severe CRS by day 28", 0.2 + h / 100) for h in (0.0, 12.0, 24.0, 36.0, 47.5)]
    events = [
        {"hours": 46.7, "event": "crs_grade", "value": 3.0},
        {"hours": 46.7, "event": "tocilizumab", "value": 12.0},
        {"hours": 46.9, "event": "corticosteroid", "value": 10.0},
        {"hours": 47.2, "event": "icans_grade", "value": 1.0},
        {"hours": 47.2, "event": "crs_grade", "value": 0.0},
        {"hours": 60.0, "event": "anakinra", "value": 100.0},  # after the course drawn: left out
    ]
    figure = trajectory_figure(Trajectory(points, {}, events, {"synthetic": True}, until_hours=48.0))
    shown = assert_legible(figure)
    assert {"CRS grade 3", "tocilizumab", "corticosteroid", "ICANS grade 1", "CRS resolved"} <= set(shown)
    assert "anakinra" not in shown
    assert len({t.xy[1] for t in figure.axes[1].texts}) == 5  # five lanes for five labels at one place
    assert_png(png_bytes(figure), figure, (500, 1200))


def test_the_trajectory_table_has_one_row_per_change() -> None:
    points = [_point(h, "a", 0.30) for h in range(0, 240, 12)] + [_point(100.0, "b", 0.1)]
    points[5] = _point(60, "a", 0.3004)  # shown as 30.0 %: no change
    points[7] = _point(84, "a", 0.42)
    points.sort(key=lambda p: p["hours"])
    rows = Trajectory(points, {}, [], {}, until_hours=240.0).changes()
    assert [(r["task"], r["hours"], r["probability"]) for r in rows] == [
        ("a", 0, 0.30),
        ("a", 84, 0.42),
        ("a", 96, 0.30),
        ("b", 100.0, 0.1),
    ]


def test_a_real_trajectory_table_folds_the_unchanged_landmark_risks(record: dict, default_bundle: Bundle) -> None:
    trajectory = risk_trajectory(record, default_bundle, until_hours=28 * 24, audit=False)
    rows = trajectory.changes()
    assert len(rows) < len(trajectory.points) / 3
    for task in {p["task"] for p in trajectory.points}:
        mine = [(round(r["probability"], 3), r["band"]) for r in rows if r["task"] == task]
        assert mine and all(a != b for a, b in zip(mine, mine[1:]))
    assert not math.isnan(sum(r["probability"] for r in rows))
