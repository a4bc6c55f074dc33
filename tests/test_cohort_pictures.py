"""The cohort's SHAP pictures (importance, beeswarm, dependence) checked on the images: 900 px wide, every label
whole and apart, titled with the question in words, the axes in log-odds, inputs in clinical words with the rest
by theme, and a missing value named ("not measured") rather than drawn as a value."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgba
from PIL import Image
from test_pictures import assert_legible, assert_png
from typer.testing import CliRunner

from crsrisk.bundle.store import Bundle
from crsrisk.cli import app
from crsrisk.cohort.validated import Cohort
from crsrisk.features.spec import THEMES, feature_info
from crsrisk.reporting.cohort_figures import (
    NOT_MEASURED,
    Page,
    beeswarm_figure,
    dependence_figure,
    importance_figure,
    question,
)
from crsrisk.reporting.figures import png_bytes
from crsrisk.scoring import load_model
from crsrisk.scoring.cohort import CohortAttributions, cohort_attributions

STATUS = "SYNTHETIC model, not for clinical use."


@pytest.fixture(scope="module")
def default_bundle() -> Bundle:
    return load_model(None)


@pytest.fixture(scope="module")
def attributions(small_cohort: Cohort, default_bundle: Bundle) -> dict[str, CohortAttributions]:
    return cohort_attributions(small_cohort, default_bundle)


def _page(a: CohortAttributions) -> Page:
    return Page(question(a.model), len(a.X), "this cohort", STATUS)


def _words(shown: list[str]) -> str:
    return " ".join(text.replace("\n", " ") for text in shown)


def test_the_title_says_the_question_and_when_it_is_asked(attributions: dict[str, CohortAttributions]) -> None:
    assert (
        question(attributions["severe_crs__36h"].model)
        == "severe CRS (ASTCT CRS grade >= 3) by day 28, asked at hour 36"
    )
    assert question(attributions["toci_refractory__first_tocilizumab"].model) == (
        "tocilizumab-refractory CRS within 48 h of the first tocilizumab dose, asked at the first tocilizumab dose"
    )
    assert question(attributions["icans_dynamic__every12h_0-168h"].model) == (
        "ICANS (any grade) in the next 48 h, asked every 12 h from hour 0 to 168"
    )


@pytest.mark.parametrize("key", ["severe_crs__0h", "severe_crs_dynamic__every12h_0-168h"])
def test_importance_names_inputs_in_words_and_sums_the_rest_by_theme(
    attributions: dict[str, CohortAttributions], key: str
) -> None:
    a = attributions[key]
    figure = importance_figure(a, _page(a), top=12)
    shown = assert_legible(figure)
    assert_png(png_bytes(figure), figure, (700, 1300))
    words = _words(shown)
    assert question(a.model) in words and STATUS in words and "other features" not in words
    axes = figure.axes[0]
    assert axes.get_xlabel() == "mean |SHAP value| (log-odds)"
    rows = [t.get_text().replace("\n", " ") for t in axes.get_yticklabels()]
    top = list(a.importance().index[:12])
    assert rows[:12] == [feature_info(n).label for n in top] and not any("_" in r for r in rows)  # no keys
    groups = rows[12:]
    assert groups and {g.split(":")[0] for g in groups} <= set(THEMES)
    assert sum(int(re.search(r": (\d+) more input", g).group(1)) for g in groups) == a.X.shape[1] - 12  # type: ignore[union-attr]
    widths = [patch.get_width() for patch in axes.patches]
    assert widths[:12] == pytest.approx(a.importance().to_numpy()[:12])
    theme = groups[0].split(":")[0]
    members = [i for i, n in enumerate(a.X.columns) if n not in top and feature_info(n).theme == theme]
    assert widths[12] == pytest.approx(np.abs(a.shap[:, members].sum(axis=1)).mean())  # the mean |row sum|
    assert f"{widths[0]:.3f}" in shown


def test_beeswarm_colours_missing_values_apart_and_names_them(attributions: dict[str, CohortAttributions]) -> None:
    a = attributions["severe_crs_dynamic__every12h_0-168h"]
    figure = beeswarm_figure(a, _page(a), top=10)
    shown = assert_legible(figure)
    assert_png(png_bytes(figure), figure, (700, 1300))
    words = _words(shown)
    axes = figure.axes[0]
    assert axes.get_xlabel() == "SHAP value (log-odds)" and question(a.model) in words and STATUS in words
    assert "not measured" in [t.get_text() for t in axes.get_legend().get_texts()]
    assert "low" in shown and "high" in shown and "value's rank within its input" in shown
    names = list(a.importance().index[:10])
    assert [t.get_text().replace("\n", " ") for t in axes.get_yticklabels()] == [feature_info(n).label for n in names]
    grey = np.array(to_rgba(NOT_MEASURED))
    drawn_grey = sum(
        len(c.get_offsets()) if len(c.get_facecolors()) == 1 else 0
        for c in axes.collections
        if np.allclose(c.get_facecolors(), grey)
    )
    missing = sum(int(a.X[n].isna().sum()) for n in names if n not in ("hours_since_crs_onset", "fever_first_hours"))
    assert missing > 0 and drawn_grey == missing  # every missing value, and only those, in the missing colour
    assert sum(len(c.get_offsets()) for c in axes.collections) == len(a.X) * len(names)  # one dot per row
    rest = a.importance().iloc[10:].sum() / a.importance().sum()
    assert f"they hold {rest:.0%} of the total" in words and "other features" not in words


def test_dependence_draws_missing_values_in_a_strip_of_their_own(attributions: dict[str, CohortAttributions]) -> None:
    a = attributions["severe_crs__36h"]
    name = next(n for n in a.importance().index if a.X[n].isna().any() and feature_info(n).unit != "1 = yes")
    figure = dependence_figure(a, name, _page(a))
    shown = assert_legible(figure)
    assert_png(png_bytes(figure), figure, (450, 700))
    axes, strip = figure.axes  # the values first, the strip beside them
    info = feature_info(name)
    assert [t.get_text() for t in strip.get_xticklabels()] == ["not measured"]
    assert strip.get_ylabel() == "SHAP value (log-odds)" and axes.get_title() == info.label
    assert axes.get_xlabel() == f"{info.label} [{info.unit}]"
    values = a.X[name].to_numpy(dtype=float)
    assert len(strip.collections[0].get_offsets()) == np.isnan(values).sum()
    drawn = np.asarray(axes.collections[0].get_offsets())
    assert len(drawn) == (~np.isnan(values)).sum() and np.isfinite(drawn).all()  # no NaN at the x minimum
    assert question(a.model) in _words(shown) and STATUS in _words(shown)


def test_dependence_without_missing_values_has_no_strip_and_writes_log_ticks_as_values(
    attributions: dict[str, CohortAttributions],
) -> None:
    a = attributions["severe_crs__0h"]
    name = "dose_1e6_cells_per_kg"  # on a log axis (feature_info(name).log_scale) and never missing here
    assert feature_info(name).log_scale and not a.X[name].isna().any()
    figure = dependence_figure(a, name, _page(a))
    shown = assert_legible(figure)
    assert len(figure.axes) == 1 and "not measured" not in _words(shown) and "drawn apart" not in _words(shown)
    axes = figure.axes[0]
    assert axes.get_xscale() == "log" and axes.get_ylabel() == "SHAP value (log-odds)"
    ticks = [t.get_text() for t in axes.get_xticklabels() + axes.get_xticklabels(minor=True) if t.get_text()]
    assert "1" in ticks and not any("10^" in t or "times" in t or "$" in t for t in ticks)  # 0.5, 1, 2: not 10^0


def test_an_event_not_yet_happened_is_named_as_such(attributions: dict[str, CohortAttributions]) -> None:
    a = attributions["icans_dynamic__every12h_0-168h"]
    figure = dependence_figure(a, "hours_since_crs_onset", _page(a))
    shown = assert_legible(figure)
    assert [t.get_text() for t in figure.axes[1].get_xticklabels()] == ["no CRS so far"]
    missing = int(a.X["hours_since_crs_onset"].isna().sum())
    assert f"{missing:,} rows without a value (no CRS so far) are drawn apart" in _words(shown)


def test_explain_on_a_cohort_writes_page_sized_pictures_and_prints_words(
    small_cohort_dir: Path, tmp_path: Path
) -> None:
    result = CliRunner().invoke(app, ["explain", str(small_cohort_dir), "--out", str(tmp_path), "--no-audit"])
    assert result.exit_code == 0, result.output
    assert "asked at hour 36" in result.output and "marrow blasts before lymphodepletion" in result.output
    assert "marrow_blasts_pct" not in result.output  # the printed lines in words
    table = pd.read_csv(tmp_path / "global_importance.csv")
    assert "marrow_blasts_pct" in set(table["feature"])  # the CSV keeps the keys
    pictures = sorted(tmp_path.glob("*.png"))
    assert len(pictures) == 5 * table["model"].nunique()
    for f in pictures:
        width, height = Image.open(f).size
        assert width == 900 and 450 <= height <= 1300
        assert f.stat().st_mode & 0o077 == 0  # a dot per patient row: owner only
