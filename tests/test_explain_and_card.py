"""Auditor outputs: SHAP plots for a patient and a cohort, and the HTML model card rendered in Chromium."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from crsrisk import notice
from crsrisk.cohort.validated import Cohort
from crsrisk.reporting.explain import explain_cohort, explain_patient
from crsrisk.reporting.model_card import write_model_card
from tests_support import launch_chromium, needs_chromium, patient_record


def test_patient_waterfall_and_summary(small_cohort: Cohort, small_bundle: Path, tmp_path: Path) -> None:
    record = patient_record(small_cohort, small_cohort.patients["patient_id"].iloc[4])
    summary, files = explain_patient(record, model=small_bundle, now_hours=40, out_dir=tmp_path)
    assert {f.name for f in files} >= {"waterfall_severe_crs_36h.png", "waterfall_icans_36h.png"}
    assert all(f.stat().st_size > 10_000 for f in files)
    assert "severe_crs at 36h: probability" in summary and (tmp_path / "summary.txt").read_text() == summary


def test_cohort_importance_beeswarm_and_dependence(small_cohort: Cohort, small_bundle: Path, tmp_path: Path) -> None:
    table = explain_cohort(small_cohort, small_bundle, tmp_path)
    assert set(table["model"]) >= {"severe_crs__36h", "toci_refractory__first_tocilizumab"}
    first = table[table["model"] == "severe_crs__36h"]["mean_abs_shap"].to_numpy()
    assert (first[:-1] >= first[1:]).all() and first[0] > 0
    for kind in ("importance", "beeswarm", "dependence_1"):
        assert list(tmp_path.glob(f"severe_crs__36h_{kind}*.png"))


@pytest.fixture(scope="module")
def card(trained, small_cohort: Cohort, tmp_path_factory: pytest.TempPathFactory) -> Path:
    _, _, result = trained
    return write_model_card(result.bundle_dir, small_cohort, tmp_path_factory.mktemp("card"), n_boot=60)


@pytest.mark.slow
def test_card_numbers_match_metrics_json(card: Path, trained) -> None:
    work, _, _ = trained
    page = card.read_text()
    assert "nan-nan" not in page and "nan to nan" not in page
    results = json.loads((work / "run" / "metrics.json").read_text())["results"]
    for row in results:
        auroc = row["metrics"]["auroc"]
        if auroc["value"] is not None:
            assert f"{auroc['value']:.3f} ({auroc['ci_low']:.3f}-{auroc['ci_high']:.3f})" in page
    assert notice.disclaimer(True, cohort_synthetic=True) in page  # the trained model, scored on a simulated cohort
    assert "TRIPOD+AI" in page and "small group" in page
    assert "toci-refractory-v1" in page and "Attribution stability" in page
    assert "id='by-landmark'" in page and "An example infusion's risk over time" in page
    assert not re.search(r"<img[^>]+src=\"(?!data:image/png;base64,)", page)  # every image embedded
    assert [p.name for p in card.parent.iterdir()] == ["model_card.html"]  # the card alone: no scratch figures


@pytest.mark.slow
def test_card_of_the_training_cohort_says_in_sample_at_the_top(card: Path) -> None:
    """The card on the model's own training cohort: the in-sample banner first, no "performance on this cohort",
    every section on the cohort labelled in-sample; under 1 MB, with contents linking every section."""
    page = card.read_text()
    assert page.index("In-sample: this is the cohort the model was trained on") < page.index(notice.line(True)[:-1])
    assert "Performance in-sample, on the training cohort" in page and "Performance on this cohort" not in page
    assert "Calibration and decision curves in-sample, on the training cohort" in page
    assert "SHAP global importance (exact tree SHAP, in-sample, on the training cohort)" in page
    assert card.stat().st_size < 1_000_000
    sections = re.findall(r"<h2 id='([^']+)'>", page)
    assert re.findall(r"<li><a href='#([^']+)'>", page) == sections
    assert page.index("id='contents'") < page.index("id='intended-use'") and len(sections) >= 10


@pytest.mark.slow
def test_card_intended_use_names_the_dynamic_models(card: Path) -> None:
    page = card.read_text()
    intended = page[page.index("id='intended-use'") : page.index("id='model'")]
    assert "dynamic landmark super-models" in intended
    assert "severe_crs_dynamic__every12h_0-168h</td><td>dynamic (any hour of its grid)" in intended
    assert "severe_crs__36h</td><td>fixed landmark" in intended


@pytest.mark.slow
@needs_chromium
def test_card_renders_in_headless_chromium_with_every_image(card: Path, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(card.as_uri())
        images = page.evaluate("Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight])")
        title = page.title()
        wide = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        page.screenshot(path=str(tmp_path / "card.png"), full_page=True)
        browser.close()
    assert title == "crsrisk model card"
    assert len(images) >= 15
    assert wide <= 0  # no sideways scrolling at 1200 px: tables and images fit the page
    assert all(done and width > 100 and height > 100 for done, width, height in images)
    assert (tmp_path / "card.png").stat().st_size > 50_000


def test_an_interval_without_both_classes_reads_not_computable_never_nan() -> None:
    from crsrisk.training.artifacts import interval_text

    assert interval_text(float("nan"), float("nan")) == "CI not computable"
    assert interval_text(None, 0.9) == "CI not computable"
    assert interval_text(0.7123, 0.8011) == "0.712-0.801"
