"""A cohort's exact SHAP values as three pictures for a page: importance (mean |SHAP| per input, the rest by
theme), a beeswarm (one dot per scored row, coloured by the value's rank, missing values named) and a dependence
plot per input (its value against its SHAP value, missing values in a strip of their own).

Drawn here rather than by SHAP's plotting, which names inputs by their keys, sums the rest as "N other features",
draws a missing value at the left of the x axis and never says the scale is log-odds.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from crsrisk.features.phrases import absent_words, number
from crsrisk.features.spec import NONE_YET, feature_info
from crsrisk.reporting.figures import new_figure
from crsrisk.reporting.steps import theme_groups

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from crsrisk.bundle.format import TaskModel
    from crsrisk.scoring.cohort import CohortAttributions

WIDTH_INCHES = 9.0  # 900 px at figures.DPI
LOG_ODDS = "SHAP value (log-odds)"
NOT_MEASURED, NONE_YET_COLOUR = "#a6a6a6", "#e377c2"  # outside the value colour map: never read as a value
VALUES = "viridis"  # a value's rank within its input, low (dark) to high (light)
SCALE = "log-odds (the model's raw score before calibration)"


def question(model: TaskModel) -> str:
    """What the model answers, in words, with when it is asked: ``severe CRS (grade >= 3) in the next 48 h, asked
    at hour 36`` (the task's outcome and window, the landmark's words)."""
    return f"{model.outcome_words}, asked {model.landmark.words}"


def absent_colour(name: str) -> str:
    """The colour of a missing value of ``name``: one for an event not yet happened, another for not measured."""
    return NONE_YET_COLOUR if name in NONE_YET else NOT_MEASURED


@dataclass(frozen=True)
class Page:
    """What every cohort picture says around its plot: the title (question and landmark) and the footer (how it
    was computed, on which rows, and the model's status)."""

    title: str
    rows: int
    source: str
    status: str

    def frame(self, figure: Figure, note: str) -> None:
        """Title the figure and put ``note`` with the rows and status under it."""
        figure.suptitle(_wrap(self.title, 90), fontsize=11)
        footer = f"{note} Exact tree SHAP over {self.rows:,} scored rows ({self.source}). {self.status}"
        figure.supxlabel(_wrap(footer, 125), fontsize=8, color="dimgrey")


def _wrap(text: str, width: int) -> str:
    return "\n".join(textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False)) or text


def importance_figure(attributions: CohortAttributions, page: Page, top: int = 12) -> Figure:
    """Mean |SHAP| of the ``top`` inputs in clinical words, then every other input summed per row by theme (the
    mean |sum|), each bar labelled with its value."""
    names = list(attributions.X.columns)
    shap = pd.DataFrame(attributions.shap, columns=names)
    ranked = attributions.importance()
    named = list(ranked.index[:top])
    groups = [
        (text, float(shap[members].sum(axis=1).abs().mean()))
        for text, members in theme_groups([n for n in names if n not in named])
    ]
    groups.sort(key=lambda group: -group[1])
    bars = [(_wrap(feature_info(n).label, 55), float(ranked[n]), False) for n in named]
    bars += [(_wrap(text, 55), value, True) for text, value in groups]
    lines = sum(label.count("\n") + 1 for label, _, _ in bars)
    figure = new_figure(WIDTH_INCHES, 2.2 + 0.2 * lines + 0.12 * len(bars))
    axes = figure.add_subplot()
    for y, (_, value, group) in enumerate(bars):
        axes.barh(y, value, height=0.66, color="#5d6d7e" if group else "#1f4e79", alpha=0.55 if group else 1.0)
        axes.annotate(f"{value:.3f}", (value, y), xytext=(4, 0), textcoords="offset points", va="center", fontsize=8.5)
    if groups:
        axes.axhline(len(named) - 0.5, color="grey", lw=0.6, ls="--")
    axes.set_yticks(range(len(bars)), [label for label, _, _ in bars], fontsize=9)
    axes.set_ylim(len(bars) - 0.4, -0.6)
    axes.tick_params(axis="y", length=0)
    _plain(axes, "x")
    axes.set_xlim(0, max(v for _, v, _ in bars) * 1.14 or 1e-3)  # room for the longest bar's label (``0.773``)
    axes.set_xlabel("mean |SHAP value| (log-odds)", fontsize=9)
    page.frame(
        figure,
        f"Mean |SHAP value| per input in {SCALE}, largest first: the model's attribution, not a cause. "
        f"Below the dashed line, the other {len(names) - len(named)} inputs by theme: the mean |sum| of a theme's "
        "values in a row.",
    )
    return figure


def _plain(axes: Axes, grid: Literal["both", "x", "y"]) -> None:
    """No top or right frame; a light grid along ``grid`` behind the data."""
    axes.grid(axis=grid, color="#eeeeee", lw=0.6)
    axes.set_axisbelow(True)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)


def _log_axis(axes: Axes) -> None:
    """A logarithmic x axis with ticks written as a clinician writes values (0.2, 1, 50, 2,000), not as powers."""
    from matplotlib.ticker import FuncFormatter

    axes.set_xscale("log")
    axes.xaxis.set_major_formatter(FuncFormatter(lambda v, _: number(v)))
    lead = lambda v: round(v / 10 ** math.floor(math.log10(v)))  # noqa: E731  # a tick's leading digit
    axes.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: number(v) if lead(v) in (2, 5) else ""))


def _ranks(values: np.ndarray) -> np.ndarray:
    """Each measured value's rank within its input, 0 (lowest) to 1 (highest); NaN stays NaN."""
    ranks = pd.Series(values).rank(method="average").to_numpy()
    low, high = np.nanmin(ranks, initial=np.inf), np.nanmax(ranks, initial=-np.inf)
    return (ranks - low) / (high - low) if high > low else np.where(np.isnan(ranks), np.nan, 0.5)


def _swarm(x: np.ndarray, half_height: float, bins: int = 90) -> np.ndarray:
    """Vertical offsets that spread dots of nearly the same x above and below their row's line, alternately, the
    densest column just filling ``half_height``."""
    span = float(np.ptp(x)) or 1.0
    cells = np.floor((x - x.min()) / span * bins).astype(np.int64)
    order = np.lexsort((x, cells))
    offsets = np.zeros(x.size)
    seen: dict[int, int] = {}
    for i in order.tolist():
        k = seen.get(int(cells[i]), 0)
        seen[int(cells[i])] = k + 1
        offsets[i] = (k + 1) // 2 * (1 if k % 2 else -1)
    widest = float(np.abs(offsets).max(initial=0.0)) or 1.0
    return offsets * min(0.05, half_height / widest)


def beeswarm_figure(attributions: CohortAttributions, page: Page, top: int = 10) -> Figure:
    """One row per top input, one dot per scored row at its SHAP value, coloured by the value's rank within its
    input; a missing value is drawn in a colour of its own named in the legend."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.lines import Line2D

    names = list(attributions.X.columns)
    ranked = attributions.importance()
    shown = list(ranked.index[:top])
    rest = float(ranked.iloc[top:].sum() / ranked.sum()) if ranked.sum() > 0 else 0.0
    figure = new_figure(WIDTH_INCHES, 2.6 + 0.55 * len(shown))
    axes = figure.add_subplot()
    cmap = colormaps[VALUES]
    size = 9 if len(attributions.X) <= 500 else 4
    absent: dict[str, list[str]] = {}  # colour -> what its dots mean
    for y, name in enumerate(shown):
        column = names.index(name)
        x, values = attributions.shap[:, column], attributions.X[name].to_numpy(dtype=float)
        ys = y + _swarm(x, 0.38)
        missing = np.isnan(values)
        if missing.any():
            colour = absent_colour(name)
            meanings = absent.setdefault(colour, [])
            meanings += [] if absent_words(name) in meanings else [absent_words(name)]
            axes.scatter(x[missing], ys[missing], s=size, color=colour, lw=0, zorder=2)
        ranks = _ranks(values)
        axes.scatter(x[~missing], ys[~missing], s=size, c=cmap(ranks[~missing]), lw=0, zorder=3)
    axes.axvline(0, color="grey", lw=0.7, zorder=1)
    axes.set_yticks(range(len(shown)), [_wrap(feature_info(n).label, 40) for n in shown], fontsize=9)
    axes.set_ylim(len(shown) - 0.5, -0.5)
    axes.tick_params(axis="y", length=0)
    _plain(axes, "x")
    axes.set_xlabel(LOG_ODDS, fontsize=9)
    bar = figure.colorbar(ScalarMappable(Normalize(0, 1), cmap), ax=axes, shrink=0.6, aspect=25, pad=0.01)
    bar.set_ticks([0, 1], labels=["low", "high"], fontsize=8.5)
    bar.set_label("value's rank within its input", fontsize=8.5)
    bar.outline.set_visible(False)
    if absent:
        handles = [Line2D([], [], ls="", marker="o", color=c, label=" / ".join(m), ms=6) for c, m in absent.items()]
        axes.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.02), fontsize=8.5, frameon=False)
    page.frame(
        figure,
        f"One dot per scored row at its SHAP value in {SCALE}: right of 0 the input raised the score, left of 0 "
        "lowered it. Colour: the value's rank among the measured "
        f"values of that input. The other {len(names) - len(shown)} inputs are left out; they hold {rest:.0%} of "
        "the total mean |SHAP value|.",
    )
    return figure


def dependence_figure(attributions: CohortAttributions, name: str, page: Page) -> Figure:
    """One input's value (its clinical label and unit) against its SHAP value, one dot per scored row; rows with
    the value missing are drawn in a strip of their own beside the axis, named (``not measured``)."""
    info = feature_info(name)
    values = attributions.X[name].to_numpy(dtype=float)
    shap = attributions.shap[:, list(attributions.X.columns).index(name)]
    missing = np.isnan(values)
    figure = new_figure(WIDTH_INCHES, 5.6)
    grid = figure.add_gridspec(1, 2, width_ratios=[1.4, 10]) if missing.any() else None
    axes = figure.add_subplot(grid[0, 1] if grid is not None else 111)
    size = 14 if len(values) <= 500 else 6
    rng = np.random.default_rng(0)  # the jitter is only where dots sit in a strip: fixed, so pictures repeat
    flag = info.unit.startswith("1 = ")
    x = values[~missing] + (rng.uniform(-0.08, 0.08, (~missing).sum()) if flag else 0.0)
    axes.scatter(x, shap[~missing], s=size, color="#1f4e79", alpha=0.7, lw=0)
    axes.axhline(0, color="grey", lw=0.7)
    _plain(axes, "both")
    measured = values[~missing]
    if flag:
        axes.set_xticks([0, 1], ["no", "yes"])
        axes.set_xlim(-0.5, 1.5)
        axes.set_xlabel(info.label, fontsize=9)
    else:
        if info.log_scale and measured.size and measured.min() > 0:
            _log_axis(axes)
        axes.set_xlabel(f"{info.label} [{info.unit}]", fontsize=9)
    axes.set_title(_wrap(info.label, 80), fontsize=10)
    if grid is not None:
        strip = figure.add_subplot(grid[0, 0], sharey=axes)
        strip.scatter(rng.uniform(-0.3, 0.3, missing.sum()), shap[missing], s=size, color=absent_colour(name), lw=0)
        strip.axhline(0, color="grey", lw=0.7)
        strip.set_xlim(-0.6, 0.6)
        strip.set_xticks([0], [_wrap(absent_words(name), 14)], fontsize=8.5)
        strip.set_ylabel(LOG_ODDS, fontsize=9)
        axes.tick_params(axis="y", labelleft=False)
        _plain(strip, "y")
    else:
        axes.set_ylabel(LOG_ODDS, fontsize=9)
    apart = f" {int(missing.sum()):,} rows without a value ({absent_words(name)}) are drawn apart, at left."
    page.frame(
        figure,
        f"One dot per scored row: the input's value and its SHAP value in {SCALE}.{apart if missing.any() else ''}",
    )
    return figure
